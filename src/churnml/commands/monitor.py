"""``churnml monitor --scores DIR --data DIR``: realized performance, drift and the retrain
trigger of every scored week.

Recomputes ``DIR/monitoring/realized.parquet`` from every complete partition of the scores
folder and the book's revenue history, then ``drift.parquet``, ``estimated.parquet`` and
``retrain.parquet`` week by week against the reference profile of the version that scored each
week (a backfill: the same tables whatever was there before; the weekly job adds its own week
itself). See ``churnml.jobs.monitoring`` and ``churnml.jobs.drift``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from churnml.commands.sources import source as parse_source


def monitor(
    scores: Annotated[Path, typer.Option("--scores", help="Output folder of churnml score (as_of=... partitions).")],
    data: Annotated[Path, typer.Option("--data", parser=parse_source, help="Folder with <table>.parquet|.csv files (the book whose revenue history gives the outcomes). Or a database URL (postgresql://..., duckdb:///...)")],
    feature_drift: Annotated[bool, typer.Option("--feature-drift/--no-feature-drift", help="Rebuild each week's features from the book for the feature drift (the score's drift needs only the partitions).")] = True,
) -> None:
    """Check every scored week whose outcomes are now known: model vs health score."""
    from churnml.console import console, literal, progress
    from churnml.data.io import load_book
    from churnml.errors import UsageError
    from churnml.jobs import drift, monitoring

    if not scores.is_dir():
        raise UsageError(f"--scores must be the output folder of churnml score. Got {str(scores)!r}.")
    if isinstance(data, Path) and not data.is_dir():
        raise UsageError(f"--data must be a folder of table files. Got {str(data)!r}.")
    with progress("monitor") as step:
        step.note("loading the book")
        book, _ = load_book(data)
        step.note("measuring the matured weeks")
        table = monitoring.update_realized(scores, book, spans=monitoring.registry_spans,
                                           recompute=True)
        step.note("measuring drift and the retrain rules week by week")
        status = drift.backfill(scores, book, facts=drift.RegistryFacts(), realized=table,
                                features=feature_drift,
                                on_week=lambda d: step.note(f"drift of {d:%Y-%m-%d}"))
    counted = monitoring.out_of_sample(table)
    # plain aligned text: every value whole at any terminal width
    header = (f"{'outcome':<12} {'week':<10} {'accounts':>8} {'events':>6} {'AUC':>6} "
              f"{'health':>6} {'ECE':>6} {'weeks':>5} {'in sample':>9}")
    lines = ["realized performance, latest matured week out of sample", header,
             "-" * len(header)]
    for outcome in sorted(table["outcome"].unique()) if len(table) else []:
        rows = counted[counted["outcome"] == outcome]
        every = table[table["outcome"] == outcome]
        in_sample = every.loc[every["scorer"] == "model", "as_of"].nunique() - \
            rows.loc[rows["scorer"] == "model", "as_of"].nunique()
        if not len(rows):
            lines.append(f"{outcome:<12} {'-':<10} {'-':>8} {'-':>6} {'-':>6} {'-':>6} {'-':>6} "
                         f"{0:>5} {in_sample:>9}")
            continue
        last = rows[rows["as_of"] == rows["as_of"].max()].set_index("scorer")
        model = last.loc["model"] if "model" in last.index else None
        health = last.loc["health_score"]
        lines.append(
            f"{outcome:<12} {rows['as_of'].max():%Y-%m-%d} {int(health['n']):>8,} "
            f"{int(health['positives']):>6,} "
            f"{(format(model['roc_auc'], '.3f') if model is not None else '-'):>6} "
            f"{health['roc_auc']:>6.3f} "
            f"{(format(model['ece'], '.3f') if model is not None else '-'):>6} "
            f"{rows['as_of'].nunique():>5} {in_sample:>9}")
    if len(lines) == 3:
        lines.append("no scored week has matured yet (outcomes are known one horizon later)")
    console.print("\n".join(lines), highlight=False, markup=False, soft_wrap=True)
    console.print("AUC and ECE: the model's; health: the health score's AUC. weeks: matured weeks "
                  "out of sample (counted); in sample: matured weeks inside the scoring model's "
                  "training span (not counted)", highlight=False, soft_wrap=True)
    console.print(f"wrote {literal(monitoring.realized_path(scores))} ({len(table):,} rows)",
                  highlight=False, soft_wrap=True)
    console.print("\n".join(_status_lines(status, scores, data)), highlight=False, markup=False,
                  soft_wrap=True)
    for name in (drift.DRIFT_NAME, drift.ESTIMATED_NAME, drift.RETRAIN_NAME):
        console.print(f"wrote {literal(drift.table_path(scores, name))}", highlight=False,
                      soft_wrap=True)


def _status_lines(status, scores=None, data=None) -> list[str]:
    """The latest week's drift, estimate and retrain status, one line per outcome, and the
    command that retrains an outcome the rules recommend retraining."""
    if not len(status.estimated):
        return ["no scored week to measure drift on"]
    week = status.estimated["as_of"].max()
    header = (f"{'outcome':<12} {'score PSI':>9} {'features shifted':>16} {'est. AUC':>8} "
              f"{'training':>8}  retrain")
    lines = ["", f"drift and retrain status, latest scored week {week:%Y-%m-%d}", header,
             "-" * len(header)]
    for _, e in status.estimated.iterrows():
        name = e["outcome"]
        d = status.drift[status.drift["outcome"] == name] if len(status.drift) else status.drift
        score = d[d["kind"] == "score"] if len(d) else d
        feats = d[d["kind"] == "feature"] if len(d) else d
        r = status.retrain[status.retrain["outcome"] == name]
        psi = f"{score['psi'].iloc[0]:.3f}" if len(score) else "-"
        shifted = (f"{int((feats['status'] == 'shifted').sum())}/{len(feats)}" if len(feats)
                   else "-")
        verdict = ("yes: " + str(r["retrain_reason"].iloc[0])
                   if len(r) and bool(r["retrain_recommended"].iloc[0]) else "no")
        lines.append(f"{name:<12} {psi:>9} {shifted:>16} {e['estimated_roc_auc']:>8.3f} "
                     f"{e['training_roc_auc']:>8.3f}  {verdict}")
    lines.append("est. AUC: expected from the calibrated probabilities alone (CBPE; assumes the "
                 "calibration holds and no concept drift)")
    due = [str(n) for n in status.retrain.loc[status.retrain["retrain_recommended"].astype(bool),
                                              "outcome"]] if len(status.retrain) else []
    for name in due:
        lines.append(f"to retrain {name}: churnml train --data {data or 'DIR'} --target {name} "
                     f"--scores {scores or 'OUT'}  (recency-weighted by "
                     f"training.recency_after_retrain_days; the gate then promotes the new version "
                     f"unless it is worse than the champion by promotion.after_retrain_margin or more)")
    return lines
