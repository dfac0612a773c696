"""A model card per registered version: markdown built from a ``TrainingResult``.

``registry.log_training`` writes it as the run's artifact ``model_card.md`` and ``/metadata``
links to it. Sections: the outcome and its label rule (from :mod:`churnml.outcomes`), the data
span and the split policy with its reason, the features (count, names grouped by health
dimension), the evaluation against the baselines (``TrainingResult.comparison()`` with the ROC
AUC interval), calibration (method, ECE) and the known limits of this run (cross-sectional,
short book, drift, attributes as exported today, sampled training).

Example::

    from churnml.models.card import model_card
    text = model_card(result, version="3")
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from churnml.models import recency
from churnml.outcomes import get_outcome

__all__ = ["model_card", "label_rule_text"]

#: features per dimension listed by name before "and N more"
MAX_NAMES = 25


def label_rule_text(rule: str, horizon_days: int, expansion_min_share: float = 0.0) -> str:
    """The label rule of an outcome in words, for ``horizon_days``."""
    window = f"`[as_of, as_of + {horizon_days} days)`"
    if rule == "mrr_reaches_zero":
        return f"the account's MRR reaches 0 in {window}"
    if rule == "mrr_rises":
        share = (f" by at least {expansion_min_share:.0%} of the previous MRR"
                 if expansion_min_share > 0 else "")
        return (f"the account's MRR rises from a value above 0{share} in {window} (rows with "
                f"reason `price_increase` excluded)")
    if rule == "mrr_falls_above_zero":
        return (f"the account's MRR falls in {window} from a value above 0 to a smaller value "
                f"still above 0 (a fall to 0 is churn)")
    return f"label rule `{rule}` in {window}"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def _feature_groups(model) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for name, dimension in model.dimensions.items():
        groups.setdefault(str(dimension), []).append(name)
    return groups


def model_card(result, version: str | None = None, run_id: str | None = None,
               trained_at: str | None = None) -> str:
    """The markdown model card of ``result`` (a ``TrainingResult``); ``version`` and
    ``run_id`` name the registered version and its MLflow run when known. A ``train_end`` in
    ``result.model.info`` (the refit's span) is shown when present."""
    config, model, metrics = result.config, result.model, result.metrics
    outcome = get_outcome(config.target)
    split = result.split.describe()
    policy = str(split.get("policy", "time"))
    fingerprint = result.dataset.fingerprint()
    trained_at = trained_at or pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d %H:%M UTC")
    title = f"# Model card: {outcome.model_name}" + (f" version {version}" if version else "")
    lines = [title, ""]
    facts = [f"trained {trained_at}", f"LightGBM {model.info.get('lightgbm_version', '?')}"]
    if run_id:
        facts.append(f"MLflow run `{run_id}`")
    lines += ["; ".join(facts) + ".", ""]

    # -- outcome
    lines += ["## Outcome and label rule", "",
              f"**{outcome.title}** (`{outcome.name}`): the calibrated probability that "
              f"{label_rule_text(outcome.label_rule, config.horizon_days, config.expansion_min_share)}"
              f", for an account active at `as_of`. Label rule `{outcome.label_rule}` "
              f"(`churnml.outcomes`); horizon {config.horizon_days} days; observations every "
              f"{config.cadence_days} days. Value: `{outcome.value_column}` = {outcome.value_meaning}.",
              ""]

    # -- data and split
    lines += ["## Data and split policy", "",
              f"{fingerprint['rows']:,} observations of {fingerprint['accounts']:,} accounts, as_of "
              f"{fingerprint['as_of_start']} to {fingerprint['as_of_end']}.", "",
              f"**Split policy: `{policy}`**. {split.get('policy_reason') or 'the time split'}.", ""]
    if policy == "cross_sectional":
        lines += [f"Cross-sectional at {split['train_start']}: stratified "
                  f"{int(metrics.get('cv_folds', config.cv_folds))}-fold cross-validation grouped by "
                  f"account; every metric below is the mean over folds, with its spread (standard "
                  f"deviation). The registered model is fitted on all {fingerprint['train_rows']:,} "
                  f"observations ({fingerprint['train_positives']:,} positive) with a cross-fitted "
                  f"calibrator.", ""]
    else:
        rows = [[name, split[f"{name}_start"] or "-", split[f"{name}_end"] or "-",
                 split[f"{name}_dates"], fingerprint[f"{name}_rows"], fingerprint[f"{name}_positives"]]
                for name in ("train", "calibration", "test")
                if policy == "time" or name != "calibration"]
        lines += _table(["window", "first as_of", "last as_of", "dates", "observations", "positives"],
                        rows)
        gap = (f"gaps of {split['gap_days']} days between windows" if policy == "time" else
               f"one gap of {split['gap_days']} days between training and test; no calibration window")
        lines += ["", f"{gap.capitalize()}.", ""]
    refit = (getattr(result, "fit_details", None) or {}).get("refit")
    if refit:
        lines += [f"The registered model was refitted on every labeled as_of date, "
                  f"{refit['train_start']} to `train_end` = {model.info.get('train_end')} "
                  f"({refit['rows']:,} observations, {refit['rounds']} rounds, a "
                  f"{refit['calibration']} calibrator cross-fitted over account folds); the "
                  f"evaluation below is the train-window model's.", ""]
    elif model.info.get("train_end"):
        fitted = ("every observation" if policy == "cross_sectional"
                  else "the training window (refit off)")
        lines += [f"The registered model was fitted on {fitted}: as_of dates up to "
                  f"`train_end` = {model.info['train_end']}.", ""]
    lines += [f"Training weights: {recency.describe(config.recency_half_life_days)}.", ""]

    # -- features
    groups = _feature_groups(model)
    n_cat = len(model.categories)
    lines += ["## Features", "",
              f"{len(model.feature_names)} features ({n_cat} categorical), by health dimension:", ""]
    for dimension in sorted(groups, key=lambda d: (-len(groups[d]), d)):
        names = groups[dimension]
        shown = ", ".join(f"`{n}`" for n in names[:MAX_NAMES])
        more = f" and {len(names) - MAX_NAMES} more" if len(names) > MAX_NAMES else ""
        lines.append(f"- **{dimension}** ({len(names)}): {shown}{more}")
    dropped = result.dataset.dropped_features
    if dropped:
        lines.append(f"- left out ({len(dropped)}): " + "; ".join(
            f"`{k}` ({v})" for k, v in list(dropped.items())[:MAX_NAMES]))
    constrained = model.info.get("monotone_constraints") or {}
    lines += ["", f"{len(constrained)} monotone constraints from the catalog's directions "
              f"({len(model.info.get('monotone_dropped') or {})} dropped as contradicted by the "
              f"training data). Best iteration: {model.info.get('best_iteration')} trees.", ""]

    # -- evaluation
    where = ("mean over the cross-validation folds (each fold's rows held out)"
             if policy == "cross_sectional" else
             f"test window {split['test_start']} to {split['test_end']}, never used for any choice")
    lines += ["## Evaluation against the baselines", "", f"On the same rows: {where}.", ""]
    comparison = result.comparison()
    rows = [[r.scorer, r.roc_auc, r.pr_auc, r.lift_top_decile, r.brier, r.ece]
            for r in comparison.itertuples(index=False)]
    lines += _table(["scorer", "ROC AUC", "PR AUC", "lift top 10%", "Brier", "ECE"], rows)
    interval = (f"ROC AUC 95% interval {_fmt(metrics.get('test_roc_auc_ci_low'))} to "
                f"{_fmt(metrics.get('test_roc_auc_ci_high'))} (bootstrap resampling accounts"
                + (", on the pooled out-of-fold predictions)" if policy == "cross_sectional" else ")"))
    lines += ["", interval + "."]
    if policy == "cross_sectional":
        lines.append(
            f"Spread over folds (std): model ROC AUC {_fmt(metrics.get('test_roc_auc_std'))}, Brier "
            f"{_fmt(metrics.get('test_brier_std'))}; logistic regression ROC AUC "
            f"{_fmt(metrics.get('logreg_test_roc_auc_std'))}, Brier "
            f"{_fmt(metrics.get('logreg_test_brier_std'))}.")
    backtest = result.backtest
    if len(backtest):
        what = "Cross-validation folds" if policy == "cross_sectional" else "Rolling-origin backtest"
        folds = ", ".join(f"fold {r.fold} {_fmt(r.roc_auc)}" for r in backtest.itertuples())
        lines.append(f"{what}, ROC AUC: {folds}.")
    lines.append("")

    # -- calibration
    cv = model.info.get("calibration_cv") or {}
    chosen = ", ".join(f"{k.removeprefix('cv_log_loss_')} {v:.4f}" for k, v in cv.items())
    fitted_on = model.info.get("calibration_fitted_on") or (
        "the calibration window" if policy == "time" else "out-of-fold predictions")
    lines += ["## Calibration", "",
              f"Method: **{model.calibrator.method}** (configured `{config.calibration_method}`"
              + (f"; account-grouped cross-validated log loss: {chosen}" if chosen else "") + f"), "
              f"fitted on {fitted_on}. ECE {_fmt(metrics.get('test_ece'))} after calibration, "
              f"{_fmt(metrics.get('test_ece_uncalibrated'))} before (10 equal-count bins).", ""]

    # -- limits
    limits = []
    if policy == "cross_sectional":
        limits.append(f"**Cross-sectional**: trained and evaluated at one date "
                      f"({split['train_start']}, one {config.horizon_days}-day horizon before the "
                      f"data's end, so that every label window fits) across accounts. Nothing "
                      f"measures how the model holds up on later weeks; scores of future weeks "
                      f"assume the relation between attributes and the outcome stays as it was. "
                      f"Accounts that joined after that date are not in the observations.")
    if policy == "short":
        limits.append(f"**Short book**: {split['train_dates']} training dates and a test window of "
                      f"{split['test_dates']} dates ({fingerprint['test_positives']} positive "
                      f"observations), so the ROC AUC interval is wide; no backtest.")
    if policy != "cross_sectional":
        limits.append(f"**Drift**: the model learned from as_of dates up to {split['train_end']} "
                      f"and was tested up to {split['test_end']}; behaviour, products and prices "
                      f"change, so re-train as new labels arrive and watch the calibration.")
    if "oracle_test_roc_auc" not in metrics:
        limits.append("No simulator truth: no ceiling (oracle) to compare with.")
    sample = result.fit_details.get("sample") or model.info.get("sample")
    if sample:
        limits.append(f"**Sampled training**: {sample}.")
    limits += [f"{note}" for note in result.notes
               if not note.startswith("split policy:") and note != sample]  # the sample: once
    lines += ["## Known limits", ""] + [f"- {text}" for text in limits] + [""]
    return "\n".join(lines)
