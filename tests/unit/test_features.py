"""Point-in-time guarantees, missing tables, batch independence, the catalog and the CLI."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_features_books import random_book

from churnml.data.tables import Book
from churnml.errors import ConfigError
from churnml.features.build import build_features
from churnml.features.catalog import (
    catalog_from_entries,
    load_catalog,
    render_reason,
    static_attribute_spec,
)

CATALOG = load_catalog()

BINDING_NAMES = """
logins_30d logins_30d_vs_baseline active_days_30d active_days_30d_vs_baseline active_users_30d
usage_events_30d feature_breadth_30d advanced_feature_events_30d usage_trend_8w
days_since_last_login usage_drop_50pct late_invoices_90d late_invoices_180d overdue_invoices
days_overdue_max failed_payments_90d billing_page_visits_30d nps_latest nps_change nps_detractor
nps_promoter days_since_last_nps nps_mean_180d meetings_held_90d meetings_missed_90d
meeting_attendance_rate_90d meetings_missed_in_a_row email_reply_rate_90d median_reply_hours_90d
days_since_last_contact support_tickets_30d support_tickets_prior_60d support_spike_then_silence
escalations_90d distinct_contacts_90d cancellation_inquiries_90d data_export_requests_90d
champion_left_180d competitor_mentions_90d budget_cuts_180d expansion_requests_90d
goals_achieved_180d referrals_180d qbrs_held_180d mrr mrr_change_90d tenure_days lifecycle_phase
value_tier days_to_renewal expansions_180d contractions_180d rfm_recency rfm_frequency
rfm_monetary rfm_segment
""".split()


def with_rows(book: Book, extra: dict[str, pd.DataFrame]) -> Book:
    tables = dict(book.tables)
    for name, rows in extra.items():
        if len(rows):
            tables[name] = pd.concat([tables[name], rows.astype(tables[name].dtypes.to_dict())],
                                     ignore_index=True)
    return Book(tables=tables)


# ------------------------------------------------------------------ point in time (hypothesis)
AS_OF = [pd.Timestamp("2025-04-10"), pd.Timestamp("2025-08-01"), pd.Timestamp("2025-11-23")]
SECONDS = st.sampled_from([0, 1, 3600, 43200, 86399])  # midnight of as_of itself included
DAYS_AFTER = st.integers(0, 200)


def later(as_of, day, sec):
    return as_of + pd.Timedelta(days=day) + pd.Timedelta(seconds=sec)


@functools.lru_cache(maxsize=None)
def cached_book(seed: int) -> Book:
    return random_book(seed, n_accounts=8, days=360)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 15),
    which=st.integers(0, len(AS_OF) - 1),
    usage=st.lists(st.tuples(st.integers(0, 7), DAYS_AFTER, SECONDS,
                             st.sampled_from(["login", "api_call", "share", "brand_new_event"]),
                             st.sampled_from(["u1", "u9", None])), max_size=15),
    touch=st.lists(st.tuples(st.integers(0, 7), DAYS_AFTER, SECONDS,
                             st.sampled_from(["meeting_held", "meeting_missed", "support_ticket",
                                              "email_sent", "email_replied", "champion_left",
                                              "payment_failed", "unknown_kind"])), max_size=15),
    nps=st.lists(st.tuples(st.integers(0, 7), DAYS_AFTER, SECONDS, st.integers(0, 10)), max_size=5),
    mrr=st.lists(st.tuples(st.integers(0, 7), DAYS_AFTER, st.sampled_from([0.0, 50.0, 9000.0]),
                           st.sampled_from(["upsell", "churn", "price_increase", "downsell"])),
                 max_size=5),
    invoices=st.lists(st.tuples(st.integers(0, 7), DAYS_AFTER,
                                st.one_of(st.none(), st.integers(-3, 90))), max_size=5),
    repay=st.lists(st.one_of(st.none(), st.integers(0, 60)), min_size=1, max_size=1),
)
def test_rows_at_or_after_as_of_never_change_any_feature(
    seed, which, usage, touch, nps, mrr, invoices, repay
):
    book = cached_book(seed)  # never mutated: with_rows copies
    as_of = AS_OF[which]
    ids = sorted(book.accounts["account_id"])
    before = build_features(book, [as_of])

    extra = {
        "usage_events": pd.DataFrame(
            [(ids[a], later(as_of, d, s), e, u, 1.0) for a, d, s, e, u in usage],
            columns=["account_id", "ts", "event", "user_id", "quantity"]),
        "touchpoints": pd.DataFrame(
            [(ids[a], later(as_of, d, s), k, 5.0, "c1") for a, d, s, k in touch],
            columns=["account_id", "ts", "kind", "value", "user_id"]),
        "nps_responses": pd.DataFrame(
            [(ids[a], later(as_of, d, s), sc) for a, d, s, sc in nps],
            columns=["account_id", "ts", "score"]),
        "mrr_changes": pd.DataFrame(
            [(ids[a], later(as_of, d, 0), m, r, pd.NaT) for a, d, m, r in mrr],
            columns=["account_id", "effective_date", "mrr", "reason", "term_end"]),
        "invoices": pd.DataFrame(
            [(ids[a], f"new{i}", later(as_of, d, 0), 10.0,
              pd.NaT if p is None else later(as_of, d + p, 0))
             for i, (a, d, p) in enumerate(invoices)],
            columns=["account_id", "invoice_id", "due_date", "amount", "paid_at"]),
    }
    grown = with_rows(book, extra)
    # a payment made at or after as_of can move to any other time at or after as_of
    inv = grown.tables["invoices"].copy()
    unpaid_then = inv["paid_at"].isna() | (inv["paid_at"] >= as_of)
    inv.loc[unpaid_then, "paid_at"] = (
        pd.NaT if repay[0] is None else as_of + pd.Timedelta(days=repay[0]))
    grown.tables["invoices"] = inv
    # and a new account that only starts later
    grown.tables["accounts"] = pd.concat([grown.accounts, pd.DataFrame({
        "account_id": pd.array(["zz_new"], dtype="str"), "created_at": [as_of],
        "plan": pd.array(["pro"], dtype="str"), "segment": pd.array(["smb"], dtype="str"),
        "employees": [3.0]})], ignore_index=True)

    after = build_features(grown, [as_of])
    pd.testing.assert_frame_equal(before, after)


# ------------------------------------------------------------------ missing tables / columns
def test_features_of_missing_tables_and_columns_are_absent_not_zero():
    full = random_book(5, n_accounts=10)
    dates = ["2025-06-01", "2025-10-01"]
    all_features = build_features(full, dates)
    by_table = {"usage_events": "logins_30d", "invoices": "late_invoices_90d",
                "nps_responses": "nps_latest", "touchpoints": "meetings_held_90d"}
    for table, example in by_table.items():
        book = Book(tables={k: v for k, v in full.tables.items() if k != table})
        got = build_features(book, dates)
        gone = {s.name for s in CATALOG if s.table == table}
        assert example in gone
        assert not gone & set(got.columns), table
        # everything else is unchanged
        keep = [c for c in got.columns]
        pd.testing.assert_frame_equal(got, all_features[keep])
    # derived features go with their source: no usage, no RFM segment or usage drop flag
    no_usage = build_features(Book(tables={k: v for k, v in full.tables.items()
                                           if k != "usage_events"}), dates)
    assert {"rfm_segment", "rfm_recency", "usage_drop_50pct"}.isdisjoint(no_usage.columns)
    assert "rfm_monetary" in no_usage.columns and "value_tier" in no_usage.columns
    # a missing optional column removes only the features that read it
    tables = dict(full.tables)
    tables["usage_events"] = tables["usage_events"].drop(columns=["user_id"])
    tables["invoices"] = tables["invoices"].drop(columns=["paid_at"])
    got = build_features(Book(tables=tables), dates)
    assert "active_users_30d" not in got.columns and "logins_30d" in got.columns
    # without paid_at every visible invoice counts as unpaid: overdue, never a made-up payment
    assert (got["overdue_invoices"] >= all_features["overdue_invoices"]).all()
    minimal = Book(tables={k: full.tables[k] for k in ("accounts", "mrr_changes")})
    cols = set(build_features(minimal, dates).columns)
    assert {"mrr", "tenure_days", "lifecycle_phase", "value_tier", "plan", "employees"} <= cols
    assert "logins_30d" not in cols and "nps_latest" not in cols


# ------------------------------------------------------------------ alone or in a batch
def test_an_account_scores_the_same_alone_or_in_a_batch():
    book = random_book(11, n_accounts=12)
    dates = ["2025-05-05", "2025-09-09", "2025-12-01"]
    batch = build_features(book, dates)
    assert batch["account_id"].nunique() > 5
    for acc in batch["account_id"].unique()[:6]:
        alone = Book(tables={k: v[v["account_id"] == acc].reset_index(drop=True)
                             for k, v in book.tables.items()})
        got = build_features(alone, dates)
        want = batch[batch["account_id"] == acc].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want)


# ------------------------------------------------------------------ targeted cases
def tiny_book(touch=(), invoices=(), usage=()):
    accounts = pd.DataFrame({"account_id": pd.array(["a"], dtype="str"),
                             "created_at": pd.to_datetime(["2024-01-01"]).astype("datetime64[ns]")})
    mrr = pd.DataFrame({"account_id": pd.array(["a"], dtype="str"),
                        "effective_date": pd.to_datetime(["2024-01-01"]).astype("datetime64[ns]"),
                        "mrr": [100.0], "reason": pd.array(["new"], dtype="str")})
    tables = {"accounts": accounts, "mrr_changes": mrr}
    if touch:
        tables["touchpoints"] = pd.DataFrame({
            "account_id": pd.array(["a"] * len(touch), dtype="str"),
            "ts": pd.to_datetime([t for t, _ in touch], format="ISO8601").astype("datetime64[ns]"),
            "kind": pd.array([k for _, k in touch], dtype="str")})
    if invoices:
        tables["invoices"] = pd.DataFrame({
            "account_id": pd.array(["a"] * len(invoices), dtype="str"),
            "invoice_id": pd.array([f"i{i}" for i in range(len(invoices))], dtype="str"),
            "due_date": pd.to_datetime([d for d, _ in invoices], format="ISO8601").astype("datetime64[ns]"),
            "amount": 1.0,
            "paid_at": pd.to_datetime([p for _, p in invoices], format="ISO8601").astype("datetime64[ns]")})
    if usage:
        tables["usage_events"] = pd.DataFrame({
            "account_id": pd.array(["a"] * len(usage), dtype="str"),
            "ts": pd.to_datetime([t for t, _ in usage], format="ISO8601").astype("datetime64[ns]"),
            "event": pd.array([e for _, e in usage], dtype="str")})
    return Book(tables=tables)


def one(book, as_of, name):
    return build_features(book, [as_of])[name].iloc[0]


def test_support_spike_then_silence_and_missed_meetings_in_a_row():
    book = tiny_book(touch=[("2025-02-01", "support_ticket"), ("2025-02-03", "support_ticket"),
                            ("2025-02-10", "support_ticket"), ("2025-02-20", "meeting_held"),
                            ("2025-03-01", "meeting_missed"), ("2025-03-08 10:00", "meeting_missed")])
    assert one(book, "2025-04-01", "support_spike_then_silence") == 1.0
    assert one(book, "2025-02-15", "support_spike_then_silence") == 0.0  # still in the spike
    assert one(book, "2025-05-15", "support_spike_then_silence") == 0.0  # spike left the window
    assert one(book, "2025-03-08", "meetings_missed_in_a_row") == 1.0  # 10:00 is after as_of
    assert one(book, "2025-03-09", "meetings_missed_in_a_row") == 2.0
    assert one(book, "2025-02-21", "meetings_missed_in_a_row") == 0.0
    assert one(book, "2025-03-09", "days_since_last_contact") == 17.0


def test_invoice_lateness_and_overdue_follow_dates_not_status():
    book = tiny_book(invoices=[
        ("2025-01-10", "2025-01-10 18:00"),  # paid on its due day: on time
        ("2025-01-20", "2025-01-25"),        # paid 5 days late
        ("2025-02-01", None),                # never paid
        ("2025-03-01", "2025-02-20"),        # paid early
    ])
    assert one(book, "2025-01-10", "late_invoices_90d") == 0.0  # not yet visible
    assert one(book, "2025-01-21", "late_invoices_90d") == 1.0  # due 01-20, unpaid at as_of
    assert one(book, "2025-01-21", "overdue_invoices") == 1.0
    assert one(book, "2025-01-21", "days_overdue_max") == 1.0
    assert one(book, "2025-01-25", "overdue_invoices") == 1.0   # paid during that day
    assert one(book, "2025-01-26", "overdue_invoices") == 0.0
    assert one(book, "2025-01-26", "late_invoices_90d") == 1.0  # still was late
    assert one(book, "2025-03-05", "overdue_invoices") == 1.0
    assert one(book, "2025-03-05", "days_overdue_max") == 32.0
    assert one(book, "2025-03-05", "late_invoices_90d") == 2.0


def test_usage_ratio_and_drop_flag():
    # 4 logins a month for the 90 baseline days, then 1 in the last 30
    base = [(str(pd.Timestamp("2025-01-01") + pd.Timedelta(days=7 * i + 1)), "login")
            for i in range(12)]
    book = tiny_book(usage=base + [("2025-04-25", "login"), ("2025-04-26", "share")])
    row = build_features(book, ["2025-05-01"]).iloc[0]
    assert row["logins_30d"] == 1.0
    assert row["logins_30d_vs_baseline"] == pytest.approx(1 / (12 * 30 / 90))
    assert row["usage_drop_50pct"] == 1.0
    assert row["feature_breadth_30d"] == 1.0 and row["days_since_last_login"] == 6.0


# ------------------------------------------------------------------ catalog and reasons
def test_catalog_has_every_binding_name_and_valid_entries():
    assert set(BINDING_NAMES) <= set(CATALOG.names)
    for spec in CATALOG:
        assert spec.reason and spec.description
    assert CATALOG["lifecycle_phase"].kind == "categorical"
    assert CATALOG["usage_drop_50pct"].depends_on == ["logins_30d_vs_baseline"]


def test_catalog_rejects_bad_entries_at_once():
    good = {"name": "x", "table": "touchpoints", "window_days": 30, "aggregation": "count",
            "description": "d", "reason": "r", "direction": {"churn": 1, "expansion": 0},
            "health_dimension": "engagement", "kind": "numeric"}
    with pytest.raises(ConfigError) as err:
        catalog_from_entries([
            {**good, "aggregation": "mystery"},
            {**good, "name": "y", "direction": {"churn": 2}},
            {**good, "name": "z", "aggregation": "threshold", "of": "nope", "op": "lt", "value": 1},
            {**good, "name": "x"},
            {**good, "name": "w", "direction": {"upsell": 1}},
        ])
    text = str(err.value)
    assert "mystery" in text and "direction of 'churn'" in text and "nope" in text
    assert "duplicate" in text and "'upsell'" in text


def test_catalog_directions_per_outcome():
    good = {"name": "x", "table": "touchpoints", "window_days": 30, "aggregation": "count",
            "description": "d", "reason": "r", "health_dimension": "engagement",
            "kind": "numeric", "direction": {"churn": -1, "contraction": 1}}
    catalog = catalog_from_entries([good, {**good, "name": "y", "direction": None}])
    assert catalog["x"].direction("churn") == -1 and catalog["x"].direction("contraction") == 1
    assert catalog["x"].direction("expansion") == 0 and catalog["y"].direction("churn") == 0
    assert catalog.subset(["y"]).names == ["y"]


def test_render_reason_formats_values_nan_and_categories():
    assert render_reason(CATALOG["logins_30d_vs_baseline"], 0.384) == (
        "logins in the last 30 days are 38% of this account's usual level")
    assert render_reason(CATALOG["logins_30d_vs_baseline"], np.float64(np.nan)).startswith(
        "not enough login history")
    assert render_reason(CATALOG["nps_detractor"], 1.0).startswith("the latest NPS response is a")
    assert "not a detractor" in render_reason(CATALOG["nps_detractor"], np.float64(0.0))
    assert render_reason(CATALOG["lifecycle_phase"], "advocacy").startswith("the account is an")
    assert render_reason(CATALOG["lifecycle_phase"], "weird") == "the account's lifecycle phase is weird"
    assert render_reason(CATALOG["plan"], pd.NA) == "plan not recorded"
    assert render_reason(CATALOG["days_to_renewal"], 45.0) == "the contract renews in 45 days"
    # a categorical value under a numeric template is shown as is, never an exception
    assert render_reason(CATALOG["logins_30d"], "n/a") == "n/a logins in the last 30 days"
    spec = CATALOG.resolve("industry")
    assert spec == static_attribute_spec("industry") and render_reason(spec, "retail") == "industry is retail"


# ------------------------------------------------------------------ command line
def test_cli_writes_features_and_rejects_bad_dates(tmp_path, capsys):
    from churnml.cli import main

    book = random_book(3, n_accounts=6)
    data = tmp_path / "book"
    data.mkdir()
    for name, df in book.tables.items():
        df.to_parquet(data / f"{name}.parquet", index=False)
    out = tmp_path / "f.parquet"
    assert main(["features", "--data", str(data), "--as-of", "2025-09-01,2025-08-01",
                 "--out", str(out)]) == 0
    got = pd.read_parquet(out)
    assert list(got.columns[:2]) == ["account_id", "as_of"]
    assert set(got["as_of"].dt.strftime("%Y-%m-%d")) <= {"2025-09-01", "2025-08-01"}
    assert len(got) > 0
    assert main(["features", "--data", str(data), "--as-of", "2025-02-30",
                 "--out", str(out)]) == 2
    assert main(["features", "--data", str(data), "--as-of", "2025-02-01 13:00",
                 "--out", str(out)]) == 2


def test_distinct_counts_with_more_values_than_one_machine_word():
    # 70 different users in one account (beyond the 64-bit fast path) and 3 in another
    ts = [str(pd.Timestamp("2025-03-01") + pd.Timedelta(hours=h)) for h in range(140)]
    book = tiny_book(usage=[(t, "login") for t in ts])
    usage = book.tables["usage_events"]
    usage["user_id"] = pd.array([f"user{i % 70:03d}" for i in range(140)], dtype="str")
    other = usage.iloc[:6].copy()
    other["account_id"] = pd.array(["b"] * 6, dtype="str")
    other["user_id"] = pd.array(["x", "y", "z", "x", "y", "z"], dtype="str")
    book.tables["usage_events"] = pd.concat([other, usage], ignore_index=True)
    book.tables["accounts"] = pd.concat([book.accounts, book.accounts.assign(
        account_id=pd.array(["b"], dtype="str"))], ignore_index=True)
    book.tables["mrr_changes"] = pd.concat([book.mrr_changes, book.mrr_changes.assign(
        account_id=pd.array(["b"], dtype="str"))], ignore_index=True)
    got = build_features(book, ["2025-03-04", "2025-03-20"]).set_index(["as_of", "account_id"])
    assert got.loc[(pd.Timestamp("2025-03-04"), "a"), "active_users_30d"] == 70.0
    assert got.loc[(pd.Timestamp("2025-03-04"), "b"), "active_users_30d"] == 3.0
    # 2025-03-01 00:00 + 69 h is 03-03 21:00: at as_of 03-04 all 140 rows are visible;
    # at 03-20 too (30-day window)
    assert got.loc[(pd.Timestamp("2025-03-20"), "a"), "active_users_30d"] == 70.0
    one_day = build_features(book, ["2025-03-02"]).set_index("account_id")
    assert one_day.loc["a", "active_users_30d"] == 24.0  # the first 24 hours: user000..user023


def test_docs_feature_table_is_generated_from_the_catalog():
    from pathlib import Path

    from churnml.features.catalog import feature_table_markdown

    doc = (Path(__file__).resolve().parents[2] / "docs" / "features.md").read_text()
    assert feature_table_markdown(CATALOG) in doc, (
        "docs/features.md is out of date: regenerate its feature table from the catalog")


def test_present_but_empty_tables_give_true_zeros_and_unknowns():
    full = random_book(4, n_accounts=6)
    tables = {k: (v.iloc[:0] if k not in ("accounts", "mrr_changes") else v)
              for k, v in full.tables.items()}
    got = build_features(Book(tables=tables), ["2025-09-01"])
    assert len(got) > 0
    assert (got["logins_30d"] == 0).all() and (got["overdue_invoices"] == 0).all()
    assert got["days_since_last_login"].isna().all() and got["nps_latest"].isna().all()
    assert (got["meetings_missed_in_a_row"] == 0).all() and (got["active_users_30d"] == 0).all()
    assert got["median_reply_hours_90d"].isna().all()


@pytest.mark.integration
def test_end_to_end_on_the_simulated_book(sim_dir, tmp_path):
    """`churnml features` on the simulator's book: every binding feature, the grid's rows."""
    from churnml.cli import main
    from churnml.data.io import load_book
    from churnml.features.labels import latest_scoring_date, observation_grid

    book, _ = load_book(sim_dir)
    as_of = latest_scoring_date(book)
    dates = [as_of - pd.Timedelta(days=7), as_of]
    out = tmp_path / "features.parquet"
    arg = ",".join(d.strftime("%Y-%m-%d") for d in dates)
    assert main(["features", "--data", str(sim_dir), "--as-of", arg, "--out", str(out)]) == 0
    got = pd.read_parquet(out)
    assert set(BINDING_NAMES) <= set(got.columns)
    grid = observation_grid(book, dates, horizon_days=90)
    assert got[["account_id", "as_of"]].equals(grid[["account_id", "as_of"]])
    assert not grid["labeled"].any()  # the latest weeks are never labeled
    # real signal, not constant columns: usage varies, payments and NPS exist
    assert got["logins_30d"].std() > 0 and got["nps_latest"].notna().mean() > 0.3
    assert got["value_tier"].notna().all() and got["lifecycle_phase"].notna().all()
    assert (got["mrr"] > 0).all()


def test_the_old_per_outcome_direction_keys_are_refused_not_ignored():
    from churnml.errors import ConfigError
    from churnml.features.catalog import catalog_from_entries

    entry = {"name": "x", "table": "usage_events", "window_days": 30, "aggregation": "count",
             "description": "d", "reason": "r", "health_dimension": "usage", "kind": "numeric",
             "churn_direction": -1}
    with pytest.raises(ConfigError, match=r"churn_direction.*direction: \{churn"):
        catalog_from_entries([entry])
