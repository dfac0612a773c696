"""Issue 11's "Done means" studies on books simulated with a CS team (``churnml simulate
--cs-team``), over seeds no configuration was tuned on. Prints the figures; docs/actions.md
("Studies on simulated books") holds a run's output with its command and load average.

(a) **Coverage.** ``churnml effects``'s method (``churnml.jobs.effects``: first
    recommendation per account and play, matured outcomes, intention to treat, Newcombe
    interval) on the simulated team's record (``_truth/cs_queue``: what was queued and held
    out each week) and the book's outcomes, against the true ITT effect of each play: the
    mean over the recommended units of worked x (churn probability without the play - with
    it), from the simulator's truth (``*_90d_without`` / ``*_90d_with``; signed so that
    positive helps). Counted over every (seed, play) with a holdout.

(b) **Ranking at the same capacity.** The team weeks are split at a cut date: the uplift
    models learn from units whose outcome is known by the cut (``fit_uplift_set``, the weekly
    job's code), the rankings are compared on the weeks after it. Each week, each owner's
    candidates (every account with a play that week, held out or not) are ranked by:
    churn risk (the health-implied churn probability the team's queue uses), the prior
    expected value (the queue as it is without measurements), the learned uplift (MRR x
    typical share x the account's estimated effect where a play has a model, the prior
    elsewhere, never an account the model expects not to help: the weekly job's rule), and
    the oracle (the true MRR effect of the recommended play) and, on books that record every
    play's true effect, the oracle that also picks each account's best play (an upper bound:
    the playbook picks the play, the queue only ranks). The top ``capacity[owner]`` are
    "worked"; a ranking saves sum(compliance x true MRR effect) over them, the true MRR
    effect being MRR x (fall in churn probability + typical share x rise in expansion probability + typical
    share x fall in contraction probability). Each week is valued on its own (what the team
    would save from that week's queue; later weeks stay the simulated ones). Intervals: a
    bootstrap over the evaluation weeks within a seed, and a t interval over seeds.

    Two uplift variants: ``uplift (rules)`` fits only the plays that meet the playbook's
    ``uplift:`` rules (what the product would do); ``uplift (any)`` fits every play with at
    least 30 held-out units and 5 events per arm on every queued week (not only the first),
    to show what the learner could do with the data there is.

Usage::

    python benchmarks/actions_study.py --accounts 1500 --seeds 101,102,103,104 \
        [--books /tmp/actions_books] [--cut-share 0.5]

Books are simulated into ``--books`` (one folder per seed) unless already there.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _common import log

HORIZON = 90  # the outcomes' horizons (models/*.yaml horizon_days; the truth's 13 weeks)


def load(books: Path, accounts: int, seed: int, holdout_share: float):
    """The book (validated like any other) and its truth, simulated first if absent."""
    from churnml.data.io import load_book

    folder = books / f"book{seed}_{accounts}" if holdout_share == 0.10 else \
        books / f"book{seed}_{accounts}_h{holdout_share:g}"
    if not (folder / "_truth" / "cs_queue.parquet").exists():
        from churnml.data.simulator import CsTeam, simulate, write_book
        from churnml.scoring.cs_team import CsTeamPolicy

        t0 = time.perf_counter()
        from churnml.scoring.actions import load_playbooks

        playbooks = dataclasses.replace(load_playbooks(), holdout_share=holdout_share)
        team = CsTeam(CsTeamPolicy(playbooks=playbooks, scale=accounts / 2000))
        write_book(simulate(n_accounts=accounts, seed=seed, cs_team=team), folder)
        log(f"seed {seed}: simulated {accounts:,} accounts in {time.perf_counter() - t0:.0f} s")
    book, _ = load_book(folder)
    queue = pd.read_parquet(folder / "_truth" / "cs_queue.parquet")
    features_of(queue)  # adds the churn probability the team's queue used
    meta = pd.read_parquet(folder / "_truth" / "meta.parquet")
    meta = dict(zip(meta.iloc[:, 0].astype(str), meta.iloc[:, 1].astype(str))) \
        if meta.shape[1] == 2 else meta.iloc[0].astype(str).to_dict()
    return book, queue, meta


def true_mrr_effect(queue: pd.DataFrame, playbooks) -> np.ndarray:
    """MRR x the play's true effect on the three outcomes, signed so that positive helps."""
    share = playbooks.typical_share
    return queue["mrr"].to_numpy() * (
        (queue["churn_90d_without"] - queue["churn_90d_with"]).to_numpy()
        + share.get("expansion", 1.0) * (queue["expansion_90d_with"]
                                         - queue["expansion_90d_without"]).to_numpy()
        + share.get("contraction", 1.0) * (queue["contraction_90d_without"]
                                           - queue["contraction_90d_with"]).to_numpy())


