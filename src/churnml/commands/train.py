"""``churnml train --data DIR --target {churn,expansion,contraction,time_to_event} [--horizon-days D] [--config FILE] [--sample-accounts N] [--scores OUT]``.

``--target time_to_event`` trains the competing-risk model over every outcome
(``churnml.models.survival_train``) and registers it as ``churnml-time-to-event``.

Builds weekly observations from the book, trains LightGBM with the split policy the book allows
(a time split: train, gap, calibration, gap, test; a short book's train, gap, test with
cross-fitted calibration; or cross-sectional K-fold cross-validation at one date), calibrates,
evaluates against the health score, a logistic regression and (simulated books) the oracle
on the same test rows, runs the rolling-origin backtest, refits the champion on every labeled
date (``refit`` in the config; a cross-sectional run fits it on all rows), logs everything to
MLflow and registers the model; the champion alias moves only if the new version beats the
champion on the new test rows after the champion's training span (with ``--scores OUT``, when the
weekly monitoring there recommends retraining the champion: unless it is worse by
``promotion.after_retrain_margin`` or more, and the run takes the recency weight
``training.recency_after_retrain_days``). A book too large for one
machine trains on a stratified sample of accounts (``--sample-accounts`` or the config's
``sample.max_accounts``; ``churnml.models.sampling``), stated in a note, MLflow and the model
card. Prints the comparison table, the split dates, the
registered version and whether it became champion. Exit 2 on bad input.
"""

from __future__ import annotations

from pathlib import Path
from enum import Enum
from typing import Annotated, Optional

import typer

from churnml.commands.sources import source as parse_source


from churnml.outcomes import MODEL_TARGETS, TIME_TO_EVENT

#: the ``--target`` choices: one per outcome of the registry (churnml.outcomes), then the
#: competing-risk model over all of them (``time_to_event``)
Target = Enum("Target", {name: name for name in MODEL_TARGETS}, type=str)  # type: ignore[misc]


def train(
    data: Annotated[Path, typer.Option("--data", parser=parse_source, help="Folder with the book of business (data contract). Or a database URL (postgresql://..., duckdb:///...)")],
    target: Annotated[Target, typer.Option("--target", help="Which model to train.")],
    horizon_days: Annotated[Optional[int], typer.Option("--horizon-days", help="Label horizon in days "
                                                        "(default: the target's config, 90).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Model config YAML "
                                                   "(default: models/<target>.yaml).")] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Log evaluation plots.")] = True,
    sample_accounts: Annotated[Optional[int], typer.Option(
        "--sample-accounts", min=2, help="Train on a stratified sample of at most N accounts (ever had "
        "the event x MRR size band, seeded; default: the config's sample.max_accounts, none = all). "
        "The run and the model card state the sample and its effect on the evaluation.")] = None,
    scores: Annotated[Optional[Path], typer.Option(
        "--scores", help="The weekly job's output folder (as in `churnml monitor --scores`). When its "
        "latest monitored week recommends retraining this outcome's champion, the gate promotes the "
        "new version unless it is worse by promotion.after_retrain_margin or more (non-inferiority) "
        "instead of requiring it to beat the champion, and trains with the recency weight "
        "training.recency_after_retrain_days (churn: 90 days).")] = None,
) -> None:
    """Train, evaluate, track and register one outcome's model (churn, expansion, contraction) or the time-to-event model."""
    from churnml.console import console, literal, progress
    from churnml.errors import RegistryUnavailableError, UsageError

    target_name: str = Target(target).value  # the outcome name
    if isinstance(data, Path) and not data.is_dir():
        raise UsageError(f"--data {data}: not a folder (expected <table>.parquet|.csv files)")
    if config is not None and not config.is_file():
        raise UsageError(f"--config {config}: no such file")

    if target_name == TIME_TO_EVENT:
        if horizon_days is not None:
            raise UsageError(f"--horizon-days does not apply to --target {TIME_TO_EVENT} (it predicts "
                             f"30, 60, 90 and 180 days at once)")
        if sample_accounts is not None:
            raise UsageError(f"--sample-accounts does not apply to --target {TIME_TO_EVENT} yet "
                             f"(it trains on every account)")
        if scores is not None:
            raise UsageError(f"--scores does not apply to --target {TIME_TO_EVENT} (the weekly "
                             f"monitoring watches the per-outcome models only)")
        train_time_to_event_command(data, config)
        return

    from churnml.data.io import load_book
    from churnml.models import registry
    from churnml.models.config import load_config
    from churnml.models.train import train_target

    model_config = load_config(target_name, path=config, horizon_days=horizon_days)
    retrain, weight_note = None, None
    if scores is not None:
        from churnml.jobs.drift import latest_recommendation
        from churnml.models.recency import after_retrain

        retrain = latest_recommendation(scores, target_name)  # before the long part: exit 2 early
        # the drift response: the after-retrain recency weight when the recommendation is about
        # the champion this run challenges (an unreachable registry: no weight; the gate then
        # keeps the champion anyway)
        try:
            current = registry.champion_version(target_name)
        except RegistryUnavailableError:
            current = None
        model_config, weight_note = after_retrain(
            model_config, retrain.recommended and retrain.model_version == current)
        if weight_note:
            console.print(f"[yellow]note:[/yellow] {literal(weight_note)}", highlight=False, soft_wrap=True)
    with progress(f"{target_name}: loading {data}", total=4 + model_config.backtest_folds) as step:
        book, report = load_book(data)
        if getattr(report, "total_rejected", 0):
            console.print(f"[yellow]warning:[/yellow] {report.total_rejected:,} rows set aside "
                          f"while loading (see `churnml validate --data {literal(data)}`)", highlight=False)
        step.note(f"{target_name}: building features")
        from churnml.models.baselines import find_truth

        truth = find_truth(data) if isinstance(data, Path) else None
        result = train_target(book, target_name, model_config, truth=truth,
                              progress=step, sample_accounts=sample_accounts)
        if weight_note:
            result.notes.append(weight_note)  # printed with the table, logged with the run
        step.note(f"{target_name}: logging to MLflow")
        registration = registry.log_training(result, plots=plots, progress=step, retrain=retrain)
        step.advance()
        step.note(f"{target_name}: done")
    print_summary(result, registration)


