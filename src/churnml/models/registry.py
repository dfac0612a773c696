"""The only module of churnml that talks to MLflow.

- Tracking store: ``churnml.config.tracking_uri()`` (SQLite under ``CHURNML_HOME`` by default,
  ``MLFLOW_TRACKING_URI`` overrides it), always set explicitly; experiments created in the
  embedded store keep their artifacts under ``CHURNML_HOME/mlartifacts``.
- One experiment per target named like its registered model: ``churnml-churn``,
  ``churnml-expansion``. One parent run per ``churnml train`` (the run of the registered
  version, carrying the metrics), one child run per backtest fold.
- The model is logged as a pyfunc from code (``pyfunc_model.py``) with the saved
  ``TargetModel`` as artifact, a signature (every feature optional; categories as strings) and a
  synthetic input example (no real account ids, no free text).
- Aliases, not stages: ``champion`` moves to a new version only when it beats the current
  champion re-scored on the new test rows (the first version becomes champion at once);
  otherwise the new version is ``challenger``. :func:`promote` moves ``champion`` by hand.
- A registry that cannot be reached is :class:`~churnml.errors.RegistryUnavailableError`
  (exit code 1), never "no champion": each HTTP call to a tracking server gives up after
  ``CHURNML_REGISTRY_TIMEOUT_S`` seconds (default 10) and is tried twice at most (MLflow's own
  ``MLFLOW_HTTP_REQUEST_*`` settings win when set), and when the current champion cannot be
  read a new version is never promoted.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from churnml.config import artifact_root, disable_telemetry, tracking_uri
from churnml.errors import ConfigError, ModelNotFoundError, RegistryUnavailableError, UsageError
from churnml.models.config import LOWER_IS_BETTER
from churnml.outcomes import model_name_of
from churnml.models.model import TargetModel

CHAMPION = "champion"
CHALLENGER = "challenger"
_PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")


def registered_name(target: str) -> str:
    """``churnml-<target>``: the registered model and its experiment (the outcome's
    ``model_name``, or ``churnml-time-to-event``; UsageError for an unknown outcome)."""
    return model_name_of(target)


def _embedded() -> bool:
    """True when the store is the embedded one under CHURNML_HOME (no MLFLOW_TRACKING_URI)."""
    return not os.environ.get("MLFLOW_TRACKING_URI")


REGISTRY_TIMEOUT_ENV = "CHURNML_REGISTRY_TIMEOUT_S"
DEFAULT_REGISTRY_TIMEOUT_S = 10.0
#: what MLflow answers when a registered model, version or alias does not exist; any other
#: failure means the registry's answer is unknown (RegistryUnavailableError)
_NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE",
                              "NOT_FOUND"})


def registry_timeout_s() -> float:
    """``CHURNML_REGISTRY_TIMEOUT_S``: seconds one call to a tracking server may take (10)."""
    raw = os.environ.get(REGISTRY_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_REGISTRY_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value) or value <= 0:
        raise ConfigError(f"{REGISTRY_TIMEOUT_ENV}={raw[:40]!r} must be a number of seconds > 0")
    return value


def _http_limits() -> None:
    """Short, bounded HTTP calls to a tracking server (MLflow's defaults: 120 s a call and 7
    retries with back-off, minutes before an unreachable server is reported)."""
    explicit = bool(os.environ.get(REGISTRY_TIMEOUT_ENV, "").strip())
    timeout = registry_timeout_s()
    value = str(max(1, int(np.ceil(timeout))))  # MLflow reads an integer
    if explicit:
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = value
    else:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", value)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0.5")


def _where() -> str:
    """The tracking URI without any password (for messages)."""
    from urllib.parse import urlsplit, urlunsplit

    uri = tracking_uri()
    try:
        parts = urlsplit(uri)
        if parts.password:
            host = parts.hostname or ""
            netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
            return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<the configured tracking URI>"
    return uri


def _not_found(exc: BaseException) -> bool:
    return getattr(exc, "error_code", None) in _NOT_FOUND_CODES


def _unavailable(exc: BaseException, doing: str) -> RegistryUnavailableError:
    """The error for a registry that did not answer ``doing``: where, why (first line)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if len(first) > 300:
        first = first[:297] + "..."
    return RegistryUnavailableError(
        f"the model registry at {_where()} cannot be reached or failed while {doing} "
        f"(each call gives up after {REGISTRY_TIMEOUT_ENV}={registry_timeout_s():g} s): {first}")