def record(queue: pd.DataFrame, policy: str) -> pd.DataFrame:
    """The queued rows in the shape of ``read_recommendations`` plus the output columns the
    team saw (uplift features) and the truth (carried along, not read by the method)."""
    q = queue[queue["queue_status"] == "queued"].copy()
    out = pd.DataFrame({
        "account_id": q["account_id"].astype(str).to_numpy(),
        "as_of": pd.to_datetime(q["week_start"]).astype("datetime64[ns]").to_numpy(),
        "playbook": q["playbook"].astype(str).to_numpy(),
        "owner": q["owner"].astype(str).to_numpy(),
        "reason_feature": None, "holdout": q["holdout"].astype(bool).to_numpy(),
        "policy_version": policy})
    for c in features_of(queue):
        out[c] = q[c].to_numpy()
    out["true_worked"] = q["worked"].to_numpy(dtype=bool)
    for c in ("churn", "expansion", "contraction"):
        out[f"{c}_without"] = q[f"{c}_90d_without"].to_numpy()
        out[f"{c}_with"] = q[f"{c}_90d_with"].to_numpy()
    return out


def features_of(queue: pd.DataFrame) -> list[str]:
    """The output columns the team's queue knows (``UPLIFT_FEATURES`` that the simulated team
    computes: health score and sub-scores, MRR, the health-implied churn probability)."""
    from churnml.scoring.cs_team import health_churn_probability

    if "churn_probability" not in queue:
        queue["churn_probability"] = health_churn_probability(queue["health_score"])
    return ["churn_probability", "health_score",
            *[c for c in queue.columns if c.startswith("health_") and c != "health_score"],
            "mrr"]


def coverage(book, queue, meta, playbooks, confidence: float, seed: int) -> pd.DataFrame:
    from churnml.jobs import effects as E

    rows = record(queue, meta.get("cs_policy_version", "p"))
    units = E.first_recommendations(rows)
    addresses = {k: b.addresses for k, b in playbooks.playbooks.items()}
    unit_rows = E.unit_outcomes(units, book, addresses=addresses,
                                horizons={o: HORIZON for o in ("churn", "expansion",
                                                               "contraction")},
                                worked_within_days=E.WORKED_WITHIN_DAYS)
    table = E.effects_table(unit_rows, playbooks, worked_within_days=E.WORKED_WITHIN_DAYS,
                            confidence=confidence, seed=seed)
    keys = ["account_id", "playbook", "as_of"]
    joined = unit_rows.merge(units[keys + ["true_worked", "churn_without", "churn_with",
                                           "expansion_without", "expansion_with",
                                           "contraction_without", "contraction_with"]],
                             on=keys, how="left")
    ripe = joined[joined["matured"] & joined["labeled"]]
    out = []
    for _, r in table.iterrows():  # a loop over plays
        if r["verdict"] == "not measured" or not r["n_holdout"]:
            continue
        g = ripe[(ripe["playbook"] == r["playbook"]) & ~ripe["holdout"]]
        o = r["outcome"]
        sign = 1.0 if o == "expansion" else -1.0
        effect = sign * (g[f"{o}_with"] - g[f"{o}_without"]) * g["true_worked"]
        truth = float(effect.mean())
        out.append({"seed": seed, "playbook": r["playbook"], "outcome": o,
                    "n_recommended": int(r["n_recommended"]), "n_holdout": int(r["n_holdout"]),
                    "measured": r["effect"], "ci_low": r["effect_ci_low"],
                    "ci_high": r["effect_ci_high"], "truth": truth,
                    "covered": bool(r["effect_ci_low"] <= truth <= r["effect_ci_high"])})
    return pd.DataFrame(out)


