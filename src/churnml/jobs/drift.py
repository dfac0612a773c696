"""Drift now, before labels arrive; a label-free performance estimate; the retrain trigger.

Every weekly run (and ``churnml monitor``, a backfill) measures, per outcome, this week's
features and the outcome's calibrated probability against the reference profile stored with
the version that scored the week (``churnml.models.profile``, an artifact of its MLflow run):

- ``OUT/monitoring/drift.parquet``: one row per ``as_of`` x outcome x feature or score, with
  the population stability index (``psi``, the statistic the thresholds apply to), the
  Jensen-Shannon distance (``js_distance``) and a ``status`` (``stable`` / ``moving`` /
  ``shifted`` by ``monitoring.drift_psi_warn`` and ``drift_psi_alert`` of the outcome's model
  configuration);
- ``OUT/monitoring/estimated.parquet``: one row per ``as_of`` x outcome, the confidence-based
  performance estimate (CBPE) of this week's ROC AUC from the calibrated probabilities alone
  (:func:`expected_roc_auc`), labelled with its assumption;
- ``OUT/monitoring/retrain.parquet``: one row per ``as_of`` x outcome, ``retrain_recommended``
  and ``retrain_reason`` from the configured rules (:func:`retrain_decision`).

The trigger is per run and per outcome, not per account, so it lives here and in the run's
MLflow metrics and tags, not in the per-account output schema.

Feature drift needs this week's features: the weekly job bins each account chunk as it is
scored (:class:`FeatureDrift`, never holding the whole book's features); the backfill rebuilds
them from the book (point in time: ``build_features(book, [as_of])``). The Spark engine scores
on executors: its weeks get the score's drift and the estimate, not the features' (the
backfill adds them).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import numpy as np
import pandas as pd

from churnml.data.tables import Book
from churnml.jobs.layout import SCORES_NAME
from churnml.jobs.monitoring import MONITORING_DIR, out_of_sample
from churnml.jobs.partitions import list_partitions, partition_dir, write_bytes_atomic
from churnml.models.profile import SCORE_NAME, DriftCounts, ReferenceProfile, js_distance, psi
from churnml.models.registry import RetrainRecommendation
from churnml.outcomes import OUTCOMES

DRIFT_NAME = "drift.parquet"
ESTIMATED_NAME = "estimated.parquet"
RETRAIN_NAME = "retrain.parquet"

DRIFT_COLUMNS = ["as_of", "outcome", "model_version", "kind", "name", "rows", "missing_share",
                 "psi", "js_distance", "status"]
ESTIMATED_COLUMNS = ["as_of", "outcome", "model_version", "n", "mean_probability",
                     "reference_mean_probability", "estimated_roc_auc", "training_roc_auc",
                     "assumption"]
RETRAIN_COLUMNS = ["as_of", "outcome", "model_version", "retrain_recommended", "retrain_reason",
                   "realized_as_of", "realized_roc_auc", "training_roc_auc",
                   "baseline", "baseline_roc_auc", "calibration_slope", "score_psi",
                   "score_drift_weeks"]
# the AUC-drop rule's baseline (``retrain.parquet``'s ``baseline``): the version's own first
# matured out-of-sample cohorts, or its training evaluation until that many have matured
BASELINE_OWN = "own_cohorts"
BASELINE_TRAINING = "training_evaluation"

CBPE_ASSUMPTION = ("calibrated probabilities (the calibration still holds) and no concept "
                   "drift (the relation of features to the outcome is unchanged); it cannot "
                   "see a drop caused by concept drift")


class Facts(Protocol):
    """What the monitoring needs from the registry about a version."""

    def profile(self, outcome: str, version: str) -> ReferenceProfile | None: ...

    def training_auc(self, outcome: str, version: str) -> float | None: ...


@dataclass
class RegistryFacts:
    """:class:`Facts` from the MLflow registry (each profile read once)."""

    _profiles: dict[tuple[str, str], ReferenceProfile | None] = field(default_factory=dict)
    _aucs: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def profile(self, outcome: str, version: str) -> ReferenceProfile | None:
        from churnml.models import registry

        key = (outcome, str(version))
        if key not in self._profiles:
            self._profiles[key] = registry.load_reference_profile(outcome, version)
        return self._profiles[key]

    def training_auc(self, outcome: str, version: str) -> float | None:
        from churnml.models import registry

        if outcome not in self._aucs:
            self._aucs[outcome] = {str(v["version"]): v.get("test_roc_auc")
                                   for v in registry.list_versions(outcome)}
        return self._aucs[outcome].get(str(version))


class JobFacts:
    """:class:`Facts` for the weekly job's champions: the registry is asked only about a
    registered model (a loaded ``TargetModel``, which carries ``info``, or a version string of
    the Spark engine); its training evaluation comes from ``info["metrics"]`` when loaded.
    Anything else (a stand-in model) has no profile and no evaluation."""

    def __init__(self, models: Mapping[str, Any], registry_facts: Facts | None = None):
        self.models = dict(models)
        self.registry = registry_facts if registry_facts is not None else RegistryFacts()

    def _registered(self, outcome: str) -> bool:
        model = self.models.get(outcome)
        return isinstance(model, str) or isinstance(getattr(model, "info", None), dict)

    def profile(self, outcome: str, version: str) -> ReferenceProfile | None:
        if not self._registered(outcome):
            return None
        return self.registry.profile(outcome, version)

    def training_auc(self, outcome: str, version: str) -> float | None:
        model = self.models.get(outcome)
        info = getattr(model, "info", None)
        if isinstance(info, dict):
            value = (info.get("metrics") or {}).get("test_roc_auc")
            if value is not None:
                return float(value)
        if not self._registered(outcome):
            return None
        return self.registry.training_auc(outcome, version)


@dataclass(frozen=True)
class Thresholds:
    """An outcome's monitoring settings (``monitoring:`` of ``models/<outcome>.yaml``)."""

    psi_warn: float
    psi_alert: float
    auc_drop: float
    slope_low: float
    slope_high: float
    drift_weeks: int
    baseline_cohorts: int

    @classmethod
    def of(cls, outcome: str) -> "Thresholds":
        from churnml.models.config import load_config

        c = load_config(outcome)
        return cls(c.drift_psi_warn, c.drift_psi_alert, c.retrain_auc_drop, c.retrain_slope_low,
                   c.retrain_slope_high, c.retrain_drift_weeks, c.retrain_baseline_cohorts)