def _mlflow():
    disable_telemetry()
    _http_limits()
    import mlflow

    embedded = _embedded()
    mlflow.set_tracking_uri(tracking_uri())
    if embedded:
        # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; undo that so the next call still
        # follows CHURNML_HOME and never mistakes our own setting for a team server.
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    return mlflow


def _client():
    mlflow = _mlflow()
    return mlflow.MlflowClient(tracking_uri=mlflow.get_tracking_uri())


def ensure_experiment(name: str) -> str:
    """Id of experiment ``name``, created if needed (artifacts under CHURNML_HOME when the
    store is the embedded one)."""
    client = _client()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=_artifact_location(name))


def _artifact_location(name: str) -> str | None:
    """Where a new experiment keeps its artifacts: under CHURNML_HOME for the embedded store,
    beside the database for any other local SQLite store (never ``./mlruns`` of whatever folder
    the command ran in), and wherever the server decides for a remote one."""
    if _embedded():
        return f"{artifact_root()}/{name}"
    uri = os.environ["MLFLOW_TRACKING_URI"]
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts" / name).as_uri()
    return None


# ---- reading the registry ------------------------------------------------------------------
def champion_version(target: str) -> str | None:
    """Version number holding the ``champion`` alias, or None when there is none.

    Raises :class:`~churnml.errors.RegistryUnavailableError` when the registry cannot be
    reached or fails: "unknown" is never reported as "no champion".
    """
    from mlflow.exceptions import MlflowException

    name = registered_name(target)
    client = _client()
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise _unavailable(exc, f"reading the champion of {name}") from exc
    except OSError as exc:
        raise _unavailable(exc, f"reading the champion of {name}") from exc


def list_versions(target: str) -> list[dict]:
    """Registered versions of ``target``, newest first: ``version, aliases, run_id,
    created (ISO), test_roc_auc, train_end, horizon_days`` (from the version's tags)."""
    from mlflow.exceptions import MlflowException

    client = _client()
    name = registered_name(target)
    try:
        model = client.get_registered_model(name)
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException as exc:
        if _not_found(exc):
            return []
        raise _unavailable(exc, f"listing the versions of {name}") from exc
    except OSError as exc:
        raise _unavailable(exc, f"listing the versions of {name}") from exc
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    out = []
    for mv in versions:
        out.append({
            "version": str(mv.version),
            "aliases": sorted(aliases.get(str(mv.version), [])),
            "run_id": mv.run_id,
            "created": pd.Timestamp(mv.creation_timestamp, unit="ms").isoformat(),
            "test_roc_auc": float(mv.tags["test_roc_auc"]) if "test_roc_auc" in (mv.tags or {}) else None,
            # the end of the version's training span (None before it was recorded)
            "train_end": (mv.tags or {}).get("train_end") or None,
            # the label horizon the version was trained with (None when not recorded)
            "horizon_days": (int((mv.tags or {})["horizon_days"])
                             if (mv.tags or {}).get("horizon_days") else None),
        })
    return sorted(out, key=lambda r: int(r["version"]), reverse=True)


def _download_version(name: str, version: str | int) -> Path:
    """The local folder of version ``version`` of the registered model ``name``:
    ``ModelNotFoundError`` when there is no such version, ``RegistryUnavailableError`` when the
    registry or its artifact store cannot be read."""
    from mlflow.exceptions import MlflowException

    try:
        path = _mlflow().artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}")
    except MlflowException as exc:
        if not _not_found(exc):
            raise _unavailable(exc, f"loading version {version} of {name}") from exc
        raise ModelNotFoundError(f"no version {version} of {name} in {_where()}") from exc
    except OSError as exc:
        raise _unavailable(exc, f"loading version {version} of {name}") from exc
    return Path(path)


def load_version(target: str, version: str | int) -> TargetModel:
    """The ``TargetModel`` of a registered version (``version`` set to its number)."""
    path = _download_version(registered_name(target), version)
    return TargetModel.load(path / "artifacts" / "target_model", version=str(version))


def load_champion(target: str) -> TargetModel:
    """The champion ``TargetModel`` of ``target``; raises ``ModelNotFoundError`` when none,
    ``RegistryUnavailableError`` when the registry cannot be reached."""
    version = champion_version(target)
    if version is None:
        raise ModelNotFoundError(
            f"no champion model for {registered_name(target)}: run `churnml train` first"
        )
    return load_version(target, version)


