"""Issue 14, outputs: the time-to-event columns in score_frame, the weekly job, /predict and the
report (revenue forecast, renewing into risk), each against a plain reference."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from churnml.health.score import HealthScore
from churnml.jobs.report_forecast import (
    BAND_Z,
    forecast,
    incidence_by_month,
    renewing_into_risk,
)
from churnml.jobs.weekly import score_book, write_report
from churnml.models import survival as S
from churnml.outcomes import OUTCOMES
from churnml.scoring.frame import score_frame
from churnml.scoring.schema import (
    TIME_TO_EVENT_VERSION_COLUMN,
    arrow_schema,
    time_to_event_columns,
    time_to_event_floats,
)
from jobs_fakes import (
    FEATURE_DIMENSIONS,
    FixedHealth,
    feature_frame,
    hazard_model,
    models,
    simple_features,
    tiny_book,
)

FLOAT_COLUMNS = time_to_event_floats()


def _score(features, tte=None, output="frame"):
    return score_frame(features, models(), FixedHealth(), feature_dimensions=FEATURE_DIMENSIONS,
                       time_to_event=tte, output=output)


def test_score_frame_fills_the_columns_from_the_champion_and_changes_nothing_else():
    features = feature_frame(8)
    tte = hazard_model("7")
    with_model, without = _score(features, tte), _score(features)
    assert list(with_model.columns) == list(without.columns)
    assert set(time_to_event_columns()) <= set(with_model.columns)
    want = tte.predict(features)
    for name in FLOAT_COLUMNS:
        np.testing.assert_array_equal(with_model[name].to_numpy(), want[name].to_numpy())
        assert without[name].isna().all()
    assert (with_model[TIME_TO_EVENT_VERSION_COLUMN] == "7").all()
    # the timing reasons: the model's, cleaned; none without it
    reasons = tte.timing_reasons(features)
    for o in OUTCOMES:
        assert with_model[o.timing_reasons_column].tolist() == reasons[o.name]
        assert all(row == [] for row in without[o.timing_reasons_column])
    assert without[TIME_TO_EVENT_VERSION_COLUMN].isna().all()
    # the 90-day columns, actions and values stay the binary models'
    others = [c for c in with_model.columns if c not in time_to_event_columns()]
    pd.testing.assert_frame_equal(with_model[others], without[others])
    # incidences rise with the days; the 90-day churn incidence is churn first, so it is
    # no larger than 1 - survival
    for o in OUTCOMES:
        days = [with_model[S.incidence_column(o.name, d)] for d in S.REPORT_DAYS]
        for a, b in zip(days, days[1:]):
            assert (b >= a - 1e-12).all()
    assert ((with_model[S.EXPECTED_DAYS_COLUMN] > 0)
            & (with_model[S.EXPECTED_DAYS_COLUMN] <= 360)).all()
    # records (the service's path) carry the same numbers
    records = _score(features, tte, output="records")
    assert [r["churn_probability_30d"] for r in records] == with_model["churn_probability_30d"].tolist()
    assert records[0][TIME_TO_EVENT_VERSION_COLUMN] == "7"


def test_weekly_job_writes_the_columns_and_the_report_forecasts(tmp_path):
    book = tiny_book()
    changes = book.tables["mrr_changes"]
    # terms: a third renew within 90 days of the scoring date, the rest later or unknown
    ends = pd.Timestamp("2026-03-02") + pd.to_timedelta(
        np.where(np.arange(len(changes)) % 3 == 0, 5 + 3 * np.arange(len(changes)) % 80, 400), unit="D")
    changes["term_end"] = pd.Series(ends).where(np.arange(len(changes)) % 5 != 4)
    result = score_book(book, "2026-03-02", tmp_path, models(), HealthScore(),
                        build_features=simple_features, feature_dimensions=FEATURE_DIMENSIONS,
                        time_to_event=hazard_model())
    scores = pd.read_parquet(result.scores_path)
    assert scores["churn_probability_90d"].notna().all()
    assert (scores[TIME_TO_EVENT_VERSION_COLUMN] == "3").all()
    import pyarrow.parquet as pq

    assert pq.read_schema(result.scores_path).names == arrow_schema(
        list(HealthScore().dimension_names)).names
    path, summary = write_report(result, book, tmp_path)
    page = path.read_text()
    assert "Revenue forecast: the next six months" in page and "Renewing into risk" in page
    assert "time to event v3" in page
    from churnml.scoring.actions import load_playbooks

    table = forecast(scores, load_playbooks().typical_share)
    churn90 = table[(table["outcome"] == "churn") & (table["month"] == 3)].iloc[0]
    assert summary["forecast_churn_mrr_90d"] == pytest.approx(churn90["cumulative_expected_mrr"])
    renewing = renewing_into_risk(scores, changes, "2026-03-02", load_playbooks().typical_share)
    assert summary["accounts_renewing_90d"] == len(renewing) > 0
    shown = page.split("<h2>Renewing into risk</h2>")[1].split("<h2>")[0]
    assert shown.count("<tr><td>") == min(25, len(renewing))
    # each shown row says in words why its leading risk could come before the renewal: the
    # first raising timing reason of that outcome, as the scores hold it
    import html

    by_id = scores.set_index("account_id")
    shares = load_playbooks().typical_share
    for _, r in renewing.head(25).iterrows():
        lead = max(("churn", "contraction"),
                   key=lambda o: shares.get(o, 1.0) * r[f"{o}_by_renewal"])
        raising = [x for x in by_id.at[r["account_id"], f"{lead}_timing_reasons"]
                   if x["contribution"] > 0]
        cell = shown.split(f"<tr><td>{r['account_id']}</td>")[1].split("</tr>")[0]
        if raising:
            assert f"{lead}:</span> {html.escape(raising[0]['text'])}" in cell
        else:
            assert cell.endswith("<td>-</td>")
    # without the champion: one line, no forecast figures
    plain = score_book(book, "2026-03-09", tmp_path, models(), HealthScore(),
                       build_features=simple_features, feature_dimensions=FEATURE_DIMENSIONS)
    page2, summary2 = write_report(plain, book, tmp_path)
    assert "No time-to-event champion" in page2.read_text()
    assert "time to event v" not in page2.read_text()
    assert not any(k.startswith("forecast_") for k in summary2)


def _reference_forecast(cif: np.ndarray, mrr: np.ndarray, share: float, months: int):
    """A plain loop: per month, mean and variance of a sum of independent Bernoulli amounts."""
    rows = []
    for m in range(months):
        mean = var = cmean = cvar = 0.0
        for i in range(len(mrr)):
            p = cif[i][m + 1] - cif[i][m]
            c = cif[i][m + 1]
            amount = mrr[i] * share
            mean += amount * p
            var += amount * amount * p * (1 - p)
            cmean += amount * c
            cvar += amount * amount * c * (1 - c)
        rows.append((mean, math.sqrt(var), cmean, math.sqrt(cvar)))
    return rows


def _scores_from_curves(n=40, seed=3):
    rng = np.random.default_rng(seed)
    raw = rng.uniform(0, 1, (n, S.N_PERIODS, len(S.CLASSES)))
    raw[:, :, 0] += 12
    _, incidence = S.curves_from_hazards(raw / raw.sum(axis=2, keepdims=True))
    scores = pd.DataFrame({"account_id": [f"A{i:03d}" for i in range(n)],
                           "mrr": rng.uniform(50, 5000, n)})
    for k, name in enumerate(S.CLASSES[1:]):
        for d in S.REPORT_DAYS:
            scores[S.incidence_column(name, d)] = incidence[:, k, S.report_period(d)]
    return scores, incidence


def test_forecast_against_a_plain_loop_with_the_interpolated_months():
    scores, incidence = _scores_from_curves()
    shares = {"expansion": 0.25, "contraction": 0.3}
    months, interpolated = incidence_by_month(scores)
    # exact on the report days, linear in between (120 and 150 days)
    for k in range(len(OUTCOMES)):
        for j in (0, 1, 2, 3, 6):
            np.testing.assert_allclose(months[:, k, j], incidence[:, k, j], atol=1e-15)
        np.testing.assert_allclose(months[:, k, 4], incidence[:, k, 3] + (incidence[:, k, 6] - incidence[:, k, 3]) / 3)
        np.testing.assert_allclose(months[:, k, 5], incidence[:, k, 3] + 2 * (incidence[:, k, 6] - incidence[:, k, 3]) / 3)
    assert interpolated.tolist() == [False, False, False, False, True, True, False]
    table = forecast(scores, shares)
    assert table["interpolated"].tolist()[:6] == [False, False, False, True, True, True]
    for k, o in enumerate(OUTCOMES):
        want = _reference_forecast(months[:, k, :].tolist(), scores["mrr"].tolist(),
                                   shares.get(o.name, 1.0), 6)
        part = table[table["outcome"] == o.name].sort_values("month")
        for (mean, sd, cmean, csd), r in zip(want, part.itertuples()):
            assert r.expected_mrr == pytest.approx(mean)
            assert r.cumulative_expected_mrr == pytest.approx(cmean)
            # the 90% band of a sum of 40 independent amounts: about mean -+ 1.645 sd, skewed
            # (survival.sum_band, tested against a plain simulation in test_survival.py)
            assert 0 <= r.low <= r.high and r.high - r.low == pytest.approx(2 * BAND_Z * sd, rel=0.35)
            assert r.cumulative_high - r.cumulative_low == pytest.approx(2 * BAND_Z * csd, rel=0.35)
        # the three months' split sums to the exact 90..180-day total
        total = part[part["month"] > 3]["expected_mrr"].sum()
        exact = (scores["mrr"] * shares.get(o.name, 1.0)
                 * (incidence[:, k, 6] - incidence[:, k, 3])).sum()
        assert total == pytest.approx(exact)


def test_band_covers_a_seeded_simulation_of_independent_accounts():
    """The 90% band against a vectorised simulation of which
    accounts have their first event in the first 90 days (seeded)."""
    scores, incidence = _scores_from_curves(n=400, seed=5)
    table = forecast(scores, {})
    rng = np.random.default_rng(11)
    draws = 4000
    u = rng.uniform(size=(draws, len(scores)))
    for k, o in enumerate(OUTCOMES):
        p = incidence[:, k, 3]
        totals = (u < p) @ scores["mrr"].to_numpy()
        row = table[(table["outcome"] == o.name) & (table["month"] == 3)].iloc[0]
        assert row["cumulative_expected_mrr"] == pytest.approx(totals.mean(), rel=0.03)
        inside = ((totals >= row["cumulative_low"]) & (totals <= row["cumulative_high"])).mean()
        assert 0.86 <= inside <= 0.94, (o.name, inside)


def test_renewing_into_risk_against_a_plain_loop():
    scores, incidence = _scores_from_curves(n=30, seed=8)
    as_of = pd.Timestamp("2026-03-02")
    offsets = [(-5 + 7 * i) if i % 4 else None for i in range(30)]  # some lapsed, some unknown
    changes = pd.DataFrame({
        "account_id": [f"A{i:03d}" for i in range(30)] * 2,
        "effective_date": [pd.Timestamp("2025-01-01")] * 30 + [as_of + pd.Timedelta(days=1)] * 30,
        "term_end": [as_of + pd.Timedelta(days=o) if o is not None else pd.NaT for o in offsets]
        + [as_of + pd.Timedelta(days=1)] * 30,  # a change after as_of is not yet known
    })
    shares = {"contraction": 0.3}
    got = renewing_into_risk(scores, changes, as_of, shares)
    want = []
    for i, o in enumerate(offsets):
        if o is None or not 0 <= o < 90:
            continue
        end_day = 30 * (o // 30 + 1)
        churn = scores.loc[i, f"churn_probability_{end_day}d"]
        contraction = scores.loc[i, f"contraction_probability_{end_day}d"]
        want.append((scores.loc[i, "account_id"], scores.loc[i, "mrr"] * (churn + 0.3 * contraction), o))
    want.sort(key=lambda t: (-t[1], t[0]))
    assert got["account_id"].tolist() == [w[0] for w in want]
    np.testing.assert_allclose(got["mrr_at_risk_before_renewal"], [w[1] for w in want])
    np.testing.assert_allclose(got["days_to_renewal"], [w[2] for w in want])
    # no term_end column at all: nobody is due
    assert renewing_into_risk(scores, changes.drop(columns="term_end"), as_of, shares).empty


def test_predictor_serves_the_columns_without_asking_for_period_features():
    from churnml.api.predictor import Predictor

    tte = hazard_model("5")
    tte.feature_names = ["usage_drop_50pct", *S.TIME_FEATURES]
    predictor = Predictor(models(), health=HealthScore(), time_to_event=tte)
    assert not {f.name for f in predictor.fields} & set(S.TIME_FEATURES)
    features = feature_frame(3)
    records = features.drop(columns=["value_tier", "lifecycle_phase", "rfm_segment"]).to_dict("records")
    for r in records:
        r["as_of"] = r["as_of"].date()
    rows = predictor.predict_records(records)
    assert all(r[TIME_TO_EVENT_VERSION_COLUMN] == "5" for r in rows)
    assert all(0 <= r["churn_probability_180d"] <= 1 for r in rows)
    meta = predictor.metadata()
    assert meta["time_to_event"]["version"] == "5"
    assert Predictor(models(), health=HealthScore()).metadata()["time_to_event"] is None
    # the response model (from the one schema) accepts the rows
    from churnml.scoring.schema import response_model

    model = response_model(list(HealthScore().dimension_names))
    model(**rows[0])


def test_forecast_of_a_tiny_book_whose_band_misses_the_mean_is_plotted():
    """Two accounts, each unlikely to move: the simulated band is [0, 0] below a positive mean;
    the report's chart still draws (no negative error bar)."""
    from churnml.jobs.report_forecast import plot_forecast

    scores, _ = _scores_from_curves(n=2, seed=1)
    table = forecast(scores, {})
    assert (table["expected_mrr"] > table["high"]).any()
    image = plot_forecast(table)
    assert image.startswith("data:image/png;base64,") and len(image) > 1000