def train_time_to_event_command(data: Path, config: Path | None) -> None:
    """``--target time_to_event``: the competing-risk model (churnml.models.survival_train),
    logged and registered as ``churnml-time-to-event``; prints its figures per outcome."""
    import math

    from rich.console import Console

    from churnml.console import console, literal, progress
    from churnml.data.io import load_book
    from churnml.models import registry
    from churnml.models.baselines import find_truth
    from churnml.models.survival import CLASSES
    from churnml.models.survival_train import load_survival_config, train_time_to_event

    survival_config = load_survival_config(config)
    with progress(f"{TIME_TO_EVENT}: loading {data}", total=3) as step:
        book, report = load_book(data)
        if getattr(report, "total_rejected", 0):
            console.print(f"[yellow]warning:[/yellow] {report.total_rejected:,} rows set aside "
                          f"while loading (see `churnml validate --data {literal(data)}`)", highlight=False)
        truth = find_truth(data) if isinstance(data, Path) else None
        result = train_time_to_event(book, survival_config, truth=truth, progress=step)
        step.note(f"{TIME_TO_EVENT}: logging to MLflow")
        registration = registry.log_time_to_event(result, progress=step)
        step.advance()
    out = Console()

    def fmt(value) -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"

    m, split = result.metrics, result.split
    out.print(f"{TIME_TO_EVENT}: test landmarks {split['test_start']} to {split['test_end']} "
              f"({split['test_landmarks']}, follow-up censored at the data's end); training rows end by "
              f"{split['train_cutoff']}", highlight=False, soft_wrap=True)
    out.print("outcome       AUC 30d  AUC 90d  AUC 180d  C-index  IBS    IBS null  calibrated deciles 90d",
              highlight=False, markup=False)
    for name in CLASSES[1:]:
        out.print(f"{name:<13} {fmt(m.get(f'test_td_auc_{name}_30d')):>7}  {fmt(m.get(f'test_td_auc_{name}_90d')):>7}"
                  f"  {fmt(m.get(f'test_td_auc_{name}_180d')):>8}  {fmt(m.get(f'test_cindex_{name}')):>7}"
                  f"  {fmt(m.get(f'test_ibs_{name}')):>5}  {fmt(m.get(f'null_test_ibs_{name}')):>8}"
                  f"  {m.get(f'test_calibration_within_{name}_90d', float('nan')):.0%}",
                  highlight=False, markup=False)
    oracle = (f", oracle {fmt(m['oracle_test_roc_auc_churn_90d'])}"
              if "oracle_test_roc_auc_churn_90d" in m else "")
    out.print(f"90-day churn ROC AUC on {int(m.get('test_rows_churn_90d', 0)):,} rows: this model "
              f"{fmt(m.get('test_roc_auc_churn_90d'))}, binary LightGBM "
              f"{fmt(m.get('binary_test_roc_auc_churn_90d'))}{oracle}", highlight=False, soft_wrap=True)
    out.print("time: " + ", ".join(f"{k.removesuffix('_seconds')} {v:.1f} s" for k, v in result.timings.items()),
              highlight=False, soft_wrap=True)
    status = "[green]champion[/green]" if registration.became_champion else "[yellow]challenger[/yellow]"
    out.print(f"registered {survival_config.registered_name} version {registration.version}: {status} "
              f"({literal(registration.reason)}); MLflow run {registration.run_id}", highlight=False,
              soft_wrap=True)