def model_uri(target: str, alias: str = CHAMPION) -> str:
    """``models:/churnml-<target>@<alias>`` (for ``mlflow.pyfunc.load_model``, Spark UDFs, Bento)."""
    return f"models:/{registered_name(target)}@{alias}"


# ---- changing the registry -----------------------------------------------------------------
def promote(target: str, version: str | int) -> tuple[str | None, str]:
    """Move ``champion`` to ``version`` (e.g. a rollback). Returns ``(old, new)`` versions.

    The previous champion becomes ``challenger`` unless it is the same version.
    """
    from mlflow.exceptions import MlflowException

    client = _client()
    name = registered_name(target)
    try:
        client.get_model_version(name, str(version))
    except MlflowException as exc:
        if not _not_found(exc):
            raise _unavailable(exc, f"reading version {version} of {name}") from exc
        known = [v["version"] for v in list_versions(target)]
        raise ModelNotFoundError(f"{name} has no version {version}; versions: {known or 'none'}") from exc
    old = champion_version(target)
    client.set_registered_model_alias(name, CHAMPION, str(version))
    if old is not None and old != str(version):
        client.set_registered_model_alias(name, CHALLENGER, old)
    else:
        _drop_challenger_if(client, name, str(version))
    return old, str(version)


def _drop_challenger_if(client, name: str, version: str) -> None:
    """The champion is never also the challenger."""
    from mlflow.exceptions import MlflowException

    try:
        if str(client.get_model_version_by_alias(name, CHALLENGER).version) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
    except MlflowException:
        pass


@dataclass
class Registration:
    """What ``log_training`` did: the run, the version and the champion decision."""

    run_id: str
    version: str
    became_champion: bool
    previous_champion: str | None
    new_score: float
    champion_score: float | None
    metric: str
    reason: str


def _signature_and_example(model: TargetModel):
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    columns: list[ColSpec | TensorSpec] = [ColSpec("string", "account_id", required=False),
                                           ColSpec("datetime", "as_of", required=False)]
    for name in model.feature_names:
        columns.append(ColSpec("string" if name in model.categories else "double", name, required=False))
    outputs = Schema([ColSpec("double", "probability"), ColSpec("string", "reasons")])
    params = ParamSchema([ParamSpec("top_k", "long", 3), ParamSpec("reasons_format", "string", "json")])
    signature = ModelSignature(inputs=Schema(columns), outputs=outputs, params=params)
    # Synthetic example: training medians and most frequent categories, made-up ids.
    medians = model.info.get("feature_medians", {})
    row: dict[str, Any] = {"account_id": "example-0001", "as_of": pd.Timestamp("2026-01-05")}
    for name in model.feature_names:
        if name in model.categories:
            row[name] = model.info.get("category_modes", {}).get(name) or (model.categories[name] or [""])[0]
        else:
            row[name] = float(medians.get(name, 0.0))
    example = pd.DataFrame([row, {**row, "account_id": "example-0002"}])
    return signature, example


def _flat_params(result) -> dict[str, Any]:
    params = result.config.flat_params()
    params.update({f"split_{k}": v for k, v in result.split.describe().items()})
    params["best_iteration"] = result.model.info.get("best_iteration")
    params["calibration_chosen"] = result.model.calibrator.method
    # the registered model's training span (the refit's: every labeled date)
    params["train_end"] = result.model.info.get("train_end")
    refit = result.model.info.get("refit") or {}
    params["refit_rounds_used"] = refit.get("rounds")
    params["refit_train_start"] = refit.get("train_start")
    params["refit_rows"] = refit.get("rows")
    params["n_features"] = len(result.model.feature_names)
    params["monotone_constrained"] = len(result.model.info.get("monotone_constraints", {}))
    return {k: ("" if v is None else str(v))[:500] for k, v in params.items()}


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)}


def _write_artifacts(result, folder: Path, plots: bool) -> None:
    from churnml.models import plots as P

    (folder / "config.json").write_text(json.dumps(result.config.to_dict(), indent=1))
    (folder / "data_fingerprint.json").write_text(json.dumps(result.dataset.fingerprint(), indent=1))
    (folder / "split.json").write_text(json.dumps({**result.split.describe(), "notes": result.notes}, indent=1))
    (folder / "fit_details.json").write_text(json.dumps(result.fit_details, indent=1, default=str))
    result.backtest.to_csv(folder / "backtest_folds.csv", index=False)
    result.comparison().to_csv(folder / "comparison.csv", index=False)
    for name, table in result.reliability.items():
        table.to_csv(folder / f"reliability_{name}.csv", index=False)
    if plots:
        P.save_all(result, folder)


