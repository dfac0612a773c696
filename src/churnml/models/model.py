"""``TargetModel``: a trained churn or expansion model, ready to score and explain.

It holds everything needed to turn a feature frame (as ``churnml features`` writes it) into
calibrated probabilities and reasons, with no reference to the other accounts scored:

- the LightGBM ``Booster`` (trees already cut at the early-stopping iteration);
- the feature list and, for categorical features, the categories seen at training time (an
  unseen category scores as missing);
- the calibrator (isotonic knots or sigmoid parameters);
- the catalog entries used to render reasons, and each feature's health dimension;
- the model configuration (target, horizon...), the health configuration it was trained with,
  and version information.

Saved to a directory as ``booster.txt`` (LightGBM's own text format) plus ``model.json`` (the
rest, plain JSON): no pickle, so a model outlives library upgrades. The MLflow pyfunc, the
Bento and the Spark engine all load this directory.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from churnml.columns import FrameColumns
from churnml.errors import ConfigError, SchemaError, format_examples
from churnml.models.calibration import Calibrator, sigmoid
from churnml.models.explain import build_reasons
from churnml.models.single_row import SingleRowContrib

FORMAT_VERSION = 1
BOOSTER_FILE = "booster.txt"
META_FILE = "model.json"
DIMENSION_ORDER = ("usage", "engagement", "outcome", "satisfaction", "payment", "revenue", "static")

#: Up to this many rows (an HTTP request, a few accounts) text columns are encoded with a dict
#: look-up and LightGBM predicts on one thread: for one row pandas' per-column conversion and
#: OpenMP's thread start-up cost 10-100x the prediction itself. The numbers are the same.
SMALL_FRAME_ROWS = 64
#: Rendered reason sentences kept per model (the same values come back request after request).
REASON_TEXT_CACHE_SIZE = 20_000



def _spec_renderer(spec: dict) -> Callable[[Any], str]:
    """Sentence renderer for one feature from its stored catalog entry; it remembers the
    sentences it rendered (up to :data:`REASON_TEXT_CACHE_SIZE`, then starts afresh), since a
    service renders the same values again and again."""
    from churnml.features.catalog import FeatureSpec, render_reason, stored_directions

    fields = set(FeatureSpec.__dataclass_fields__)
    feature_spec = FeatureSpec(**{**{k: v for k, v in spec.items() if k in fields},
                                  "directions": stored_directions(spec)})
    cache: dict[Any, str] = {}

    def render(value: Any) -> str:
        try:
            return cache[value]
        except (KeyError, TypeError):
            pass
        text = render_reason(feature_spec, value)
        try:
            if len(cache) >= REASON_TEXT_CACHE_SIZE:
                cache.clear()
            cache[value] = text
        except TypeError:  # an unhashable value: rendered every time
            pass
        return text

    return render


def _is_missing_scalar(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def _texts(values: list | None) -> list[str | None] | None:
    """``values`` as text or None (missing), or None when one is neither (then pandas'
    conversion, with its rules for other types, handles the column)."""
    if values is None:
        return None
    out: list[str | None] = []
    for v in values:
        if isinstance(v, str):
            out.append(v)
        elif _is_missing_scalar(v):
            out.append(None)
        else:
            return None
    return out


class FeatureEncoder:
    """The one encoder from a feature frame to the float64 matrix LightGBM reads: training
    (``churnml.models.train.fit_model``) and scoring (:class:`TargetModel`, which is one) use
    the same code, so train and serve cannot encode a column differently.

    ``feature_names``: the matrix columns in order; ``categories``: per categorical feature its
    training-time categories (code = position; unseen or missing -> NaN); ``label``: what
    error messages call the model (its outcome).
    """

    def __init__(self, feature_names: list[str], categories: dict[str, list[str]],
                 label: str = "model") -> None:
        self.feature_names = list(feature_names)
        self.categories = {k: list(v) for k, v in categories.items()}
        self._label = label
        self._category_index = {k: pd.Index(v) for k, v in self.categories.items()}
        # the same codes as ``_category_index[k].get_indexer`` (categories are unique)
        self._category_code = {k: {c: i for i, c in enumerate(v)} for k, v in self.categories.items()}
        #: Encoders with equal keys make equal matrices of the same frame (the models of one
        #: training data set usually do: ``score_frame`` then builds the matrix once).
        self.encoding_key = (tuple(self.feature_names),
                             tuple(sorted((k, tuple(v)) for k, v in self.categories.items())))

    # ---- input checks -----------------------------------------------------------------------
    def matrix(self, features: pd.DataFrame, columns: FrameColumns | None = None) -> np.ndarray:
        """The (n_rows, n_features) float64 matrix the booster reads.

        Numeric features: numbers (text columns are accepted when every non-empty value parses
        as a number). Categorical features: text, encoded with the training-time categories;
        an unseen category is missing. A missing column is all missing. Every wrong column is
        reported at once in one :class:`SchemaError`.

        ``columns``: a :class:`~churnml.columns.FrameColumns` of ``features`` already made
        (``score_frame`` shares one between the models and the health score); the matrix is
        the same with or without it. float64 columns are copied as they are, text columns of
        small frames (up to :data:`SMALL_FRAME_ROWS` rows) are looked up in a dict; any other
        column goes through pandas' conversion, as it always did.
        """
        if not isinstance(features, pd.DataFrame):
            raise SchemaError(f"features must be a pandas DataFrame, got {type(features).__name__}")
        n = len(features)
        cols = FrameColumns.of(features, columns)
        X = np.full((n, len(self.feature_names)), np.nan, dtype="float64")
        problems: list[str] = []
        small_text = {}
        if n <= SMALL_FRAME_ROWS:
            small_text = cols.objects(name for name in self.categories if cols.in_frame(name))
        js: Any = range(len(self.feature_names))
        if cols.block is not None:  # the numeric features in one copy, the rest one by one
            dst, src, rest = self._block_plan(cols.block_names)
            if len(dst):
                X[:, dst] = cols.block[:, src]
            js = rest
        for j in js:
            name = self.feature_names[j]
            if not cols.in_frame(name):
                continue
            if name not in self.categories:
                fast = cols.float64(name, frame_only=True)
                if fast is not None:  # already float64: the values pd.to_numeric would give
                    X[:, j] = fast
                    continue
            # (text or missing values only: a numeric or boolean column's values are not
            # text, so it takes pandas' path below and its checks)
            if name in small_text:
                codes = self._small_codes(name, small_text[name])
                if codes is not None:
                    X[:, j] = np.where(codes >= 0, codes, np.nan)
                    continue
            col = features[name]
            if name in self.categories:
                if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col) and col.notna().any():
                    problems.append(
                        f"column '{name}' must be text (categorical at training time, categories "
                        f"{format_examples(self.categories[name])}); got {col.dtype} values, e.g. "
                        f"{format_examples(col.dropna().unique())}"
                    )
                    continue
                codes = self._text_codes(name, col)
                X[:, j] = np.where(codes >= 0, codes, np.nan)
            else:
                if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
                    X[:, j] = pd.to_numeric(col, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
                    continue
                parsed = pd.to_numeric(col.astype("object"), errors="coerce")
                bad = col.notna() & parsed.isna() & (col.astype("string").str.strip() != "")
                if bad.any():
                    problems.append(
                        f"column '{name}' must be numeric; {int(bad.sum())} bad value(s), e.g. "
                        f"{format_examples(col[bad].unique())}"
                    )
                    continue
                X[:, j] = parsed.to_numpy(dtype="float64", na_value=np.nan)
        if problems:
            raise SchemaError(
                f"features: {len(problems)} column(s) do not match the {self._label} model's "
                f"training-time types: " + "; ".join(problems)
            )
        return X

    def _text_codes(self, name: str, col: pd.Series) -> np.ndarray:
        """Position of each value of the categorical column ``col`` among the training-time
        categories of ``name`` (-1: unseen or missing), each value taken as text.

        A pandas string column (every value a str or missing: the training frame's columns)
        is factorized first and only its distinct values are looked up: the same codes as
        looking up every row (``str(v)`` is ``v``), without converting millions of rows to
        Python objects and back (measured on the refit's rows: ``benchmarks/README.md``,
        "Session 8"). Any other column: every row through ``astype(str)``, as before."""
        index = self._category_index[name]
        if isinstance(col.dtype, pd.StringDtype):
            row_codes, uniques = pd.factorize(col, use_na_sentinel=True)
            if len(uniques) == 0:
                return np.full(len(col), -1, dtype=np.intp)
            unique_codes = index.get_indexer(pd.Index(np.asarray(uniques, dtype=object)))
            return np.where(row_codes >= 0, unique_codes[np.maximum(row_codes, 0)], -1)
        text = col.astype("object").where(col.notna(), None)
        # pandas-stubs want an Index; get_indexer takes any array-like (as it always did here)
        return index.get_indexer(text.astype(str).where(text.notna(), None))  # type: ignore[arg-type]

    def _block_plan(self, block_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """For a FrameColumns float64 block with these columns: the matrix columns taken from
        it (``dst``), their block columns (``src``), and the other feature indices, cached per
        block layout (a service sends the same layout every time)."""
        plans = self.__dict__.setdefault("_block_plans", {})
        plan = plans.get(block_names)
        if plan is None:
            where = {name: k for k, name in enumerate(block_names)}
            dst, src, rest = [], [], []
            for j, name in enumerate(self.feature_names):
                if name not in self.categories and name in where:
                    dst.append(j)
                    src.append(where[name])
                else:
                    rest.append(j)
            if len(plans) >= 16:
                plans.clear()
            plan = plans[block_names] = (np.array(dst, dtype=np.intp),
                                         np.array(src, dtype=np.intp), rest)
        return plan

    def _small_codes(self, name: str, values: list | None) -> np.ndarray | None:
        """Category codes (-1 unseen or missing) of a short list of text values by dict
        look-up, or None when a value is neither text nor missing (pandas' path decides)."""
        texts = _texts(values)
        if texts is None:
            return None
        lookup = self._category_code[name]
        return np.array([-1 if t is None else lookup.get(t, -1) for t in texts], dtype=np.int64)

    def display_values(self, features: pd.DataFrame, X: np.ndarray, columns,
                        frame_columns: FrameColumns | None = None) -> dict[int, list]:
        """Values shown in reasons, per matrix column ``j`` of ``columns``: the number, or the
        category as given (None when missing). ``X``: :meth:`matrix` of ``features``."""
        out: dict[int, list] = {}
        for j in columns:
            name = self.feature_names[j]
            if name in self.categories:
                codes = X[:, j]
                cats = np.asarray(self.categories[name] + [None], dtype=object)
                # an unseen category is missing to the model, but the sentence shows what was sent
                given = None
                if frame_columns is not None and len(X) <= SMALL_FRAME_ROWS:
                    given = _texts(frame_columns.objects([name]).get(name))
                if given is not None:
                    pass
                elif name in features.columns:
                    given = features[name].astype("object").where(features[name].notna(), None).tolist()
                else:
                    given = [None] * len(X)
                known = cats[np.where(np.isnan(codes), -1, codes).astype(np.int64)].tolist()
                out[j] = [k if k is not None else (None if g is None else str(g)) for k, g in zip(known, given)]
            else:
                out[j] = X[:, j].tolist()
        return out


class TargetModel(FeatureEncoder):
    """A trained model for one outcome (``churnml.outcomes.OUTCOMES``).

    Build it with :func:`churnml.models.train.train_model` (or ``train_target``), load it with
    :meth:`load` or ``churnml.models.registry.load_champion``.

    All scoring methods take a feature frame (one row per account and as_of; extra columns such
    as ``account_id``/``as_of`` are ignored; a missing feature column counts as missing values)
    and give each row the same numbers whether it is scored alone or in a batch.
    """

    def __init__(
        self,
        booster,
        feature_names: list[str],
        categories: dict[str, list[str]],
        calibrator: Calibrator,
        specs: dict[str, dict],
        config: dict,
        health_config: dict | None = None,
        info: dict | None = None,
        version: str | None = None,
    ) -> None:
        super().__init__(feature_names, categories, label=str(config.get("target", "model")))
        self.booster = booster
        self.calibrator = calibrator
        self.specs = specs
        self.config = config
        self.health_config = health_config
        self.info = dict(info or {})
        self.version = version
        self._renderers: list[Callable[[Any], str]] | None = None
        self._single_row: SingleRowContrib | None = None  # made on the first one-row call

    # ---- identity -------------------------------------------------------------------------
    @property
    def target(self) -> str:
        return self.config["target"]

    @property
    def horizon_days(self) -> int:
        return int(self.config["horizon_days"])

    @property
    def dimensions(self) -> dict[str, str]:
        """feature -> health dimension (``static`` for attributes the catalog does not list)."""
        return {f: self.specs.get(f, {}).get("health_dimension") or "static" for f in self.feature_names}

    def __repr__(self) -> str:
        return (f"TargetModel(target={self.target!r}, version={self.version!r}, "
                f"horizon_days={self.horizon_days}, features={len(self.feature_names)}, "
                f"trees={self.booster.num_trees()}, calibration={self.calibrator.method!r})")

    def missing_features(self, features: pd.DataFrame) -> list[str]:
        """Model features absent from ``features`` (scored as missing values)."""
        return [f for f in self.feature_names if f not in features.columns]

    # ---- scoring ----------------------------------------------------------------------------
    def raw_log_odds(self, features: pd.DataFrame) -> np.ndarray:
        """Uncalibrated log-odds of the event (the booster's raw score)."""
        X = self.matrix(features)
        return np.asarray(self.booster.predict(X, raw_score=True), dtype="float64").reshape(-1)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of the event within the horizon, one per row, in [0, 1]."""
        return self.calibrator.transform(sigmoid(self.raw_log_odds(features)))

    def _contrib(self, X: np.ndarray) -> np.ndarray:
        """Exact TreeSHAP (n_rows, n_features + 1), last column the base value."""
        if len(X) == 1:  # one account (a /predict call): LightGBM's single-row path
            if self._single_row is None or not self._single_row.serves(self.booster):
                self._single_row = SingleRowContrib(self.booster, len(self.feature_names))
            if self._single_row.available:
                return self._single_row(X[0])
        if len(X) <= SMALL_FRAME_ROWS:  # per-row values: the thread count changes no digit
            return np.asarray(self.booster.predict(X, pred_contrib=True, num_threads=1),
                              dtype="float64")
        return np.asarray(self.booster.predict(X, pred_contrib=True), dtype="float64")

    def contributions(self, features: pd.DataFrame, with_base: bool = False) -> pd.DataFrame:
        """Exact TreeSHAP contributions in log-odds of the uncalibrated model, one column per
        feature (plus ``base_value`` when ``with_base``); per row they sum, with the base value,
        to the raw log-odds."""
        contrib = self._contrib(self.matrix(features))
        frame = pd.DataFrame(contrib[:, :-1], columns=self.feature_names, index=features.index)
        if with_base:
            frame["base_value"] = contrib[:, -1]
        return frame

    def dimension_contributions(self, features: pd.DataFrame) -> pd.DataFrame:
        """Contributions summed per health dimension (usage, engagement, outcome, satisfaction,
        payment, then revenue and static for features outside the health score), log-odds."""
        contrib = self.contributions(features)
        dims = self.dimensions
        present = [d for d in DIMENSION_ORDER if d in dims.values()]
        present += sorted(set(dims.values()) - set(present))
        return pd.DataFrame(
            {d: contrib[[f for f in self.feature_names if dims[f] == d]].sum(axis=1) for d in present},
            index=features.index,
        )

    def _renderer_list(self) -> list[Callable[[Any], str]]:
        if self._renderers is None:
            self._renderers = [_spec_renderer(self.specs[f]) for f in self.feature_names]
        return self._renderers

    def predict_with_reasons(self, features: pd.DataFrame, top_k: int = 3, *,
                             columns: FrameColumns | None = None,
                             matrix: np.ndarray | None = None) -> tuple[np.ndarray, list[list[dict]]]:
        """Calibrated probabilities and reasons from one TreeSHAP pass (the contributions sum
        to the raw log-odds, so probabilities cost nothing extra). ``columns``: see
        :meth:`matrix` (same result, less pandas work). ``matrix``: ``self.matrix(features)``
        when the caller has it (from an encoder with the same ``encoding_key``); not written to."""
        columns = FrameColumns.of(features, columns)
        X = self.matrix(features, columns) if matrix is None else matrix
        if X.shape != (len(features), len(self.feature_names)):
            raise ValueError(f"matrix of shape {X.shape} for {len(features)} rows and "
                             f"{len(self.feature_names)} features")
        contrib = self._contrib(X)
        proba = self.calibrator.transform(sigmoid(contrib.sum(axis=1)))
        feature_contrib = contrib[:, :-1]
        from churnml.models.explain import top_k_indices

        idx, valid = top_k_indices(feature_contrib, top_k)
        used = np.unique(idx[valid]) if idx.size else np.array([], dtype=np.int64)
        values = self.display_values(features, X, used.tolist(), columns)
        value_lists = [values.get(j) for j in range(len(self.feature_names))]
        reasons = build_reasons(feature_contrib, value_lists, self.feature_names,
                                self._renderer_list(), top_k, top=(idx, valid))
        return proba, reasons

    def explain(self, features: pd.DataFrame, top_k: int = 3) -> list[list[dict]]:
        """Per row, up to ``top_k`` reasons ``{feature, value, contribution, text}``.

        Strongest first, those raising the probability before those lowering it;
        ``contribution`` is in log-odds of the uncalibrated model (exact TreeSHAP), ``value`` the
        feature's value (a number, a category string, or None when missing) and ``text`` the
        catalog's sentence for it.
        """
        return self.predict_with_reasons(features, top_k)[1]

    # ---- persistence ------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``booster.txt`` and ``model.json`` into ``directory`` (created)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / BOOSTER_FILE).write_text(self.booster.model_to_string())
        meta = {
            "format_version": FORMAT_VERSION,
            "feature_names": self.feature_names,
            "categories": self.categories,
            "calibrator": self.calibrator.to_dict(),
            "specs": self.specs,
            "config": self.config,
            "health_config": self.health_config,
            "info": self.info,
            "version": self.version,
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=1, default=_json_default))
        return directory

    @classmethod
    def load(cls, directory: str | Path, version: str | None = None) -> "TargetModel":
        """Load a model saved by :meth:`save`; ``version`` (e.g. the registry's) overrides."""
        import lightgbm as lgb

        directory = Path(directory)
        if not (directory / META_FILE).exists() or not (directory / BOOSTER_FILE).exists():
            raise ConfigError(f"{directory} is not a saved churnml model (needs {BOOSTER_FILE} and {META_FILE})")
        meta = json.loads((directory / META_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ConfigError(f"{directory}: model format {meta.get('format_version')} is not supported "
                              f"(this churnml reads format {FORMAT_VERSION})")
        booster = lgb.Booster(model_str=(directory / BOOSTER_FILE).read_text())
        return cls(
            booster=booster,
            feature_names=meta["feature_names"],
            categories=meta["categories"],
            calibrator=Calibrator.from_dict(meta["calibrator"]),
            specs=meta["specs"],
            config=meta["config"],
            health_config=meta.get("health_config"),
            info=meta.get("info"),
            version=version if version is not None else meta.get("version"),
        )


def spec_record(spec) -> dict:
    """A catalog ``FeatureSpec`` as a plain JSON-able dict (stored with the model)."""
    return json.loads(json.dumps(asdict(spec), default=_json_default))


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
