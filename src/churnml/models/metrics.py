"""Evaluation metrics on a held-out window (probabilities in [0, 1], labels 0/1).

Names follow the issue: ``roc_auc``, ``pr_auc`` (average precision), ``brier``, ``log_loss``,
``lift_top_decile``, ``ece`` (10 equal-count bins), ``mrr_capture_top_decile``; the caller
prefixes them (``test_``, ``health_test_``...).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from churnml.models.calibration import EPS


def _both_classes(y: np.ndarray) -> bool:
    return len(y) > 0 and 0 < np.sum(y) < len(y)


def roc_auc(y, score, sample_weight=None) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    y = np.asarray(y, dtype="float64")
    return float(skm.roc_auc_score(y, score, sample_weight=sample_weight)) if _both_classes(y) else float("nan")


def pr_auc(y, score) -> float:
    """Average precision (area under the precision-recall curve); NaN without positives."""
    y = np.asarray(y, dtype="float64")
    return float(skm.average_precision_score(y, score)) if _both_classes(y) else float("nan")


def brier(y, p) -> float:
    return float(np.mean((np.asarray(p, dtype="float64") - np.asarray(y, dtype="float64")) ** 2))


def log_loss(y, p) -> float:
    p = np.clip(np.asarray(p, dtype="float64"), EPS, 1 - EPS)
    y = np.asarray(y, dtype="float64")
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def top_decile_mask(score) -> np.ndarray:
    """The 10% of rows with the highest score (ties broken by position, deterministic)."""
    score = np.asarray(score, dtype="float64")
    n_top = max(1, int(np.ceil(0.1 * len(score))))
    order = np.argsort(-score, kind="stable")
    mask = np.zeros(len(score), dtype=bool)
    mask[order[:n_top]] = True
    return mask


def lift_top_decile(y, score) -> float:
    """Event rate in the top decile by score divided by the overall event rate."""
    y = np.asarray(y, dtype="float64")
    base = y.mean() if len(y) else 0.0
    if base == 0:
        return float("nan")
    return float(y[top_decile_mask(score)].mean() / base)


def mrr_capture_top_decile(event_mrr, score) -> float:
    """Share of the MRR at stake (lost to churn / gained by expansion) in the top decile."""
    event_mrr = np.nan_to_num(np.asarray(event_mrr, dtype="float64"))
    total = event_mrr.sum()
    if total <= 0:
        return float("nan")
    return float(event_mrr[top_decile_mask(score)].sum() / total)


def equal_count_bins(p, n_bins: int = 10) -> list[np.ndarray]:
    """Row indices of ``n_bins`` bins of (nearly) equal size, ordered by probability."""
    order = np.argsort(np.asarray(p, dtype="float64"), kind="stable")
    return [b for b in np.array_split(order, n_bins) if len(b)]


def reliability_table(y, p, n_bins: int = 10) -> pd.DataFrame:
    """Per equal-count bin: rows, mean predicted probability, observed event rate."""
    y = np.asarray(y, dtype="float64")
    p = np.asarray(p, dtype="float64")
    rows = [
        {"bin": i + 1, "rows": len(idx), "mean_predicted": float(p[idx].mean()),
         "observed_rate": float(y[idx].mean())}
        for i, idx in enumerate(equal_count_bins(p, n_bins))
    ]
    return pd.DataFrame(rows, columns=["bin", "rows", "mean_predicted", "observed_rate"])


def ece(y, p, n_bins: int = 10) -> float:
    """Expected calibration error with ``n_bins`` equal-count bins:
    ``sum_b (n_b / n) * |mean predicted_b - observed rate_b|``."""
    table = reliability_table(y, p, n_bins)
    if table.empty:
        return float("nan")
    weights = table["rows"] / table["rows"].sum()
    return float((weights * (table["mean_predicted"] - table["observed_rate"]).abs()).sum())


def weighted_auc_grouped(y: np.ndarray, levels: np.ndarray, weight: np.ndarray) -> float:
    """Weighted ROC AUC of 0/1 labels ``y`` for scores given by their rank ``levels`` (the
    inverse of ``np.unique(score)``: equal scores share a level): the weighted probability
    that a positive outranks a negative, ties counting one half, which is the area
    ``sklearn.metrics.roc_auc_score(y, score, sample_weight=weight)`` computes. NaN without
    weight on both classes. O(rows) per call, no sort: for resampling with fixed scores."""
    n_levels = int(levels.max()) + 1 if len(levels) else 0
    pos = np.bincount(levels, weights=weight * y, minlength=n_levels)
    neg = np.bincount(levels, weights=weight * (1.0 - y), minlength=n_levels)
    total_pos, total_neg = pos.sum(), neg.sum()
    if not (total_pos > 0 and total_neg > 0):
        return float("nan")
    below = np.cumsum(neg) - neg  # negative weight on strictly lower scores
    return float(np.dot(pos, below + 0.5 * neg) / (total_pos * total_neg))


def bootstrap_auc_interval(y, score, accounts, resamples: int = 200, seed: int = 0,
                           level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ROC AUC resampling accounts with replacement (all of an account's
    rows go together, since its weekly snapshots are not independent). Seeded."""
    y = np.asarray(y, dtype="float64")
    score = np.asarray(score, dtype="float64")
    if resamples <= 0 or not _both_classes(y):
        return float("nan"), float("nan")
    uniques, inverse = np.unique(np.asarray(accounts).astype(str), return_inverse=True)
    rng = np.random.default_rng(seed)
    # the scores are ranked once; each resample only re-weights the rows (weighted_auc_grouped)
    levels = np.unique(score, return_inverse=True)[1] if np.all(np.isfinite(score)) else None
    values = []
    for _ in range(resamples):
        counts = np.bincount(rng.integers(0, len(uniques), len(uniques)), minlength=len(uniques))
        weight = counts[inverse].astype("float64")
        if levels is None:  # sklearn names the problem (NaN or infinite scores)
            keep = weight > 0
            if _both_classes(y[keep]):
                values.append(skm.roc_auc_score(y[keep], score[keep], sample_weight=weight[keep]))
            continue
        auc = weighted_auc_grouped(y, levels, weight)
        if np.isfinite(auc):
            values.append(auc)
    if not values:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def probability_metrics(y, p, event_mrr=None) -> dict[str, float]:
    """The full metric set for calibrated probabilities (names without prefix)."""
    out = {
        "roc_auc": roc_auc(y, p),
        "pr_auc": pr_auc(y, p),
        "brier": brier(y, p),
        "log_loss": log_loss(y, p),
        "lift_top_decile": lift_top_decile(y, p),
        "ece": ece(y, p),
    }
    if event_mrr is not None:
        out["mrr_capture_top_decile"] = mrr_capture_top_decile(event_mrr, p)
    return out


def ranking_metrics(y, score, event_mrr=None) -> dict[str, float]:
    """Metrics meaningful for a score that is not a probability (the health baseline)."""
    out = {"roc_auc": roc_auc(y, score), "pr_auc": pr_auc(y, score),
           "lift_top_decile": lift_top_decile(y, score)}
    if event_mrr is not None:
        out["mrr_capture_top_decile"] = mrr_capture_top_decile(event_mrr, score)
    return out


def auc_by_group(y, score, groups) -> dict[str, float]:
    """ROC AUC within each group value (e.g. value tier); groups with one class give NaN."""
    y = np.asarray(y, dtype="float64")
    score = np.asarray(score, dtype="float64")
    groups = pd.Series(np.asarray(groups, dtype=object)).fillna("unknown").astype(str).to_numpy()
    return {g: roc_auc(y[groups == g], score[groups == g]) for g in sorted(set(groups))}