MODEL_CARD = "model_card.md"


def _log_model_card(result, version: str, run_id: str, folder: Path) -> None:
    """``model_card.md`` (``churnml.models.card``) as an artifact of the version's run."""
    from churnml.models.card import model_card

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MODEL_CARD
    path.write_text(model_card(result, version=version, run_id=run_id), encoding="utf-8")
    _mlflow().log_artifact(str(path))


def _log_reference_profile(result, folder: Path) -> None:
    """``reference_profile.json`` (``churnml.models.profile``) as an artifact of the version's
    run: the registered model's training rows binned per feature and for its score."""
    from churnml.models.profile import PROFILE_FILE, build_profile

    config = result.config
    profile = build_profile(result.model, result.dataset.frame, outcome=config.target,
                            bins=config.drift_bins, reference_weeks=config.reference_weeks,
                            seed=config.seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PROFILE_FILE
    path.write_text(json.dumps(profile.to_dict()), encoding="utf-8")
    _mlflow().log_artifact(str(path))


def load_reference_profile(target: str, version: str | int):
    """The ``ReferenceProfile`` stored with a registered version (None for a version logged
    before profiles were, or an unknown one)."""
    from mlflow.exceptions import MlflowException

    from churnml.models.profile import PROFILE_FILE, ReferenceProfile

    client = _client()
    name = registered_name(target)
    try:
        run_id = client.get_model_version(name, str(version)).run_id
        if not run_id:
            return None
        if PROFILE_FILE not in {Path(f.path).name for f in client.list_artifacts(run_id)}:
            return None
        with tempfile.TemporaryDirectory(prefix="churnml-profile-") as tmp:
            local = client.download_artifacts(run_id, PROFILE_FILE, tmp)
            data = json.loads(Path(local).read_text(encoding="utf-8"))
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise _unavailable(exc, f"reading the reference profile of version {version} of {name}") from exc
    except OSError as exc:
        raise _unavailable(exc, f"reading the reference profile of version {version} of {name}") from exc
    return ReferenceProfile.from_dict(data)


def model_card_uri(target: str, version: str | int) -> str | None:
    """Where the model card of a registered version is: the artifact URI of ``model_card.md``
    in the version's run (None for a version logged before model cards, or an unknown one)."""
    from mlflow.exceptions import MlflowException

    client = _client()
    name = registered_name(target)
    try:
        run_id = client.get_model_version(name, str(version)).run_id
        if not run_id:
            return None
        names = {Path(f.path).name for f in client.list_artifacts(run_id)}
        if MODEL_CARD not in names:
            return None
        return f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{MODEL_CARD}"
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise _unavailable(exc, f"reading the model card of version {version} of {name}") from exc
    except OSError as exc:
        raise _unavailable(exc, f"reading the model card of version {version} of {name}") from exc


def run_metrics(run_id: str) -> dict[str, float]:
    """Every metric logged by a version's training run (``test_roc_auc``, its interval,
    ``test_pr_auc``, ``test_lift_top_decile``, ``test_brier``, ``test_ece``, the backtest's
    means: the figures of the model card), ``{}`` for an unknown run."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        return {k: float(v) for k, v in client.get_run(run_id).data.metrics.items()}
    except MlflowException as exc:
        if _not_found(exc):
            return {}
        raise _unavailable(exc, f"reading the metrics of run {run_id}") from exc
    except OSError as exc:
        raise _unavailable(exc, f"reading the metrics of run {run_id}") from exc


def champion_span_end(model) -> tuple[pd.Timestamp | None, str]:
    """End of a registered model's training span and where it comes from: ``train_end``
    (recorded since the refit), else its split's ``test_end`` (an older train-window
    version: nothing it was fitted on is later), else unknown (None)."""
    info = getattr(model, "info", None) or {}
    if info.get("train_end"):
        return pd.Timestamp(info["train_end"]), "train_end"
    test_end = (info.get("split") or {}).get("test_end")
    if test_end:
        return pd.Timestamp(test_end), "its split's test_end (no train_end recorded)"
    return None, "unknown"


@dataclass(frozen=True)
class RetrainRecommendation:
    """The latest week's retrain verdict for one outcome (a row of the weekly job's
    ``monitoring/retrain.parquet``, read by ``churnml.jobs.drift.latest_recommendation``):
    what ``churnml train --scores OUT`` tells the challenger gate (:func:`gate_decision`)."""

    outcome: str
    as_of: pd.Timestamp
    model_version: str
    recommended: bool
    reason: str

    def describe(self) -> str:
        verdict = (f"recommended retraining v{self.model_version} ({self.reason})"
                   if self.recommended else f"did not recommend retraining v{self.model_version}")
        return f"the weekly monitoring of {self.as_of:%Y-%m-%d} {verdict}"


@dataclass
class GateDecision:
    """The champion gate's comparison (:func:`gate_decision`)."""

    became_champion: bool
    new_score: float
    champion_score: float | None
    reason: str
    rows: int = 0
    weeks: int = 0
    #: ``improvement`` (beat the champion by more than ``promotion.min_improvement``) or
    #: ``non_inferiority`` (monitoring recommended retraining this champion: not worse by
    #: ``promotion.after_retrain_margin`` or more)
    rule: str = "improvement"