def default_thresholds() -> dict[str, Thresholds]:
    return {o.name: Thresholds.of(o.name) for o in OUTCOMES}


def drift_status(value: float, t: Thresholds) -> str:
    if not np.isfinite(value):
        return "unknown"
    return "shifted" if value > t.psi_alert else "moving" if value > t.psi_warn else "stable"


def expected_roc_auc(p: np.ndarray) -> float:
    """CBPE's ROC AUC: the AUC expected when each account has the event with its calibrated
    probability ``p`` independently. Each account counts as a positive with weight ``p`` and
    a negative with weight ``1 - p``; the weighted Mann-Whitney statistic over the distinct
    scores (ties one half), as the realized AUC is computed from labels. Sorted once: linear
    after the sort."""
    p = np.asarray(p, dtype="float64")
    p = p[np.isfinite(p)]
    if len(p) < 2:
        return float("nan")
    values, inverse = np.unique(p, return_inverse=True)
    pos = np.bincount(inverse, weights=p, minlength=len(values))
    neg = np.bincount(inverse, weights=1.0 - p, minlength=len(values))
    below = np.cumsum(neg) - neg
    total = pos.sum() * neg.sum()
    return float((pos @ (below + 0.5 * neg)) / total) if total > 0 else float("nan")


class FeatureDrift:
    """This week's feature bin counts per outcome, added chunk by chunk (``on_features`` of
    ``score_book``)."""

    def __init__(self, profiles: Mapping[str, ReferenceProfile]):
        self.counts = {outcome: DriftCounts(p) for outcome, p in profiles.items()}

    def add(self, features: pd.DataFrame) -> None:
        for counts in self.counts.values():
            counts.add(features)


def _version(scores: pd.DataFrame, column: str) -> str | None:
    if column not in scores.columns:
        return None
    versions = scores[column].dropna().astype(str).unique().tolist()
    return versions[0] if len(versions) == 1 else None