def label_rows(rows: pd.DataFrame, book, playbooks) -> pd.DataFrame:
    from churnml.jobs import effects as E

    addresses = {k: b.addresses for k, b in playbooks.playbooks.items()}
    rows = rows.reset_index(drop=True)
    labeled = E.unit_outcomes(rows, book, addresses=addresses,
                              horizons={o: HORIZON for o in ("churn", "expansion",
                                                             "contraction")},
                              worked_within_days=E.WORKED_WITHIN_DAYS)
    rows = rows.assign(outcome=labeled["outcome"].to_numpy(),
                       horizon_days=labeled["horizon_days"].to_numpy(),
                       treated=~rows["holdout"].astype(bool).to_numpy(),
                       label=labeled["label"].where(labeled["matured"]
                                                    & labeled["labeled"]).to_numpy())
    return rows


def rankings(book, queue, meta, playbooks, cut_share: float, seed: int, resamples: int):
    from churnml.models.uplift import DEFAULT_PARAMS, fit_uplift_set
    from churnml.outcomes import OUTCOMES
    from churnml.scoring.queue import UPLIFT, uplift_values

    risk = [o.name for o in OUTCOMES if o.is_risk]
    features = features_of(queue)
    weeks = np.sort(pd.to_datetime(queue["week_start"]).unique())
    cut = weeks[int(len(weeks) * cut_share)]
    rows = record(queue, meta.get("cs_policy_version", "p"))
    known = rows[rows["as_of"] + pd.Timedelta(days=HORIZON) <= cut]
    from churnml.jobs import effects as E

    first = label_rows(E.first_recommendations(known), book, playbooks)
    fitted = {"uplift (rules)": fit_uplift_set(first, features, playbooks.uplift_rules,
                                               risk_outcomes=risk, seed=seed)}
    weekly = label_rows(known, book, playbooks)
    fitted["uplift (any)"] = fit_uplift_set(
        weekly, features, {"min_holdout": 30, "min_recommended": 30, "min_events": 5},
        risk_outcomes=risk, seed=seed)
    # exploratory, not a product setting: smaller, more regularised trees on the same rows
    small = {**DEFAULT_PARAMS, "n_estimators": 60, "num_leaves": 4, "min_child_samples": 100}
    fitted["uplift (any, small trees)"] = fit_uplift_set(
        weekly, features, {"min_holdout": 30, "min_recommended": 30, "min_events": 5},
        risk_outcomes=risk, seed=seed, params=small)
    evaluation = queue[pd.to_datetime(queue["week_start"]) >= cut].reset_index(drop=True)
    capacity = dict(part.split("=") for part in meta.get("cs_capacity", "").split(",") if part)
    capacity = {k: int(v) for k, v in capacity.items()}
    compliance = float(meta.get("cs_compliance", 0.8))
    value = compliance * true_mrr_effect(evaluation, playbooks)
    play = evaluation["playbook"].to_numpy(dtype=object)
    candidate = play != playbooks.no_action_playbook
    scores = {"churn risk": evaluation["churn_probability"].to_numpy(dtype=float),
              "MRR at risk": (evaluation["churn_probability"] * evaluation["mrr"]).to_numpy(
                  dtype=float),
              "prior expected value": np.nan_to_num(evaluation["expected_value"].to_numpy(
                  dtype=float), nan=-np.inf)}
    for name, model in fitted.items():
        ev, source, _ = uplift_values(evaluation, play, evaluation["expected_value"].to_numpy(
            dtype=float), np.full(len(play), "", dtype=object), model, playbooks)
        score = np.nan_to_num(ev, nan=-np.inf)
        score[(source == UPLIFT) & ~(ev > 0)] = -np.inf  # never queued (the weekly job's rule)
        scores[name] = score
    scores["oracle"] = value
    every = [c for c in evaluation.columns if c.startswith("churn_90d_effect_")]
    best = None
    if every:  # books from a simulator that records every play's true effect
        plays = [c[len("churn_90d_effect_"):] for c in every]
        share = playbooks.typical_share
        grid = evaluation["mrr"].to_numpy()[:, None] * np.column_stack([
            -evaluation[f"churn_90d_effect_{p}"].to_numpy()
            + share.get("expansion", 1.0) * evaluation[f"expansion_90d_effect_{p}"].to_numpy()
            - share.get("contraction", 1.0) * evaluation[f"contraction_90d_effect_{p}"].to_numpy()
            for p in plays])
        best = compliance * grid.max(axis=1)
        scores["oracle, best play"] = best
    scores["random"] = np.random.default_rng(seed).random(len(value))
    frame = pd.DataFrame({"week": pd.to_datetime(evaluation["week_start"]).to_numpy(),
                          "owner": evaluation["owner"].astype(str).to_numpy(),
                          "value": value})[candidate]
    per_week = {}
    for name, score in scores.items():
        f = frame.assign(score=score[candidate])
        if name == "oracle, best play":  # the value of the best play, not the recommended one
            f = f.assign(value=best[candidate])
        f = f[np.isfinite(f["score"])]
        rank = f.sort_values(["week", "owner", "score"], ascending=[True, True, False],
                             kind="stable").groupby(["week", "owner"], sort=False).cumcount()
        cap = f["owner"].map(capacity).fillna(0).to_numpy()
        chosen = rank.reindex(f.index).to_numpy() < cap
        per_week[name] = f[chosen].groupby("week")["value"].sum().reindex(
            np.sort(frame["week"].unique()), fill_value=0.0)
    table = pd.DataFrame(per_week)
    rng = np.random.default_rng(seed)
    boot = rng.integers(0, len(table), (resamples, len(table)))
    totals = table.to_numpy()[boot].mean(axis=1)  # resamples x rankings: mean per week
    names = list(table.columns)
    summary = []
    for j, name in enumerate(names):
        lo, hi = np.quantile(totals[:, j], [0.025, 0.975])
        risk_j = names.index("churn risk")
        d_lo, d_hi = np.quantile(totals[:, j] - totals[:, risk_j], [0.025, 0.975])
        summary.append({"seed": seed, "ranking": name, "mrr_saved_per_week": table[name].mean(),
                        "ci_low": lo, "ci_high": hi,
                        "vs_risk": table[name].mean() - table["churn risk"].mean(),
                        "vs_risk_low": d_lo, "vs_risk_high": d_hi,
                        "share_of_oracle": table[name].mean() / table["oracle"].mean()})
    models = {name: {p: (u.n_holdout, u.n_recommended) for p, u in m.plays.items()}
              for name, m in fitted.items()}
    return pd.DataFrame(summary), models, len(table), str(pd.Timestamp(cut).date())