def gate_decision(champion, champion_version: str, result,
                  retrain: RetrainRecommendation | None = None) -> GateDecision:
    """Champion vs challenger on the challenger's test rows **after the champion's training
    span** (as_of later than its ``train_end``; :func:`champion_span_end`), so that the
    champion is never scored on weeks it was fitted on. The challenger's score is its
    protocol model's (``result.predictions``) on the same rows. No such weeks, or rows the
    metric cannot be computed on: the champion stays and the reason says why.

    The rule: the challenger must beat the champion by more than
    ``promotion.min_improvement``. When ``retrain`` (the weekly monitoring's latest verdict,
    ``churnml train --scores OUT``) recommends retraining *this* champion, it must only not be
    worse by ``promotion.after_retrain_margin`` or more (non-inferiority): the champion's
    realized performance has already fallen, and the test window, which ends a horizon before
    the challenger's refit does, sees little of the weeks the refit adds (docs/models.md,
    "Champion, challenger, rollback").

    ``champion``: a loaded ``TargetModel`` (anything with ``info`` and ``predict_proba``).
    Raises ``ChurnMLError`` when the champion cannot score the rows.
    """
    from churnml.models import metrics as M

    config = result.config
    metric = config.promotion_metric
    key = metric.removeprefix("test_")
    # the rows the metrics describe: the test window, or every row of a cross-sectional run
    test = result.dataset.evaluation_rows().reset_index(drop=True)
    predictions = result.predictions.reset_index(drop=True)
    weeks_total = int(test["as_of"].nunique())
    since, source = champion_span_end(champion)
    if since is None:
        keep = np.ones(len(test), dtype=bool)
        span = (f"all {weeks_total} test weeks (champion v{champion_version}'s training span is "
                f"unknown)")
    else:
        keep = (pd.to_datetime(test["as_of"]) > since).to_numpy()
        span = (f"the {int(test.loc[keep, 'as_of'].nunique())} of {weeks_total} test weeks after "
                f"champion v{champion_version}'s training span (ending {since.date()}, "
                f"{source})")
    full = float(result.metrics[metric])
    if not keep.any() and since is not None:
        return GateDecision(False, full, None,
                            f"no test week of the new version lies after champion "
                            f"v{champion_version}'s training span (ending {since.date()}, "
                            f"{source}; test weeks {test['as_of'].min().date()} to "
                            f"{test['as_of'].max().date()}): nothing to compare on, the "
                            f"champion stays")
    rows = test[keep]
    y = rows["label"].to_numpy(dtype="float64")
    weeks = int(rows["as_of"].nunique())
    if y.min() == y.max():
        return GateDecision(False, full, None,
                            f"{metric} cannot be compared on {span}: {len(rows):,} rows, all "
                            f"{'positive' if y.min() == 1 else 'negative'}; the champion stays",
                            len(rows), weeks)
    new_score = full if keep.all() else float(
        M.probability_metrics(y, predictions.loc[keep, "probability"].to_numpy())[key])
    champion_score = float(M.probability_metrics(y, champion.predict_proba(rows))[key])
    delta = (champion_score - new_score) if metric in LOWER_IS_BETTER else (new_score - champion_score)
    rule, threshold, why = "improvement", config.promotion_min_improvement, ""
    if retrain is not None:
        if retrain.recommended and retrain.model_version == str(champion_version):
            rule, threshold = "non_inferiority", -config.promotion_after_retrain_margin
            why = (f"; {retrain.describe()}, so the new version had to be less than "
                   f"{config.promotion_after_retrain_margin:g} worse (promotion.after_retrain_margin)")
        elif retrain.recommended:
            why = (f"; {retrain.describe()}, not of champion v{champion_version}: the usual "
                   f"margin applies")
        else:
            why = f"; {retrain.describe()}: the usual margin applies"
    became = bool(delta > threshold)
    reason = (f"{metric} {new_score:.4f} vs champion v{champion_version} {champion_score:.4f} "
              f"on the same {len(rows):,} test rows: {span}{why}")
    return GateDecision(became, new_score, champion_score, reason, len(rows), weeks, rule)