def week_rows(as_of: pd.Timestamp, scores: pd.DataFrame, facts: Facts,
              thresholds: Mapping[str, Thresholds],
              feature_counts: Mapping[str, DriftCounts] | None) -> tuple[list[dict], list[dict]]:
    """The drift rows and the estimate rows of one scored week (``scores``: its
    ``scores.parquet``); ``feature_counts``: per outcome, this week's feature counts against
    that outcome's profile (None: no feature drift this week)."""
    drift: list[dict] = []
    estimated: list[dict] = []
    for outcome in OUTCOMES:
        version = _version(scores, outcome.version_column)
        if version is None:
            continue  # no champion scored this outcome (or several versions: not comparable)
        t = thresholds[outcome.name]
        base = {"as_of": as_of, "outcome": outcome.name, "model_version": version}
        p = scores[outcome.probability_column].to_numpy(dtype="float64")
        training = facts.training_auc(outcome.name, version)
        profile = facts.profile(outcome.name, version)
        estimated.append({**base, "n": int(np.isfinite(p).sum()),
                          "mean_probability": float(np.nanmean(p)) if np.isfinite(p).any()
                          else float("nan"),
                          "reference_mean_probability": float(
                              profile.score_means.get(SCORE_NAME, np.nan)) if profile
                          else float("nan"),
                          "estimated_roc_auc": expected_roc_auc(p),
                          "training_roc_auc": float(training) if training is not None
                          else float("nan"),
                          "assumption": CBPE_ASSUMPTION})
        if profile is None:
            continue  # a version registered before profiles were stored
        hist = profile.scores[SCORE_NAME]
        counts = hist.counts(p)
        drift.append(_drift_row(base, "score", outcome.probability_column, hist.shares, counts, t))
        fc = (feature_counts or {}).get(outcome.name)
        if fc is not None and fc.rows:
            for name, hist in profile.features.items():
                drift.append(_drift_row(base, "feature", name, hist.shares, fc.features[name], t))
    return drift, estimated


def _drift_row(base: dict, kind: str, name: str, shares, counts: np.ndarray,
               t: Thresholds) -> dict:
    value = psi(shares, counts)
    total = float(counts.sum())
    return {**base, "kind": kind, "name": name, "rows": int(total),
            "missing_share": float(counts[-1] / total) if total else float("nan"),
            "psi": value, "js_distance": js_distance(shares, counts),
            "status": drift_status(value, t)}