def print_summary(result, registration) -> None:
    """The comparison table, split and registry outcome (stdout)."""
    import math

    from rich.console import Console
    from rich.table import Table

    from churnml.console import literal

    out = Console()
    for note in result.notes:
        if note.startswith("split policy:"):
            continue  # printed below the table
        out.print(f"[yellow]note:[/yellow] {literal(note)}", highlight=False, soft_wrap=True)
    split = result.split.describe()
    m = result.metrics
    policy = split.get("policy", "time")
    if policy == "cross_sectional":
        title = (f"{result.config.target}: cross-sectional at {split['test_start']}, "
                 f"{int(m.get('cv_folds', 0))}-fold cross-validation grouped by account "
                 f"(fold means; horizon {split['horizon_days']} days)")
    else:
        title = (f"{result.config.target}: test window {split['test_start']} to {split['test_end']} "
                 f"({split['test_dates']} weekly as_of dates, horizon {split['horizon_days']} days)")
    table = Table(title=title)
    for column in ("scorer", "ROC AUC", "PR AUC", "lift top 10%", "Brier", "ECE"):
        table.add_column(column, justify="left" if column == "scorer" else "right")

    def fmt(value) -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"

    for row in result.comparison().itertuples(index=False):
        table.add_row(literal(row.scorer), fmt(row.roc_auc), fmt(row.pr_auc), fmt(row.lift_top_decile),
                      fmt(row.brier), fmt(row.ece))
    out.print(table)
    out.print(f"split policy: {policy} ({literal(str(split.get('policy_reason', '')))})",
              highlight=False, soft_wrap=True)
    interval = ("pooled out-of-fold predictions, bootstrap by account" if policy == "cross_sectional"
                else "bootstrap by account")
    out.print(
        f"ROC AUC 95% interval ({interval}): {fmt(m.get('test_roc_auc_ci_low'))} to "
        f"{fmt(m.get('test_roc_auc_ci_high'))}; ECE before calibration {fmt(m.get('test_ece_uncalibrated'))}, "
        f"after ({result.model.calibrator.method}) {fmt(m.get('test_ece'))}; "
        f"top-decile MRR capture {fmt(m.get('test_mrr_capture_top_decile'))}",
        highlight=False, soft_wrap=True)
    folds = ", ".join(f"fold {r.fold} {fmt(r.roc_auc)}" for r in result.backtest.itertuples())
    if policy == "cross_sectional":
        out.print(f"cross-validated ROC AUC by fold: {folds}; spread (std over folds): model ROC AUC "
                  f"{fmt(m.get('test_roc_auc_std'))}, Brier {fmt(m.get('test_brier_std'))}; logistic "
                  f"regression ROC AUC {fmt(m.get('logreg_test_roc_auc_std'))}, Brier "
                  f"{fmt(m.get('logreg_test_brier_std'))}", highlight=False, soft_wrap=True)
        out.print(f"split: cross-sectional at {split['train_start']}, "
                  f"{result.dataset.fingerprint()['rows']:,} observations, one per account; the registered "
                  f"model is fitted on all of them with a cross-fitted calibrator", highlight=False,
                  soft_wrap=True)
    else:
        out.print(f"backtest ROC AUC: {folds} (mean {fmt(m.get('backtest_roc_auc_mean'))}, "
                  f"std {fmt(m.get('backtest_roc_auc_std'))})", highlight=False, soft_wrap=True)
        if policy == "short":
            out.print(f"split: train {split['train_start']}..{split['train_end']} ({split['train_dates']} "
                      f"dates), gap {split['gap_days']} days, test {split['test_start']}..{split['test_end']} "
                      f"({split['test_dates']}); no calibration window (rounds and calibrator "
                      f"cross-fitted inside training)", highlight=False, soft_wrap=True)
        else:
            out.print(f"split: train {split['train_start']}..{split['train_end']} ({split['train_dates']} dates), "
                      f"calibration {split['calibration_start']}..{split['calibration_end']} "
                      f"({split['calibration_dates']}), test {split['test_start']}..{split['test_end']} "
                      f"({split['test_dates']}), gaps {split['gap_days']} days", highlight=False, soft_wrap=True)
    refit = result.fit_details.get("refit")
    if refit:
        out.print(f"registered model: refitted on every labeled as_of date, {refit['train_start']}.."
                  f"{refit['train_end']} ({refit['rows']:,} observations, {refit['rounds']} rounds); "
                  f"the metrics above are the train-window model's", highlight=False, soft_wrap=True)
    elif policy != "cross_sectional":
        out.print(f"registered model: the train-window model (refit off), fitted on as_of dates up "
                  f"to {result.train_end}", highlight=False, soft_wrap=True)
    timings = result.fit_details.get("timings", {})
    if timings:
        out.print("time: " + ", ".join(f"{k.removesuffix('_seconds')} {v:.1f} s" for k, v in timings.items()),
                  highlight=False, soft_wrap=True)
    status = "[green]champion[/green]" if registration.became_champion else "[yellow]challenger[/yellow]"
    out.print(f"registered {result.config.registered_name} version {registration.version}: {status} "
              f"({literal(registration.reason)}); MLflow run {registration.run_id}", highlight=False, soft_wrap=True)