def log_training(result, plots: bool = True, progress=None,
                 retrain: RetrainRecommendation | None = None) -> Registration:
    """Log ``result`` (a ``TrainingResult``) as one parent run with child runs per backtest
    fold, register the model and apply the champion gate (``retrain``: the weekly
    monitoring's latest verdict, which can turn the gate into non-inferiority; see
    :func:`gate_decision`)."""
    mlflow = _mlflow()
    config = result.config
    name = registered_name(config.target)
    experiment_id = ensure_experiment(name)
    client = _client()
    model = result.model
    with tempfile.TemporaryDirectory(prefix="churnml-run-") as tmp_name:
        tmp = Path(tmp_name)
        model_dir = model.save(tmp / "target_model")
        artifacts = tmp / "artifacts"
        artifacts.mkdir()
        _write_artifacts(result, artifacts, plots)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{config.target}") as run:
            policy = str(result.split.describe().get("policy", "time"))
            mlflow.set_tags({"churnml.target": config.target, "churnml.kind": "train",
                             "churnml.split_policy": policy,
                             "churnml.evaluation": ("cross-sectional: K-fold cross-validation grouped "
                                                    "by account, fold means" if policy == "cross_sectional"
                                                    else "held-out test window"),
                             "churnml.notes": " | ".join(result.notes)[:5000]})
            mlflow.log_params(_flat_params(result))
            mlflow.log_metrics(_finite(result.metrics))
            mlflow.log_metrics(_finite({f"time_{k}": v for k, v in result.fit_details.get("timings", {}).items()}))
            mlflow.log_artifacts(str(artifacts))
            for row in result.backtest.to_dict("records"):
                with mlflow.start_run(experiment_id=experiment_id, run_name=f"backtest-fold-{row['fold']}",
                                      nested=True):
                    mlflow.log_params({k: str(v) for k, v in row.items()
                                       if k.endswith(("_start", "_end")) or k in ("fold", "calibration")})
                    mlflow.log_metrics(_finite({k: row[k] for k in ("roc_auc", "pr_auc", "ece", "brier",
                                                                     "health_roc_auc")}))
            if progress is not None:
                progress.note(f"{config.target}: registering {name}")
            signature, example = _signature_and_example(model)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(_PYFUNC_FILE),
                artifacts={"target_model": str(model_dir)},
                signature=signature,
                input_example=example,
                registered_model_name=name,
                pip_requirements=_requirements(),
            )
            version = str(info.registered_model_version)
            _log_model_card(result, version, run.info.run_id, tmp / "card")
            _log_reference_profile(result, tmp / "profile")
            metric = config.promotion_metric
            new_score = float(result.metrics[metric])
            previous, unreadable = _previous_champion(config.target, version)
            if unreadable is not None:
                champion_score, became, reason = None, False, unreadable
            elif previous is None:
                champion_score, became, reason = None, True, "first version: champion at once"
            else:
                from churnml.errors import ChurnMLError

                try:
                    decision: GateDecision | None = gate_decision(
                        load_version(config.target, previous), previous, result, retrain)
                except ChurnMLError:
                    decision = None
                if decision is None:
                    champion_score, became, reason = None, False, (
                        f"champion v{previous} cannot score the new test rows; "
                        f"use `churnml promote` to choose")
                else:
                    champion_score, became, reason = (decision.champion_score,
                                                      decision.became_champion, decision.reason)
                    new_score = decision.new_score
                    mlflow.set_tag("churnml.gate_rule", decision.rule)
                    mlflow.log_metrics({"gate_rows": float(decision.rows),
                                        "gate_weeks": float(decision.weeks),
                                        f"gate_{metric}": new_score})
                mlflow.log_metric(f"champion_{metric}", champion_score if champion_score is not None else float("nan"))
            run_id = run.info.run_id
            _tag_gate(mlflow, version, became, reason)
    _tag_version_and_alias(client, name, version, previous, became, (
        ("test_roc_auc", result.metrics.get("test_roc_auc")),
        ("horizon_days", config.horizon_days), ("target", config.target),
        ("split_policy", result.split.describe().get("policy", "time")),
        ("test_start", result.split.describe()["test_start"]),
        ("test_end", result.split.describe()["test_end"]),
        ("train_end", model.info.get("train_end", ""))))
    return Registration(run_id, version, became, previous, new_score, champion_score, metric, reason)