def retrain_decision(as_of: pd.Timestamp, outcome: str, version: str, t: Thresholds,
                     realized: pd.DataFrame | None, drift: pd.DataFrame,
                     training_auc: float | None) -> dict[str, Any]:
    """Whether ``version`` of ``outcome`` should be retrained, as known at ``as_of``:

    1. **realized AUC drop**: on the latest cohort this version scored out of sample whose
       outcome is known by ``as_of`` (``matured_on <= as_of``), the model's ROC AUC is more
       than ``retrain_auc_drop`` below the baseline and the cohort's 95% interval lies below
       the baseline too (not noise). The baseline is the mean realized AUC of the version's
       first ``retrain_baseline_cohorts`` matured out-of-sample cohorts once that many are
       known by ``as_of`` (what this champion delivers, so a champion that never reached its
       training evaluation is not taken for drift), else the version's training evaluation
       (``test_roc_auc``); the reason says which;
    2. **calibration slope** of that cohort outside ``[retrain_slope_low, retrain_slope_high]``;
    3. **score drift**: the score's PSI above ``drift_psi_alert`` on each of the last
       ``retrain_drift_weeks`` weeks this version scored (up to ``as_of``).

    Any rule recommends a retrain; the reason names every rule that fired, with its figures.
    A new champion starts clean: only the cohorts and weeks it scored count."""
    reasons: list[str] = []
    row: dict[str, Any] = {"as_of": as_of, "outcome": outcome, "model_version": version,
                           "realized_as_of": pd.NaT, "realized_roc_auc": float("nan"),
                           "training_roc_auc": float("nan") if training_auc is None
                           else float(training_auc),
                           "baseline": None, "baseline_roc_auc": float("nan"),
                           "calibration_slope": float("nan"), "score_psi": float("nan"),
                           "score_drift_weeks": 0}
    if realized is not None and len(realized):
        rows = out_of_sample(realized)
        rows = rows[(rows["outcome"] == outcome) & (rows["scorer"] == "model")
                    & (rows["model_version"].astype(str) == str(version))
                    & (pd.to_datetime(rows["matured_on"]) <= as_of)]
        if len(rows):
            rows = rows.sort_values("as_of", kind="stable")
            last = rows.iloc[-1]
            auc, high = float(last["roc_auc"]), float(last["roc_auc_ci_high"])
            slope = float(last["calibration_slope"])
            row.update(realized_as_of=pd.Timestamp(last["as_of"]), realized_roc_auc=auc,
                       calibration_slope=slope)
            first = rows[np.isfinite(rows["roc_auc"].to_numpy(dtype="float64"))]
            first = first.iloc[:t.baseline_cohorts]
            if len(first) >= t.baseline_cohorts:
                baseline: float | None = float(first["roc_auc"].to_numpy(dtype="float64").mean())
                row["baseline"] = BASELINE_OWN
                said = (f"its own baseline {baseline:.3f} (mean realized AUC of its first "
                        f"{t.baseline_cohorts} matured cohorts, "
                        f"{pd.Timestamp(first['as_of'].iloc[0]):%Y-%m-%d} to "
                        f"{pd.Timestamp(first['as_of'].iloc[-1]):%Y-%m-%d})")
            else:
                baseline = training_auc
                row["baseline"] = None if baseline is None else BASELINE_TRAINING
                said = "" if baseline is None else (
                    f"the training evaluation {baseline:.3f} (its own baseline needs "
                    f"{t.baseline_cohorts} matured cohorts; {len(first)} so far)")
            row["baseline_roc_auc"] = float("nan") if baseline is None else float(baseline)
            if baseline is not None and np.isfinite(auc) and \
                    auc < baseline - t.auc_drop and not (np.isfinite(high) and high >= baseline):
                week = pd.Timestamp(last["as_of"])
                reasons.append(f"realized AUC {auc:.3f} on the week of {week:%Y-%m-%d} is "
                               f"{baseline - auc:.3f} below {said} (allowed {t.auc_drop:g})")
            if np.isfinite(slope) and not t.slope_low <= slope <= t.slope_high:
                reasons.append(f"calibration slope {slope:.2f} on the week of "
                               f"{pd.Timestamp(last['as_of']):%Y-%m-%d} outside "
                               f"[{t.slope_low:g}, {t.slope_high:g}]")
    if len(drift):
        score = drift[(drift["outcome"] == outcome) & (drift["kind"] == "score")
                      & (drift["model_version"].astype(str) == str(version))
                      & (pd.to_datetime(drift["as_of"]) <= as_of)].sort_values("as_of")
        if len(score):
            values = score["psi"].to_numpy(dtype="float64")
            row["score_psi"] = float(values[-1])
            above = values > t.psi_alert
            running = len(above) - (np.flatnonzero(~above)[-1] + 1) if (~above).any() \
                else len(above)
            row["score_drift_weeks"] = int(running)
            if running >= t.drift_weeks:
                reasons.append(f"score PSI above {t.psi_alert:g} for {running} weeks running "
                               f"(latest {values[-1]:.3f}; rule: {t.drift_weeks} weeks)")
    row["retrain_recommended"] = bool(reasons)
    row["retrain_reason"] = "; ".join(reasons)
    return row


# ---- the tables ----------------------------------------------------------------------------
def table_path(out_dir: str | Path, name: str) -> Path:
    return Path(out_dir) / MONITORING_DIR / name


def read_table(out_dir: str | Path, name: str, columns: list[str]) -> pd.DataFrame:
    path = table_path(out_dir, name)
    if not path.is_file():
        return pd.DataFrame(columns=columns)
    return pd.read_parquet(path)


