"""The leakage guard: features that give the label away stop training.

Every extra column of ``accounts`` becomes a static feature as it was exported *today*: a CRM
status (``cancelled`` / ``active``) repeats the account's future on every one of its weekly
rows. One such column took test AUC from 0.785 to 0.982, above the simulator's oracle, and the
champion gate promoted it. The guard runs on the assembled training dataset, before fitting
(``churnml train`` calls :func:`guard_training`), and applies ``features/attributes.yaml``:

- **declaration**: static attributes known at signup are listed under ``static`` (or named
  ``signup_*``); any other ``accounts`` column is trained on with a warning naming it;
- **single-feature AUC**: every feature's AUC on its own (numbers ranked, missing at either
  end, the better of both directions; a categorical scored by its positive rate, levels with
  fewer than 30 rows pooled) on the training rows against the training label. At or above
  ``guard.max_single_auc`` (0.95), and above the oracle's AUC on the same rows when the book is
  simulated, the feature is a leak;
- **the label, account by account**: a static attribute is constant per account, so it is
  also compared with each account's outcome (the event in any labeled window): an
  account-level AUC at or above ``max_single_auc``, or a categorical value held by at least
  ``guard.min_accounts_per_value`` accounts that all have the event, means the attribute
  changes exactly at the label (it was written after the fact);
- a leak raises :class:`~churnml.errors.LeakageError` (exit code 2) naming the column and the
  evidence (its AUCs, the oracle's), unless the column is listed under ``allow_leaky``
  (then it is a warning).

Warnings are added to the dataset's split notes, so they appear among the training result's
notes (printed by ``churnml train``, logged to MLflow).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from churnml.errors import ConfigError, LeakageError

#: The contract's own columns of ``accounts`` that are not attributes.
KEY_COLUMNS = ("account_id", "created_at")
#: Categorical levels with fewer training rows than this are pooled before scoring.
MIN_ROWS_PER_LEVEL = 30
STATIC_PREFIX = "signup_"


@dataclass(frozen=True)
class AttributeConfig:
    """``features/attributes.yaml``."""

    static: tuple[str, ...] = ()
    allow_leaky: tuple[str, ...] = ()
    max_single_auc: float = 0.95
    min_accounts_per_value: int = 10
    oracle_sample_rows: int = 2000
    source: str | None = None

    def is_declared(self, column: str) -> bool:
        return column in self.static or column.startswith(STATIC_PREFIX)


def load_attribute_config(path: str | Path | None = None) -> AttributeConfig:
    """Read ``features/attributes.yaml`` (or ``path``); defaults when the default file is absent."""
    from churnml.config import features_dir

    explicit = path is not None
    path = Path(path) if path is not None else features_dir() / "attributes.yaml"
    if not path.is_file():
        if explicit:
            raise ConfigError(f"attributes config {path}: no such file")
        return AttributeConfig()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    problems = []
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'static', 'allow_leaky' and 'guard'")
    unknown = sorted(set(raw) - {"static", "allow_leaky", "guard", "reasons"})
    if unknown:
        problems.append(f"unknown keys {unknown}")
    lists = {}
    for key in ("static", "allow_leaky"):
        value = raw.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.append(f"'{key}' must be a list of column names; got {value!r}")
            value = []
        lists[key] = tuple(v.strip() for v in value)
    guard = raw.get("guard") or {}
    if not isinstance(guard, dict):
        problems.append(f"'guard' must be a mapping; got {guard!r}")
        guard = {}
    unknown = sorted(set(guard) - {"max_single_auc", "min_accounts_per_value",
                                   "oracle_sample_rows"})
    if unknown:
        problems.append(f"unknown guard keys {unknown}")
    max_auc = guard.get("max_single_auc", 0.95)
    if not isinstance(max_auc, (int, float)) or not 0.5 < float(max_auc) <= 1.0:
        problems.append(f"guard.max_single_auc must be a number in (0.5, 1]; got {max_auc!r}")
        max_auc = 0.95
    ints = {}
    for key, default in (("min_accounts_per_value", 10), ("oracle_sample_rows", 2000)):
        value = guard.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"guard.{key} must be a positive integer; got {value!r}")
            value = default
        ints[key] = value
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    from churnml.features.catalog import attribute_reasons

    attribute_reasons(path)  # the reason templates: checked here, read where a reason is worded
    return AttributeConfig(lists["static"], lists["allow_leaky"], float(max_auc),
                           ints["min_accounts_per_value"], ints["oracle_sample_rows"], str(path))


# --------------------------------------------------------------------------- scoring helpers
def auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of ``score`` for the 0/1 labels ``y`` (ties count half); NaN without both."""
    y = np.asarray(y, dtype=bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = pd.Series(np.asarray(score, dtype="float64")).rank(method="average").to_numpy()
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _numeric_auc(y: np.ndarray, values: np.ndarray) -> float:
    """The best AUC of a number on its own: either direction, missing values at either end."""
    values = np.asarray(values, dtype="float64")
    missing = np.isnan(values)
    if missing.all():
        return float("nan")
    best = float("nan")
    for fill in ((-np.inf, np.inf) if missing.any() else (0.0,)):
        a = auc(y, np.where(missing, fill, values))
        best = np.nanmax([best, a, 1.0 - a])
    return float(best)


def _categorical_scores(values: pd.Series, y: np.ndarray, min_rows: int) -> np.ndarray:
    """Each row's level scored by the level's positive rate (rare levels pooled, missing a
    level of its own)."""
    keys = values.astype(object).where(values.notna(), "\x00missing").astype(str)
    counts = keys.map(keys.value_counts())
    keys = keys.where(counts >= min_rows, "\x00rare")
    rate = pd.Series(y, index=keys.index).groupby(keys).mean()
    return keys.map(rate).to_numpy(dtype="float64")


def single_feature_auc(values: pd.Series, y: np.ndarray, categorical: bool,
                       min_rows: int = MIN_ROWS_PER_LEVEL) -> float:
    if categorical:
        return auc(y, _categorical_scores(values, y, min_rows))
    return _numeric_auc(y, pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64"))


@dataclass
class Finding:
    """A feature that gives the label away, with the evidence."""

    column: str
    row_auc: float
    rows: int
    account_auc: float | None = None
    exclusive_values: list = field(default_factory=list)
    oracle_auc: float | None = None
    oracle_rows: int = 0

    def evidence(self, threshold: float) -> str:
        parts = [f"AUC {self.row_auc:.3f} on its own on {self.rows:,} training rows"]
        if self.oracle_auc is not None:
            parts.append(f"the simulator's oracle {self.oracle_auc:.3f} on {self.oracle_rows:,} "
                         f"of those rows")
        if self.account_auc is not None:
            parts.append(f"AUC {self.account_auc:.3f} against each account's outcome")
        if self.exclusive_values:
            shown = ", ".join(f"{v!r} ({n:,} accounts)" for v, n in self.exclusive_values[:5])
            parts.append(f"values held only by accounts with the event: {shown}")
        return f"'{self.column}': " + "; ".join(parts) + f" (limit {threshold:.2f})"


def _static_attributes(book, feature_names: list[str]) -> list[str]:
    if book is None:
        return []
    return [c for c in book.accounts.columns if c not in KEY_COLUMNS and c in feature_names]


def _oracle_auc(truth, train: pd.DataFrame, config, sample_rows: int) -> tuple[float | None, int,
                                                                          pd.DataFrame | None]:
    """The oracle's AUC on a sample of the training rows (None without a truth)."""
    if truth is None:
        return None, 0, None
    from churnml.models.baselines import oracle_baseline

    sample = train
    if len(train) > sample_rows:
        sample = train.sample(sample_rows, random_state=int(getattr(config, "seed", 7) or 7))
    sample = sample.reset_index(drop=True)
    try:
        op = oracle_baseline(truth, sample, config.horizon_days, config.target)
    except Exception:  # noqa: BLE001 - a truth that does not fit the book: no oracle evidence
        return None, 0, None
    ok = np.isfinite(op)
    value = auc(sample["label"].to_numpy()[ok], op[ok])
    return (None if np.isnan(value) else value), int(ok.sum()), sample.loc[ok]


def find_leaks(dataset, config, *, book=None, truth=None,
               attributes: AttributeConfig | None = None) -> tuple[list[Finding], list[str]]:
    """The features of ``dataset`` that give ``config.target``'s label away, and warnings
    (undeclared attributes). Nothing is raised here: see :func:`guard_training`."""
    attributes = attributes or load_attribute_config()
    threshold = attributes.max_single_auc
    names, categorical = list(dataset.feature_names), set(dataset.categorical)
    static = _static_attributes(book, names)
    warnings = []
    if book is not None:
        extra = [c for c in book.accounts.columns if c not in KEY_COLUMNS]
        undeclared = [c for c in extra if not attributes.is_declared(c)]
        if undeclared:
            warnings.append(
                f"accounts: {len(undeclared)} attribute column{'s' if len(undeclared) != 1 else ''}"
                f" not declared static in {attributes.source or 'features/attributes.yaml'} "
                f"(trained on as exported today, with no point-in-time meaning): "
                f"{', '.join(undeclared[:10])}{' ...' if len(undeclared) > 10 else ''}")

    train = dataset.part("train")
    y = train["label"].to_numpy(dtype="float64") > 0
    findings: dict[str, Finding] = {}
    row_auc = {}
    for name in names:
        a = single_feature_auc(train[name], y, name in categorical)
        row_auc[name] = a
        if np.isfinite(a) and a >= threshold:
            findings[name] = Finding(name, a, len(train))

    # static attributes against each account's outcome (any labeled window)
    if static:
        frame = dataset.frame
        outcome = (frame["label"].to_numpy(dtype="float64") > 0)
        per_account = pd.Series(outcome, index=frame["account_id"].to_numpy()).groupby(level=0).max()
        accounts = book.accounts.drop_duplicates("account_id").set_index("account_id")
        accounts = accounts.reindex(per_account.index.astype(str))
        ya = per_account.to_numpy(dtype=bool)
        for name in static:
            is_cat = name in categorical
            a = single_feature_auc(accounts[name], ya, is_cat,
                                   min_rows=attributes.min_accounts_per_value)
            exclusive = []
            if is_cat:
                values = accounts[name]
                table = pd.DataFrame({"v": values.to_numpy(dtype=object), "y": ya})
                table = table[values.notna().to_numpy()]
                stats = table.groupby("v")["y"].agg(["size", "min"])
                hit = stats[(stats["size"] >= attributes.min_accounts_per_value) & stats["min"]]
                exclusive = [(k, int(n)) for k, n in hit["size"].sort_values(ascending=False).items()]
            if (np.isfinite(a) and a >= threshold) or exclusive:
                f = findings.setdefault(name, Finding(name, row_auc[name], len(train)))
                f.account_auc, f.exclusive_values = a, exclusive

    # a row-level finding only counts if it also beats the oracle (when there is one)
    if findings and truth is not None:
        oracle, oracle_rows, sample = _oracle_auc(truth, train, config,
                                                  attributes.oracle_sample_rows)
        for name in list(findings):
            f = findings[name]
            f.oracle_auc, f.oracle_rows = oracle, oracle_rows
            account_level = f.account_auc is not None and (
                f.exclusive_values or (np.isfinite(f.account_auc) and f.account_auc >= threshold))
            if oracle is not None and sample is not None and not account_level:
                same_rows = single_feature_auc(sample[name], sample["label"].to_numpy() > 0,
                                               name in categorical)
                if not same_rows > oracle:
                    warnings.append(f"'{name}' has AUC {f.row_auc:.3f} on its own, at or above "
                                    f"{threshold:.2f}, but the oracle does as well "
                                    f"({oracle:.3f}): kept")
                    del findings[name]
    return list(findings.values()), warnings


def guard_training(dataset, config, *, book=None, truth=None,
                   attributes: AttributeConfig | None = None) -> list[str]:
    """Stop training on a leak (:class:`LeakageError`, exit code 2); returns the warnings,
    which are also added to ``dataset.split.notes`` (the training result's notes)."""
    attributes = attributes or load_attribute_config()
    findings, warnings = find_leaks(dataset, config, book=book, truth=truth,
                                    attributes=attributes)
    threshold = attributes.max_single_auc
    allowed = [f for f in findings if f.column in attributes.allow_leaky]
    blocked = [f for f in findings if f.column not in attributes.allow_leaky]
    for f in allowed:
        warnings.append(f"leakage guard: allowed by allow_leaky: {f.evidence(threshold)}")
    dataset.split.notes.extend(warnings)
    if blocked:
        undeclared = set() if book is None else {
            c for c in book.accounts.columns
            if c not in KEY_COLUMNS and not attributes.is_declared(c)}
        lines = "\n".join(f"  {f.evidence(threshold)}"
                          + ("; not declared static" if f.column in undeclared else "")
                          for f in blocked)
        raise LeakageError(
            f"{config.target}: {len(blocked)} "
            f"{'features give' if len(blocked) != 1 else 'feature gives'} the label away, so training stopped (a model trained on them would look better "
            f"than the truth allows and win the champion gate):\n{lines}\n"
            f"An attribute exported today (a CRM status, a cancellation date) has no point-in-"
            f"time meaning: drop it from accounts, or, if it really is known at signup, list it "
            f"under allow_leaky in {attributes.source or 'features/attributes.yaml'}.")
    return warnings