def _previous_champion(target: str, version: str) -> tuple[str | None, str | None]:
    """The current champion's version of ``target`` (None: there is none) and, when the registry
    could not say, the reason the new ``version`` is not promoted (else None). Unknown is not
    "none": a version is never promoted past a champion that could not be read."""
    try:
        return champion_version(target), None
    except RegistryUnavailableError as exc:
        return None, (f"the current champion could not be read, so v{version} is not promoted; "
                      f"use `churnml promote` once the registry answers ({exc})")


def _tag_gate(mlflow, version: str, became: bool, reason: str) -> None:
    """Record the champion gate's outcome on the active training run."""
    mlflow.set_tags({"churnml.version": version, "churnml.became_champion": str(became),
                     "churnml.gate": reason})


def _tag_version_and_alias(client, name: str, version: str, previous: str | None, became: bool,
                           tags) -> None:
    """Tag the registered ``version`` with ``tags`` (``(key, value)`` pairs) and move the aliases:
    a version that became champion takes ``champion`` and the one it replaced ``challenger``;
    otherwise the new version is the ``challenger``."""
    for key, value in tags:
        client.set_model_version_tag(name, version, key, str(value))
    if became:
        client.set_registered_model_alias(name, CHAMPION, version)
        if previous is not None:
            client.set_registered_model_alias(name, CHALLENGER, previous)
    else:
        client.set_registered_model_alias(name, CHALLENGER, version)


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("lightgbm", "numpy", "pandas", "pyyaml", "mlflow")]