def _typed(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    frame = frame.reindex(columns=columns)
    frame["as_of"] = pd.to_datetime(frame["as_of"]).astype("datetime64[ns]")
    for column in ("rows", "n", "score_drift_weeks"):
        if column in frame.columns:
            frame[column] = frame[column].astype("int64")
    if "retrain_recommended" in frame.columns:
        frame["retrain_recommended"] = frame["retrain_recommended"].astype(bool)
    if "realized_as_of" in frame.columns:
        frame["realized_as_of"] = pd.to_datetime(frame["realized_as_of"]).astype("datetime64[ns]")
    for column in ("outcome", "model_version", "kind", "name", "status", "assumption",
                   "retrain_reason", "baseline"):
        if column in frame.columns:
            frame[column] = frame[column].astype(object)
    keys = [c for c in ("outcome", "as_of", "kind", "name") if c in frame.columns]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def _write(out_dir: str | Path, name: str, frame: pd.DataFrame) -> None:
    path = table_path(out_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    write_bytes_atomic(path, buffer.getvalue())


def _replace_week(known: pd.DataFrame, fresh: list[dict], as_of: pd.Timestamp,
                  columns: list[str]) -> pd.DataFrame:
    if len(known):
        known = known[pd.to_datetime(known["as_of"]) != as_of]
    parts = [f for f in (known, pd.DataFrame(fresh, columns=columns)) if len(f)]
    return _typed(pd.concat(parts, ignore_index=True) if parts
                  else pd.DataFrame(columns=columns), columns)


def latest_recommendation(out_dir: str | Path, outcome: str) -> RetrainRecommendation:
    """The retrain verdict of the latest monitored week for ``outcome`` in the weekly job's
    output ``out_dir`` (what ``churnml train --scores OUT`` hands the challenger gate). Raises
    ``UsageError`` (exit 2) when there is none to read."""
    from churnml.errors import UsageError

    path = table_path(out_dir, RETRAIN_NAME)
    if not path.is_file():
        raise UsageError(f"--scores {out_dir}: no {MONITORING_DIR}/{RETRAIN_NAME} (the weekly job "
                         f"writes it; for older partitions run `churnml monitor --scores {out_dir} "
                         f"--data DIR` first)")
    table = pd.read_parquet(path)
    missing = [c for c in ("as_of", "outcome", "model_version", "retrain_recommended",
                           "retrain_reason") if c not in table.columns]
    if missing:
        raise UsageError(f"{path}: table 'retrain' lacks the column(s) {', '.join(missing)}; "
                         f"rebuild it with `churnml monitor --scores {out_dir} --data DIR`")
    rows = table[table["outcome"].astype(str) == outcome]
    if not len(rows):
        raise UsageError(f"{path}: no week monitors outcome '{outcome}' (outcomes there: "
                         f"{', '.join(sorted(table['outcome'].astype(str).unique())) or 'none'})")
    last = rows.assign(as_of=pd.to_datetime(rows["as_of"])).sort_values("as_of", kind="stable").iloc[-1]
    reason = last["retrain_reason"]
    return RetrainRecommendation(outcome, pd.Timestamp(last["as_of"]), str(last["model_version"]),
                                 bool(last["retrain_recommended"]),
                                 "" if pd.isna(reason) else str(reason))


@dataclass
class WeekStatus:
    """One week's drift, estimate and trigger per outcome (the report's trust panel)."""

    drift: pd.DataFrame
    estimated: pd.DataFrame
    retrain: pd.DataFrame


def _read_scores(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    wanted = [c for o in OUTCOMES for c in (o.probability_column, o.version_column)]
    names = set(pq.read_schema(path).names)
    return pd.read_parquet(path, columns=[c for c in wanted if c in names])


def update_week(out_dir: str | Path, as_of, *, facts: Facts,
                realized: pd.DataFrame | None,
                feature_counts: Mapping[str, DriftCounts] | None = None,
                thresholds: Mapping[str, Thresholds] | None = None) -> WeekStatus:
    """Measure the week ``as_of`` of ``out_dir`` (its ``scores.parquet`` must exist), replace
    its rows in the three tables (earlier weeks are kept), write them atomically and return
    this week's rows."""
    as_of = pd.Timestamp(as_of)
    thresholds = thresholds or default_thresholds()
    scores = _read_scores(partition_dir(out_dir, as_of) / SCORES_NAME)
    drift_rows, estimated_rows = week_rows(as_of, scores, facts, thresholds, feature_counts)
    drift = _replace_week(read_table(out_dir, DRIFT_NAME, DRIFT_COLUMNS), drift_rows, as_of,
                          DRIFT_COLUMNS)
    estimated = _replace_week(read_table(out_dir, ESTIMATED_NAME, ESTIMATED_COLUMNS),
                              estimated_rows, as_of, ESTIMATED_COLUMNS)
    retrain_rows = [retrain_decision(as_of, r["outcome"], r["model_version"],
                                     thresholds[r["outcome"]], realized, drift,
                                     facts.training_auc(r["outcome"], r["model_version"]))
                    for r in estimated_rows]
    retrain = _replace_week(read_table(out_dir, RETRAIN_NAME, RETRAIN_COLUMNS), retrain_rows,
                            as_of, RETRAIN_COLUMNS)
    for name, frame in ((DRIFT_NAME, drift), (ESTIMATED_NAME, estimated),
                        (RETRAIN_NAME, retrain)):
        _write(out_dir, name, frame)
    return week_status(drift, estimated, retrain, as_of)


def week_status(drift: pd.DataFrame, estimated: pd.DataFrame, retrain: pd.DataFrame,
                as_of: pd.Timestamp) -> WeekStatus:
    def of(frame: pd.DataFrame) -> pd.DataFrame:
        if not len(frame):
            return frame
        return frame[pd.to_datetime(frame["as_of"]) == as_of].reset_index(drop=True)

    return WeekStatus(of(drift), of(estimated), of(retrain))


def backfill(out_dir: str | Path, book: Book, *, facts: Facts, realized: pd.DataFrame | None,
             features: bool = True, build_features: Callable | None = None,
             thresholds: Mapping[str, Thresholds] | None = None,
             on_week: Callable[[pd.Timestamp], None] | None = None) -> WeekStatus:
    """Recompute the three tables from every complete partition of ``out_dir``, oldest first
    (``features``: rebuild each week's features from ``book`` for the feature drift, as the
    weekly job saw them). The same rows whatever the tables held before. Returns the latest
    week's status."""
    thresholds = thresholds or default_thresholds()
    if build_features is None and features:
        from churnml.features.build import build_features as default_build

        build_features = default_build
    for name in (DRIFT_NAME, ESTIMATED_NAME, RETRAIN_NAME):
        path = table_path(out_dir, name)
        if path.is_file():
            path.unlink()
    status = WeekStatus(pd.DataFrame(columns=DRIFT_COLUMNS),
                        pd.DataFrame(columns=ESTIMATED_COLUMNS),
                        pd.DataFrame(columns=RETRAIN_COLUMNS))
    for as_of, part in list_partitions(out_dir):
        if on_week is not None:
            on_week(as_of)
        counts = None
        if features and build_features is not None:
            scores = _read_scores(part / SCORES_NAME)
            profiles = {o.name: p for o in OUTCOMES
                        if (v := _version(scores, o.version_column)) is not None
                        and (p := facts.profile(o.name, v)) is not None}
            if profiles:
                accumulator = FeatureDrift(profiles)
                accumulator.add(build_features(book, [as_of]))
                counts = accumulator.counts
        status = update_week(out_dir, as_of, facts=facts, realized=realized,
                             feature_counts=counts, thresholds=thresholds)
    return status


def read_status(out_dir: str | Path, as_of) -> WeekStatus:
    """The rows of week ``as_of`` of the three tables."""
    return week_status(read_table(out_dir, DRIFT_NAME, DRIFT_COLUMNS),
                       read_table(out_dir, ESTIMATED_NAME, ESTIMATED_COLUMNS),
                       read_table(out_dir, RETRAIN_NAME, RETRAIN_COLUMNS), pd.Timestamp(as_of))


def mlflow_figures(status: WeekStatus) -> tuple[dict[str, float], dict[str, str]]:
    """The week's MLflow metrics (``drift_<outcome>_score_psi``,
    ``drift_<outcome>_features_shifted``, ``drift_<outcome>_max_feature_psi``,
    ``estimated_<outcome>_roc_auc``, ``retrain_recommended_<outcome>``) and tags
    (``churnml.retrain_<outcome>``: the reason, or ``no``)."""
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    for outcome in OUTCOMES:
        d = status.drift[status.drift["outcome"] == outcome.name] if len(status.drift) \
            else status.drift
        if len(d):
            score = d[d["kind"] == "score"]
            feats = d[d["kind"] == "feature"]
            if len(score):
                metrics[f"drift_{outcome.name}_score_psi"] = float(score["psi"].iloc[0])
            if len(feats):
                metrics[f"drift_{outcome.name}_max_feature_psi"] = float(feats["psi"].max())
                metrics[f"drift_{outcome.name}_features_shifted"] = float(
                    (feats["status"] == "shifted").sum())
        e = status.estimated[status.estimated["outcome"] == outcome.name] \
            if len(status.estimated) else status.estimated
        if len(e):
            metrics[f"estimated_{outcome.name}_roc_auc"] = float(e["estimated_roc_auc"].iloc[0])
        r = status.retrain[status.retrain["outcome"] == outcome.name] \
            if len(status.retrain) else status.retrain
        if len(r):
            metrics[f"retrain_recommended_{outcome.name}"] = float(
                bool(r["retrain_recommended"].iloc[0]))
            tags[f"churnml.retrain_{outcome.name}"] = (str(r["retrain_reason"].iloc[0])[:4000]
                                                       or "no")
    return metrics, tags