def active_per_week(books: Path, accounts: int, seed: int, holdout_share: float) -> pd.Series:
    """Accounts with MRR each simulated week (``_truth/state_weekly``), by ``week_start``."""
    folder = books / f"book{seed}_{accounts}" if holdout_share == 0.10 else \
        books / f"book{seed}_{accounts}_h{holdout_share:g}"
    state = pd.read_parquet(folder / "_truth" / "state_weekly.parquet",
                            columns=["week_start", "mrr"])
    state["week_start"] = pd.to_datetime(state["week_start"])
    return state[state["mrr"] > 0].groupby("week_start").size()


def critical_check(queue: pd.DataFrame, active: pd.Series | None = None) -> dict:
    """The simulated team's queue: the share of active accounts with a new critical signal
    each week, and how many jumped the queue again the next week; with ``active`` (accounts
    with MRR per week) the share of the week's active accounts with critical severity and
    with a queued jump, in the team's first week, on average and in the busiest week."""
    q = queue.assign(week_start=pd.to_datetime(queue["week_start"]))
    jumps = q[q["jump"].astype(bool)]
    per_week = jumps.groupby("week_start").size()
    shares = {}
    if active is not None:
        weeks = pd.Index(np.sort(q["week_start"].unique()))
        den = active.reindex(weeks).astype(float)
        crit = (q["severity"] == "critical").groupby(q["week_start"]).sum().reindex(weeks)
        crit_share = crit.fillna(0) / den
        jump_share = per_week.reindex(weeks).fillna(0) / den
        shares = {"critical_share_first_week": round(float(crit_share.iloc[0]), 4),
                  "critical_share_mean": round(float(crit_share.mean()), 4),
                  "critical_share_max": round(float(crit_share.max()), 4),
                  "jump_share_mean": round(float(jump_share.mean()), 4),
                  "jump_share_max": round(float(jump_share.max()), 4)}
    weeks = np.sort(q["week_start"].unique())
    next_of = dict(zip(weeks[:-1], weeks[1:]))
    pairs = set(zip(jumps["account_id"], jumps["week_start"]))
    again = sum((a, next_of.get(w)) in pairs for a, w in pairs)
    cm = q[(q["owner"] == "CS manager") & (q["queue_status"] == "queued")]
    new = (q["severity"] == "critical") & (q["owner"] == "CS manager")
    return {"jumps_per_week_max": int(per_week.max()) if len(per_week) else 0,
            "jumps_per_week_mean": float(per_week.mean()) if len(per_week) else 0.0,
            "jumped_again_next_week": int(again), "jumps": int(len(pairs)),
            "cs_manager_queued_per_week": float(cm.groupby("week_start").size().mean()),
            "cs_manager_jump_share": float(cm["jump"].astype(bool).mean()) if len(cm) else 0.0,
            "cs_manager_critical_on_watch_per_week": float(
                (new & (q["queue_status"] == "watch")).groupby(q["week_start"]).sum().mean()),
            **shares}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=1500)
    parser.add_argument("--seeds", default="101,102,103,104")
    parser.add_argument("--books", default="/tmp/actions_books")
    parser.add_argument("--cut-share", type=float, default=0.5)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--holdout-share", type=float, default=0.10,
                        help="the team's holdout share (the playbook's is 0.10)")
    args = parser.parse_args()
    from churnml.scoring.actions import load_playbooks

    playbooks = load_playbooks()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"load average at start: {os.getloadavg()}")
    cover, ranks = [], []
    for seed in seeds:
        t0 = time.perf_counter()
        book, queue, meta = load(Path(args.books), args.accounts, seed, args.holdout_share)
        cover.append(coverage(book, queue, meta, playbooks, args.confidence, seed))
        summary, models, n_weeks, cut = rankings(book, queue, meta, playbooks, args.cut_share,
                                                 seed, args.resamples)
        ranks.append(summary)
        crit = critical_check(queue, active_per_week(Path(args.books), args.accounts, seed,
                                                     args.holdout_share))
        print(f"\nseed {seed}: {n_weeks} evaluation weeks from {cut}; capacity "
              f"{meta.get('cs_capacity')}; models (held out, recommended): {models}")
        print(f"  critical: {crit}")
        print(summary.drop(columns="seed").to_string(index=False, float_format="%.1f"))
        log(f"seed {seed} done in {time.perf_counter() - t0:.0f} s, load {os.getloadavg()}")
    cover_all = pd.concat(cover, ignore_index=True)
    print(f"\n(a) coverage of the true ITT effect by the {args.confidence:.0%} interval")
    print(cover_all.to_string(index=False, float_format="%.4f"))
    k, n = int(cover_all["covered"].sum()), len(cover_all)
    from churnml.jobs.effect_stats import wilson

    lo, hi = wilson(k, n)
    print(f"covered {k} of {n} (seed, play) pairs = {k / max(n, 1):.0%} "
          f"(Wilson 95% {lo:.0%} to {hi:.0%})")
    big = cover_all[cover_all["n_holdout"] >= 20]
    print(f"plays with at least 20 held-out units: covered {int(big['covered'].sum())} of "
          f"{len(big)}")
    allr = pd.concat(ranks, ignore_index=True)
    print("\n(b) MRR saved per evaluation week at the same capacity, mean over seeds "
          "(t interval over seeds)")
    t = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78, 6: 2.57}
    out = []
    for name, g in allr.groupby("ranking", sort=False):
        m, s, k = g["mrr_saved_per_week"].mean(), g["mrr_saved_per_week"].std(ddof=1), len(g)
        half = t.get(k, 2.0) * s / math.sqrt(k) if k > 1 else float("nan")
        d = g["vs_risk"]
        dhalf = t.get(k, 2.0) * d.std(ddof=1) / math.sqrt(k) if k > 1 else float("nan")
        out.append({"ranking": name, "mrr_saved_per_week": m, "ci_low": m - half,
                    "ci_high": m + half, "vs_risk": d.mean(), "vs_risk_low": d.mean() - dhalf,
                    "vs_risk_high": d.mean() + dhalf,
                    "share_of_oracle": g["share_of_oracle"].mean(),
                    "seeds_beating_risk": int((g["vs_risk_low"] > 0).sum())})
    print(pd.DataFrame(out).to_string(index=False, float_format="%.2f"))
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