def log_job_run(experiment: str, params: Mapping[str, Any] | None = None,
                metrics: Mapping[str, float] | None = None, artifacts: Mapping[str, str | Path] | None = None,
                tags: Mapping[str, str] | None = None, run_name: str | None = None) -> str:
    """Log one run (e.g. the weekly job) in ``experiment`` (created if needed): params, finite
    metrics, tags and artifacts (``{artifact_subdir: local file or folder}``). Returns the run id."""
    mlflow = _mlflow()
    experiment_id = ensure_experiment(experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        if tags:
            mlflow.set_tags({k: str(v) for k, v in tags.items()})
        if params:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        if metrics:
            mlflow.log_metrics(_finite(metrics))
        for subdir, local in (artifacts or {}).items():
            local = Path(local)
            if local.is_dir():
                mlflow.log_artifacts(str(local), artifact_path=subdir or None)
            else:
                mlflow.log_artifact(str(local), artifact_path=subdir or None)
        return run.info.run_id


# ---- the time-to-event model (churnml.models.survival) ----------------------------------------
_SURVIVAL_PYFUNC_FILE = Path(__file__).with_name("pyfunc_survival.py")


def load_time_to_event(version: str | int | None = None):
    """The ``SurvivalModel`` of a registered ``churnml-time-to-event`` version (the champion when
    ``version`` is None; ``ModelNotFoundError`` when there is none)."""
    from churnml.models.survival import SurvivalModel
    from churnml.outcomes import TIME_TO_EVENT

    name = registered_name(TIME_TO_EVENT)
    if version is None:
        version = champion_version(TIME_TO_EVENT)
        if version is None:
            raise ModelNotFoundError(f"no champion model for {name}: run `churnml train --target "
                                     f"{TIME_TO_EVENT}` first")
    path = _download_version(name, version)
    return SurvivalModel.load(path / "artifacts" / "survival_model", version=str(version))


def log_time_to_event(result, progress=None) -> Registration:
    """Log a time-to-event training (``SurvivalTrainingResult``) as one run in the experiment
    ``churnml-time-to-event``, register the model with its model card and apply the champion
    gate: the integrated Brier score of churn (lower is better) of the new protocol model vs the
    champion on the same test landmarks after the champion's training span."""
    from churnml.models import survival_train as T
    from churnml.outcomes import TIME_TO_EVENT

    mlflow = _mlflow()
    config = result.config
    name = registered_name(TIME_TO_EVENT)
    experiment_id = ensure_experiment(name)
    client = _client()
    metric = T.PROMOTION_METRIC
    with tempfile.TemporaryDirectory(prefix="churnml-run-") as tmp_name:
        tmp = Path(tmp_name)
        model_dir = result.model.save(tmp / "survival_model")
        artifacts = tmp / "artifacts"
        artifacts.mkdir()
        (artifacts / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
        (artifacts / "split.json").write_text(json.dumps({**result.split, "notes": result.notes}, indent=1))
        (artifacts / "data_fingerprint.json").write_text(json.dumps(result.fingerprint, indent=1))
        for outcome, table in result.calibration.items():
            table.to_csv(artifacts / f"calibration_{outcome}_{T.CALIBRATION_DAYS}d.csv", index=False)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{TIME_TO_EVENT}") as run:
            mlflow.set_tags({"churnml.target": TIME_TO_EVENT, "churnml.kind": "train",
                             "churnml.evaluation": "held-out test landmarks, IPCW",
                             "churnml.notes": " | ".join(result.notes)[:5000]})
            params = {**{k: v for k, v in config.to_dict().items() if k != "lgb_params"},
                      **{f"lgb_{k}": v for k, v in config.lgb_params.items()},
                      **{f"split_{k}": v for k, v in result.split.items()},
                      "best_iteration": result.protocol_model.info.get("best_iteration"),
                      "train_end": result.model.info.get("train_end"),
                      "n_features": len(result.model.feature_names)}
            mlflow.log_params({k: ("" if v is None else str(v))[:500] for k, v in params.items()})
            mlflow.log_metrics(_finite(result.metrics))
            mlflow.log_metrics(_finite({f"time_{k}": v for k, v in result.timings.items()}))
            mlflow.log_artifacts(str(artifacts))
            if progress is not None:
                progress.note(f"{TIME_TO_EVENT}: registering {name}")
            from churnml.models.survival_explain import PYFUNC_REASONS_KEY

            info = mlflow.pyfunc.log_model(name="model", python_model=str(_SURVIVAL_PYFUNC_FILE),
                                           artifacts={"survival_model": str(model_dir)},
                                           registered_model_name=name, pip_requirements=_requirements(),
                                           metadata={PYFUNC_REASONS_KEY: True})
            version = str(info.registered_model_version)
            card = tmp / "card"
            card.mkdir()
            (card / MODEL_CARD).write_text(T.model_card(result, version=version, run_id=run.info.run_id),
                                           encoding="utf-8")
            mlflow.log_artifact(str(card / MODEL_CARD))
            new_score = float(result.metrics[metric])
            champion_score: float | None = None
            previous, unreadable = _previous_champion(TIME_TO_EVENT, version)
            if unreadable is not None:
                became, reason = False, unreadable
            elif previous is None:
                became, reason = True, "first version: champion at once"
            else:
                from churnml.errors import ChurnMLError

                try:
                    new_gate, old_gate, rows, span = T.gate_scores(result, load_time_to_event(previous))
                except ChurnMLError as exc:
                    new_gate, old_gate, rows, span = float("nan"), float("nan"), 0, str(exc)
                if not (np.isfinite(new_gate) and np.isfinite(old_gate)):
                    became, reason = False, (f"{metric} cannot be compared on {span} ({rows:,} rows): "
                                             f"champion v{previous} stays")
                else:
                    new_score, champion_score = new_gate, old_gate
                    became = bool(old_gate - new_gate > config.promotion_min_improvement)
                    reason = (f"{metric} {new_gate:.4f} vs champion v{previous} {old_gate:.4f} on the "
                              f"same {rows:,} test rows: {span}")
                    mlflow.log_metrics({"gate_rows": float(rows), f"gate_{metric}": new_gate,
                                        f"champion_{metric}": old_gate})
            run_id = run.info.run_id
            _tag_gate(mlflow, version, became, reason)
    _tag_version_and_alias(client, name, version, previous, became, (
        ("test_ibs_churn", result.metrics.get(metric)), ("target", TIME_TO_EVENT),
        ("test_start", result.split["test_start"]), ("test_end", result.split["test_end"]),
        ("train_end", result.model.info.get("train_end", ""))))
    return Registration(run_id, version, became, previous, new_score, champion_score, metric, reason)
