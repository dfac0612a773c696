"""Small random books of business for the feature and label tests (plus a check of their shape).

``random_book(seed, n_accounts)`` builds a :class:`Book` straight from DataFrames with the
normalised dtypes (account_id str; timestamps datetime64[ns] naive UTC; numbers float64), with
the awkward cases the builders must get right: events at any time of day and exactly at
midnight, ties in time, churn and reactivation, price increases, unpaid and late invoices,
missing user ids.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnml.data.tables import TOUCHPOINT_KINDS, Book

START = pd.Timestamp("2025-01-01")
EVENTS = (
    "login", "login", "login", "dashboard_view", "report_create", "share", "api_call",
    "automation_run", "custom_report",
)


def _times(rng, n, start, days):
    """Timestamps in [start, start + days): a third exactly at midnight, the rest any second."""
    day = rng.integers(0, days, n)
    secs = np.where(rng.random(n) < 0.33, 0, rng.integers(0, 86400, n))
    return (start + pd.to_timedelta(day, "D") + pd.to_timedelta(secs, "s")).astype("datetime64[ns]")


def random_book(seed: int, n_accounts: int = 12, days: int = 400, tables=None) -> Book:
    rng = np.random.default_rng(seed)
    ids = [f"acc{i:03d}" for i in rng.permutation(n_accounts)]
    created = START + pd.to_timedelta(rng.integers(0, days // 2, n_accounts), "D")
    accounts = pd.DataFrame(
        {
            "account_id": pd.array(ids, dtype="str"),
            "created_at": pd.DatetimeIndex(created).as_unit("ns"),
            "plan": pd.array(rng.choice(["basic", "pro", None], n_accounts), dtype="str"),
            "segment": pd.array(rng.choice(["smb", "mid"], n_accounts), dtype="str"),
            "employees": rng.integers(5, 500, n_accounts).astype(np.float64),
        }
    )
    mrr_rows = []
    for acc, c in zip(ids, created):
        mrr = float(rng.choice([100.0, 500.0, 2000.0, 6000.0]))
        day = c
        mrr_rows.append((acc, day, mrr, "new", day + pd.Timedelta(days=365)))
        for _ in range(int(rng.integers(0, 6))):
            day = day + pd.Timedelta(days=int(rng.integers(1, 90)))
            kind = rng.choice(["upsell", "price_increase", "downsell", "churn", "renewal", "react"])
            if mrr == 0:
                kind, mrr = "reactivation", float(rng.choice([100.0, 400.0]))
            elif kind == "churn":
                mrr = 0.0
            elif kind in ("upsell", "price_increase"):
                mrr = mrr * float(rng.choice([1.02, 1.1, 1.5]))
            elif kind == "downsell":
                mrr = mrr * 0.7
            elif kind == "react":
                kind = "renewal"
            term = day + pd.Timedelta(days=365) if rng.random() < 0.7 else pd.NaT
            mrr_rows.append((acc, day, mrr, str(kind), term))
    mrr_changes = pd.DataFrame(mrr_rows, columns=["account_id", "effective_date", "mrr", "reason", "term_end"])

    n_ev = n_accounts * 60
    usage = pd.DataFrame(
        {
            "account_id": rng.choice(ids, n_ev),
            "ts": _times(rng, n_ev, START, days),
            "event": rng.choice(EVENTS, n_ev),
            "user_id": rng.choice(["u1", "u2", "u3", "u4", None], n_ev),
            "quantity": rng.integers(1, 4, n_ev).astype(np.float64),
        }
    )
    n_inv = n_accounts * 8
    due = START + pd.to_timedelta(rng.integers(0, days, n_inv), "D")
    delay = rng.choice([-5, 0, 0, 3, 20, 60, -1], n_inv)
    paid = pd.Series(due + pd.to_timedelta(delay, "D") + pd.to_timedelta(rng.integers(0, 86400, n_inv), "s"))
    paid[delay == -1] = pd.NaT
    invoices = pd.DataFrame(
        {
            "account_id": rng.choice(ids, n_inv),
            "invoice_id": [f"inv{i}" for i in range(n_inv)],
            "due_date": pd.DatetimeIndex(due).as_unit("ns"),
            "amount": rng.integers(100, 1000, n_inv).astype(np.float64),
            "paid_at": paid.astype("datetime64[ns]").to_numpy(),
        }
    )
    n_nps = n_accounts * 3
    nps = pd.DataFrame(
        {
            "account_id": rng.choice(ids, n_nps),
            "ts": _times(rng, n_nps, START, days),
            "score": rng.integers(0, 11, n_nps).astype(np.int64),
        }
    )
    n_tp = n_accounts * 40
    kinds = list(TOUCHPOINT_KINDS) + ["meeting_held", "meeting_missed", "meeting_missed", "support_ticket"] * 3
    tp_kind = rng.choice(kinds, n_tp)
    touchpoints = pd.DataFrame(
        {
            "account_id": rng.choice(ids, n_tp),
            "ts": _times(rng, n_tp, START, days),
            "kind": tp_kind,
            "value": np.where(tp_kind == "email_replied", rng.integers(1, 200, n_tp), np.nan),
            "user_id": rng.choice(["c1", "c2", "c3", None], n_tp),
        }
    )
    frames = {
        "accounts": accounts,
        "mrr_changes": mrr_changes,
        "usage_events": usage,
        "invoices": invoices,
        "nps_responses": nps,
        "touchpoints": touchpoints,
    }
    for name, df in frames.items():
        for col in df.columns:
            if col in ("account_id", "event", "kind", "user_id", "reason", "invoice_id"):
                df[col] = df[col].astype("str").where(df[col].notna(), None).astype("str")
            elif pd.api.types.is_datetime64_any_dtype(df[col]):
                df[col] = df[col].astype("datetime64[ns]")
        if name not in ("accounts",) and "ts" in df.columns:
            # shuffle: the builders must not rely on input order
            frames[name] = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    if tables is not None:
        frames = {k: v for k, v in frames.items() if k in tables or k in ("accounts", "mrr_changes")}
    return Book(tables=frames)


def test_random_book_has_normalised_dtypes():
    book = random_book(1, n_accounts=5)
    assert set(book.tables) == {
        "accounts", "mrr_changes", "usage_events", "invoices", "nps_responses", "touchpoints"
    }
    for df in book.tables.values():
        assert pd.api.types.is_string_dtype(df["account_id"])
        for col in df.columns:
            if col in ("ts", "effective_date", "due_date", "paid_at", "created_at", "term_end"):
                assert df[col].dtype == "datetime64[ns]", col
    assert book.mrr_changes["mrr"].dtype == np.float64
    assert (book.mrr_changes["mrr"] == 0).any() or len(book.mrr_changes) > 0
