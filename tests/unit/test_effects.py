"""Measured effect of every play (``churnml.jobs.effects``, ``churnml effects``): the intervals
cover a known injected effect, immature outcomes are left out, the arms are the record's,
NNT and the power statement equal a plain computation, bad input exits 2."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churnml import cli
from churnml.data.tables import Book
from churnml.jobs import effect_stats as S
from churnml.jobs import effects as E
from churnml.jobs.layout import SCORES_NAME
from churnml.jobs.partitions import mark_complete, partition_dir
from churnml.scoring.actions import load_playbooks

HORIZON = 28
HORIZONS = {"churn": HORIZON, "expansion": HORIZON, "contraction": HORIZON}
START = pd.Timestamp("2025-01-01")
PLAY = "re_engage"          # addresses churn, may be held out
WEEKS = pd.date_range("2025-03-03", periods=8, freq="7D")


# ---------------------------------------------------------------- statistics vs plain code


def plain_wilson(k: int, n: int, z: float) -> tuple[float, float]:
    """The Wilson interval as the two roots of (p_hat - p)^2 = z^2 p (1 - p) / n."""
    ph = k / n
    a = 1 + z * z / n
    b = -(2 * ph + z * z / n)
    c = ph * ph
    disc = math.sqrt(max(b * b - 4 * a * c, 0.0))
    return (-b - disc) / (2 * a), (-b + disc) / (2 * a)


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (17, 230), (1, 1)])
def test_wilson_equals_the_roots_of_its_quadratic(k, n):
    z = S.z_value(0.95)
    assert S.wilson(k, n) == pytest.approx(plain_wilson(k, n, z), abs=1e-12)


def test_newcombe_is_built_from_the_two_wilson_intervals():
    d, low, high = S.newcombe(12, 80, 30, 90)
    l1, u1 = plain_wilson(12, 80, 1.959963984540054)
    l2, u2 = plain_wilson(30, 90, 1.959963984540054)
    p1, p2 = 12 / 80, 30 / 90
    assert d == pytest.approx(p1 - p2)
    assert low == pytest.approx(p1 - p2 - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2))
    assert high == pytest.approx(p1 - p2 + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))
    assert all(math.isnan(v) for v in S.newcombe(1, 0, 2, 5))


@pytest.mark.parametrize("p_treat,p_hold,n_treat,n_hold", [
    (0.10, 0.20, 400, 45),     # a 10% holdout of a small queue
    (0.05, 0.08, 900, 100),    # rare outcome
    (0.30, 0.30, 200, 60),     # no effect
])
def test_newcombe_covers_a_known_difference_over_many_seeds(p_treat, p_hold, n_treat, n_hold):
    """Repeated simulation: the 95% interval covers the true difference at least ~93% of 2,000
    draws (its known coverage is close to nominal; Wald's falls far below at these sizes)."""
    rng = np.random.default_rng(20261203)
    reps = 2000
    k_t = rng.binomial(n_treat, p_treat, reps)
    k_h = rng.binomial(n_hold, p_hold, reps)
    covered = 0
    for a, b in zip(k_t, k_h):
        _, low, high = S.newcombe(a, n_treat, b, n_hold)
        covered += low <= p_treat - p_hold <= high
    assert covered / reps >= 0.93


def test_bootstrap_mrr_interval_covers_a_known_difference_over_seeds():
    """Heavy-tailed MRR changes (most 0, some lose all): the percentile bootstrap interval
    of the mean difference covers the truth in at least ~90% of 200 seeds."""
    rng = np.random.default_rng(7)
    true_a, true_b = 0.15 * -1000.0, 0.25 * -1000.0   # mean change: churn prob x -MRR
    covered = 0
    for seed in range(200):
        a = -1000.0 * (rng.random(300) < 0.15)
        b = -1000.0 * (rng.random(60) < 0.25)
        _, low, high = S.bootstrap_mean_difference(a, b, seed=seed, resamples=500)
        covered += low <= true_a - true_b <= high
    assert covered / 200 >= 0.90


def test_nnt_and_cases_to_exclude_zero_against_plain_arithmetic():
    assert S.number_needed_to_treat(0.05) == pytest.approx(20.0)
    assert S.number_needed_to_treat(-0.01) == math.inf
    assert math.isnan(S.number_needed_to_treat(float("nan")))
    p1, n1, p2, n2 = 0.12, 300, 0.18, 40
    z = 1.959963984540054
    s1, s2 = n1 / (n1 + n2), n2 / (n1 + n2)
    total = z * z * (p1 * (1 - p1) / s1 + p2 * (1 - p2) / s2) / (p1 - p2) ** 2
    assert S.cases_to_exclude_zero(p1, n1, p2, n2) == math.ceil(total) - (n1 + n2)
    # at that many cases the normal half-width is the effect
    n = math.ceil(total)
    half = z * math.sqrt(p1 * (1 - p1) / (s1 * n) + p2 * (1 - p2) / (s2 * n))
    assert half <= abs(p1 - p2) + 1e-12
    assert S.cases_to_exclude_zero(0.2, 50, 0.2, 50) == math.inf
    assert S.cases_to_exclude_zero(0.0, 5000, 0.5, 5000) == 0


# ---------------------------------------------------------------- a book with a known effect


def make_case(seed: int, *, n: int = 1400, holdout: float = 0.2, base: float = 0.30,
              worked_effect: float = 0.12, compliance: float = 0.8):
    """A book, its cs_actions and the weekly record with a known effect: a worked account
    churns with probability ``base - worked_effect``, any other with ``base``; the true ITT
    effect (fall in churn) is ``compliance x worked_effect``. Each account is first queued in
    one of the 8 weeks and queued again the next week (a repeat that must not count twice);
    the last 2 weeks are immature (their horizon ends after the data's end)."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"A{i:05d}" for i in range(n)])
    mrr0 = rng.integers(200, 4000, n).astype(float)
    week = rng.integers(0, len(WEEKS), n)
    first = WEEKS[week]
    held = rng.random(n) < holdout
    worked = ~held & (rng.random(n) < compliance)
    p = np.where(worked, base - worked_effect, base)
    churns = rng.random(n) < p
    churn_day = first + pd.to_timedelta(rng.integers(0, HORIZON, n), unit="D")
    data_end = WEEKS[-3] + pd.Timedelta(days=HORIZON)   # weeks 0-5 mature, 6-7 do not
    rows = [pd.DataFrame({"account_id": ids, "effective_date": START, "mrr": mrr0,
                          "reason": "new"})]
    c = churns & (churn_day < data_end)
    rows.append(pd.DataFrame({"account_id": ids[c], "effective_date": churn_day[c], "mrr": 0.0,
                              "reason": "churn"}))
    mrr = pd.concat(rows, ignore_index=True)
    days = pd.date_range(START, data_end, freq="D")   # Book.data_end: the last day
    usage = pd.DataFrame({"account_id": np.repeat(ids[:3], len(days)),
                          "ts": np.tile(days, 3), "event": "login", "quantity": 1.0})
    act_day = first + pd.to_timedelta(rng.integers(0, 10, n), unit="D")
    actions = pd.DataFrame({"account_id": ids[worked], "date": act_day[worked],
                            "playbook": PLAY, "owner": "CSM", "channel": "call",
                            "outcome_note": ""})
    # decoys that must not count as working the recommendation: another play, too late,
    # before the recommendation
    decoy = ids[~worked][:30]
    dfirst = first[~worked][:30]
    actions = pd.concat([actions, pd.DataFrame({
        "account_id": np.concatenate([decoy[:10], decoy[10:20], decoy[20:]]),
        "date": np.concatenate([dfirst[:10] + pd.Timedelta(days=1),
                                dfirst[10:20] + pd.Timedelta(days=E.WORKED_WITHIN_DAYS),
                                dfirst[20:] - pd.Timedelta(days=1)]),
        "playbook": ["multi_thread"] * 10 + [PLAY] * 20, "owner": "CSM", "channel": "email",
        "outcome_note": ""})], ignore_index=True)
    accounts = pd.DataFrame({"account_id": ids, "created_at": START})
    book = Book(tables={"accounts": accounts, "mrr_changes": mrr, "usage_events": usage,
                        "cs_actions": actions})
    reason = np.array(["meetings_missed_90d", "logins_30d", None], dtype=object)[
        rng.integers(0, 3, n)]
    truth = pd.DataFrame({"account_id": ids, "first": first, "week": week, "held": held,
                          "worked": worked, "churns": churns, "churn_day": churn_day,
                          "mrr0": mrr0, "reason": reason})
    return book, truth


def write_record(out, truth: pd.DataFrame, policy: str = "ptest") -> None:
    """The weekly partitions: every account queued in its first week and the week after;
    plus watch rows (not recommended) that must not be counted."""
    action_type = pa.struct([("playbook", pa.string()), ("owner", pa.string()),
                             ("reason_feature", pa.string())])
    for i, as_of in enumerate(WEEKS):
        queued = truth[(truth["week"] == i) | (truth["week"] == i - 1)]
        # an account not yet active and not queued: on the watch list with a holdout flag
        watch = truth[truth["week"] > i + 1].head(5)
        ids = pd.concat([queued["account_id"], watch["account_id"]]).to_numpy()
        status = ["queued"] * len(queued) + ["watch"] * len(watch)
        held = np.concatenate([queued["held"].to_numpy(), np.ones(len(watch), dtype=bool)])
        table = pa.table({
            "account_id": pa.array(ids, pa.string()),
            "as_of": pa.array(np.full(len(ids), as_of.to_datetime64()), pa.timestamp("ns")),
            "next_best_action": pa.array(
                [{"playbook": PLAY, "owner": "CSM",
                  "reason_feature": f if isinstance(f, str) else None}
                 for f in np.concatenate([queued["reason"].to_numpy(),
                                          watch["reason"].to_numpy()])], action_type),
            "queue_status": pa.array(status, pa.string()),
            "holdout": pa.array(held, pa.bool_()),
            "policy_version": pa.array([policy] * len(ids), pa.string()),
        })
        part = partition_dir(out, as_of)
        part.mkdir(parents=True)
        pq.write_table(table, part / SCORES_NAME)
        mark_complete(part, as_of, table.num_rows, [SCORES_NAME])


def measure(tmp_path, seed, **kw):
    book, truth = make_case(seed, **kw)
    out = tmp_path / f"scores{seed}"
    write_record(out, truth)
    return E.measure(out, book, horizons=HORIZONS, seed=seed), truth, book


def test_arms_counts_and_rates_equal_a_plain_computation(tmp_path):
    result, truth, _ = measure(tmp_path, 1)
    row = result.table.set_index("playbook").loc[PLAY]
    matured = truth[truth["week"] <= len(WEEKS) - 3]
    rec, hold = matured[~matured["held"]], matured[matured["held"]]
    assert row["n_recommended"] == len(rec) and row["n_holdout"] == len(hold)
    assert row["n_worked"] == rec["worked"].sum()
    assert row["n_not_worked"] == (~rec["worked"]).sum()
    assert row["n_holdout_worked"] == 0
    assert row["n_immature"] == (truth["week"] > len(WEEKS) - 3).sum()
    assert row["rate_recommended"] == pytest.approx(rec["churns"].mean())
    assert row["rate_holdout"] == pytest.approx(hold["churns"].mean())
    assert row["rate_worked"] == pytest.approx(rec.loc[rec["worked"], "churns"].mean())
    assert row["compliance"] == pytest.approx(rec["worked"].mean())
    # effect: the fall in churn; MRR change: a churned account loses its MRR
    assert row["effect"] == pytest.approx(hold["churns"].mean() - rec["churns"].mean())
    change = -matured["mrr0"] * matured["churns"]
    mrr_effect = change[~matured["held"]].mean() - change[matured["held"]].mean()
    assert row["mrr_effect"] == pytest.approx(mrr_effect)
    assert row["mrr_saved_to_date"] == pytest.approx(mrr_effect * len(rec))
    assert row["mrr_saved_per_action"] == pytest.approx(mrr_effect / rec["worked"].mean())
    assert row["nnt"] == pytest.approx(1 / row["effect"])
    assert row["actions_per_save"] == pytest.approx(row["compliance"] / row["effect"])
    assert row["more_cases_to_exclude_zero"] == S.cases_to_exclude_zero(
        rec["churns"].mean(), len(rec), hold["churns"].mean(), len(hold))
    # one unit per account (the repeat week is not a second unit); watch rows not counted
    assert len(result.units) == len(truth)
    assert set(result.units["account_id"]) == set(truth["account_id"])


def test_immature_outcomes_are_never_counted(tmp_path):
    """Churns of immature weeks that already happened before the data's end do not move any
    rate: removing the immature weeks from the record gives the same figures."""
    result, truth, book = measure(tmp_path, 2)
    units = result.units
    immature = units[~units["matured"]]
    assert len(immature) and immature["label"].isna().all()
    young = truth[truth["week"] > len(WEEKS) - 3]
    assert (young["churns"] & (young["churn_day"] < book.data_end)).any()
    trimmed = truth[truth["week"] <= len(WEEKS) - 3]
    out = tmp_path / "trimmed"
    write_record(out, trimmed)
    again = E.measure(out, book, horizons=HORIZONS, seed=2).table.set_index("playbook")
    first = result.table.set_index("playbook")
    for column in ("n_recommended", "n_holdout", "rate_recommended", "rate_holdout", "effect",
                   "effect_ci_low", "effect_ci_high", "mrr_effect"):
        assert again.loc[PLAY, column] == pytest.approx(first.loc[PLAY, column])


def test_intervals_cover_the_injected_effect_over_seeds(tmp_path):
    """End to end: over 12 seeds the ITT and PP intervals cover the true effects (ITT
    0.8 x 12 = 9.6 points, PP 12 points: the team works at random here) at least 10 times,
    and the point estimates centre on them."""
    itt, pp, cover_itt, cover_pp = [], [], 0, 0
    for seed in range(12):
        result, _, _ = measure(tmp_path, 100 + seed, n=900)
        row = result.table.set_index("playbook").loc[PLAY]
        itt.append(row["effect"])
        pp.append(row["effect_pp"])
        cover_itt += row["effect_ci_low"] <= 0.096 <= row["effect_ci_high"]
        cover_pp += row["effect_pp_ci_low"] <= 0.12 <= row["effect_pp_ci_high"]
    assert cover_itt >= 10 and cover_pp >= 10
    assert abs(np.mean(itt) - 0.096) < 0.03 and abs(np.mean(pp) - 0.12) < 0.03


def test_a_never_held_out_play_is_reported_not_measured(tmp_path):
    book, truth = make_case(3, n=200)
    truth["held"] = False
    out = tmp_path / "s"
    write_record(out, truth)
    books = copy.deepcopy(load_playbooks())  # the parsed file is cached and shared: a copy
    books.playbooks[PLAY] = dataclasses.replace(books.playbooks[PLAY], never_hold_out=True)
    assert not load_playbooks().playbooks[PLAY].never_hold_out
    table = E.measure(out, book, playbooks=books, horizons=HORIZONS).table
    row = table.set_index("playbook").loc[PLAY]
    assert row["n_holdout"] == 0 and math.isnan(row["effect"])
    assert row["verdict"].startswith("not measured: the play is never held out")


def test_written_table_and_mlflow_figures(tmp_path):
    result, _, _ = measure(tmp_path, 4, n=300)
    path = E.write_effects(result, tmp_path / "o")
    back = pd.read_parquet(path)
    assert list(back.columns) == E.EFFECT_COLUMNS and len(back) == 1
    assert (path.parent / E.EFFECTS_CSV).is_file()
    logged = {}

    def fake_log(experiment, **kw):
        logged.update(kw, experiment=experiment)
        return "run-1"

    assert E.log_run(result, tmp_path / "o", {"seed": 4}, log=fake_log) == "run-1"
    assert logged["experiment"] == E.EXPERIMENT
    assert logged["metrics"][f"{PLAY}.effect"] == pytest.approx(back.loc[0, "effect"])
    assert logged["metrics"]["mrr_saved_to_date"] == pytest.approx(back.loc[0, "mrr_saved_to_date"])


# ---------------------------------------------------------------- the command line


def _write_book(folder, book: Book) -> None:
    folder.mkdir()
    for name, frame in book.tables.items():
        frame.to_csv(folder / f"{name}.csv", index=False)


def test_command_writes_the_table_and_prints_it(tmp_path, capsys):
    book, truth = make_case(5, n=300)
    data, scores = tmp_path / "data", tmp_path / "scores"
    _write_book(data, book)
    write_record(scores, truth)
    code = cli.main(["effects", "--data", str(data), "--scores", str(scores), "--no-mlflow"])
    printed = capsys.readouterr().err
    assert code == 0, printed
    assert PLAY in printed and "ITT" in printed
    assert "uplift models: none" in printed  # nothing matured: the queue keeps the priors
    assert E.load_uplift(scores) is None
    written = pd.read_parquet(scores / E.EFFECTS_DIR / E.EFFECTS_NAME)
    # the models' 90-day horizon: none of these weeks has matured, none is counted
    assert written.loc[0, "n_immature"] == len(truth)
    assert written.loc[0, "n_recommended"] == 0 and written.loc[0, "n_holdout"] == 0


def test_bad_input_exits_2(tmp_path, capsys):
    book, truth = make_case(6, n=100)
    data, scores = tmp_path / "data", tmp_path / "scores"
    _write_book(data, book)
    write_record(scores, truth)
    assert cli.main(["effects", "--data", str(data)]) == 2
    assert "--scores is required" in capsys.readouterr().err
    assert cli.main(["effects", "--data", str(data), "--scores", str(tmp_path / "nope")]) == 2
    assert cli.main(["effects", "--data", str(tmp_path / "nope"), "--scores", str(scores)]) == 2
    assert cli.main(["effects", "--data", str(data), "--scores", str(scores),
                     "--confidence", "1.5", "--no-mlflow"]) == 2
    assert cli.main(["effects", "--data", str(data), "--scores", str(scores),
                     "--worked-within-days", "0", "--no-mlflow"]) == 2
    # a queued row without its holdout flag: named, counted, exit 2
    part = partition_dir(scores, WEEKS[0]) / SCORES_NAME
    table = pq.read_table(part)
    flags = table.column("holdout").to_pylist()
    flags[0] = None
    table = table.set_column(table.schema.get_field_index("holdout"), "holdout",
                             pa.array(flags, pa.bool_()))
    pq.write_table(table, part)
    mark_complete(part.parent, WEEKS[0], table.num_rows, [SCORES_NAME])
    capsys.readouterr()
    assert cli.main(["effects", "--data", str(data), "--scores", str(scores), "--no-mlflow"]) == 2
    message = capsys.readouterr().err
    assert "1 queued rows" in message and "holdout" in message


# ---------------------------------------------------------------- the report section


def test_report_section_shows_each_play_mrr_saved_and_a_plot(tmp_path):
    from churnml.jobs.report_effects import effects_section

    result, _, _ = measure(tmp_path, 8, n=400)
    table = result.table
    page = effects_section(table)
    assert "What each play has been measured to do" in page
    assert PLAY in page and "<img" in page
    total = table["mrr_saved_to_date"].sum()
    expected = f"-${-total:,.0f}" if total < 0 else f"${total:,.0f}"
    assert f"MRR saved to date: {expected}" in page
    assert effects_section(None) == "" and effects_section(table.iloc[:0]) == ""
    # a play with no holdout: listed, no plot point, no crash
    blank = table.assign(effect=np.nan, effect_ci_low=np.nan, effect_ci_high=np.nan,
                         mrr_saved_to_date=np.nan)
    page = effects_section(blank)
    assert PLAY in page and "<img" not in page and "MRR saved to date:" not in page


# ---------------------------------------------------------------- item 5: saves per dimension

DIMENSION_OF = {"meetings_missed_90d": "engagement", "logins_30d": "usage"}


def test_saves_per_health_dimension_equal_a_plain_grouping(tmp_path):
    book, truth = make_case(12, n=900)
    out = tmp_path / "s"
    write_record(out, truth)
    result = E.measure(out, book, horizons=HORIZONS, dimension_of=DIMENSION_OF)
    dims = result.dimensions.set_index("dimension")
    assert list(dims.index) == ["engagement", "other", "usage"]
    matured = truth[truth["week"] <= len(WEEKS) - 3]
    group = matured["reason"].map(DIMENSION_OF).fillna("other")
    for name, rows in matured.groupby(group):
        rec, hold = rows[~rows["held"]], rows[rows["held"]]
        assert dims.loc[name, "n_recommended"] == len(rec)
        assert dims.loc[name, "n_holdout"] == len(hold)
        assert dims.loc[name, "n_worked"] == rec["worked"].sum()
        assert dims.loc[name, "effect"] == pytest.approx(hold["churns"].mean()
                                                         - rec["churns"].mean())
    assert (dims["n_recommended"].sum() + dims["n_holdout"].sum()
            == result.table["n_recommended"].sum() + result.table["n_holdout"].sum())
    E.write_effects(result, tmp_path / "o")
    assert (tmp_path / "o" / E.EFFECTS_DIR / E.DIMENSIONS_NAME).is_file()

    from churnml.jobs.report_effects import effects_section

    page = effects_section(result.table, result.dimensions)
    assert "Which health dimension's alerts led to saves" in page and "engagement" in page


def test_calibrate_health_prints_saves_per_dimension(tmp_path, capsys):
    from churnml.commands.calibrate_health import print_dimension_saves

    book, truth = make_case(13, n=200)
    data, scores = tmp_path / "data", tmp_path / "scores"
    _write_book(data, book)
    write_record(scores, truth)
    print_dimension_saves(data, scores)
    printed = capsys.readouterr().err
    assert "which health dimension's alerts led to saves" in printed
    # the catalog's dimension of meetings_missed_90d; the others are not catalog features
    assert "engagement" in printed and "other" in printed
