"""What the HTTP service does with a request, without BentoML.

:class:`Predictor` holds the champion models, the health score they were trained with, the
feature catalog and the playbooks, loaded once. Its two entry points turn a request into the
output rows of :func:`churnml.scoring.frame.score_frame`, the function the weekly job calls too,
so the service and the batch job agree to the last digit for the same account and as_of:

- :meth:`Predictor.predict_records`: feature records (``POST /predict``) -> a feature frame
  with the dtypes ``build_features`` produces (numbers float64, categories strings, missing
  values NaN) -> ``score_frame``;
- :meth:`Predictor.predict_history`: raw table rows plus ``as_of`` (``POST /predict_history``)
  -> ``validate_frames`` -> ``build_features`` (the batch path's builders) and the compared
  features a week before as_of (``churnml.scoring.compare``) -> ``score_frame``.

The service scores every outcome that has a champion (``churnml.outcomes.OUTCOMES``); the
others' columns are null and ``/metadata`` says which.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from churnml.api.schema import (
    MAX_ACCOUNTS,
    PayloadField,
    _short,
    account_record_model,
    catalog_field,
    static_field,
    validation_error,
)
from churnml.columns import FrameColumns
from churnml.config import features_dir
from churnml.data.validation import normalise_ids
from churnml.errors import ChurnMLError, ModelNotFoundError
from churnml.features.catalog import load_catalog
from churnml.health.adopted import adopted_path, load_adopted_health
from churnml.health.score import HealthScore
from churnml.models import registry
from churnml.outcomes import OUTCOMES, TIME_TO_EVENT, get_outcome, model_name_of
from churnml.scoring.actions import load_playbooks
from churnml.scoring.compare import week_before as book_week_before
from churnml.scoring.frame import score_frame

MAX_REJECT_EXAMPLES = 5
#: In a built Bento, the health weights the weekly job used at build time
#: (``serving/build_bento.py`` writes it into the Bento's ``features`` folder).
EMBEDDED_HEALTH_FILE = "serving_health.yaml"


def serving_health():
    """The health score the service scores with: the same as the weekly job's.

    In a built Bento: the weights embedded at build time (:data:`EMBEDDED_HEALTH_FILE` in the
    configuration's ``features`` folder). Otherwise what ``churnml score`` loads
    (``churnml.health.adopted.load_adopted_health``): the adopted weights version under
    the data home when there is one, else the defaults of ``features/health_score.yaml``.
    Returns ``(health, source)``, ``source`` saying which ("embedded", "adopted <file>",
    "default").
    """
    embedded = features_dir() / EMBEDDED_HEALTH_FILE
    if embedded.is_file():
        return HealthScore.load(embedded), f"embedded {EMBEDDED_HEALTH_FILE}"
    path = adopted_path()
    health = load_adopted_health()
    return health, ("default" if path is None else f"adopted {path.name}")


def _model_static_kinds(model, catalog) -> dict[str, str]:
    """Static attributes a model was trained with (features not in the catalog) and their kind:
    categorical when the model encodes categories for it (``model.categories``), else numeric."""
    categorical = set(getattr(model, "categories", None) or {})
    # the time-to-event model's period features are computed from the landmark's, not sent
    derived = set(getattr(model, "derived_features", ()) or ())
    kinds: dict[str, str] = {}
    for name in getattr(model, "feature_names", []) or []:
        if name in catalog or name in ("account_id", "as_of") or name in derived:
            continue
        kinds[name] = "categorical" if name in categorical else "numeric"
    return kinds


def payload_fields(catalog, models: Iterable) -> list[PayloadField]:
    """The known fields of an account record: every catalog feature, then the static
    attributes any of ``models`` was trained with (in the models' order)."""
    from churnml.api.schema import NOT_A_COLUMN_AGGREGATIONS

    fields = [catalog_field(s.name, s.kind, s.description, s.aggregation)
              for s in catalog.specs if s.aggregation not in NOT_A_COLUMN_AGGREGATIONS]
    seen = {f.name for f in fields}
    for model in models:
        for name, kind in _model_static_kinds(model, catalog).items():
            if name not in seen:
                fields.append(static_field(name, kind))
                seen.add(name)
    return fields


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars, timestamps and NaN turned into JSON types (NaN -> None)."""
    kind = type(value)  # the exact JSON types first: most of a response's values
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): json_safe(v) for k, v in value.items()}
    if kind is list:
        return [json_safe(v) for v in value]
    if isinstance(value, (str, bool)):
        return value
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in value]
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def rows_to_json(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Output rows of ``score_frame`` as JSON-ready dicts (``as_of`` as ``YYYY-MM-DD``)."""
    columns = list(frame.columns)
    values = [frame[c].tolist() for c in columns]
    return [{c: json_safe(v[i]) for c, v in zip(columns, values)} for i in range(len(frame))]


def _frame_from_arrays(arrays: list[np.ndarray], columns: pd.Index, n: int) -> pd.DataFrame:
    """A frame from one array per column, in ``columns`` order: what ``pd.DataFrame(dict(zip(
    columns, arrays)))`` gives, built in one step (``DataFrame._from_arrays``, a pandas
    classmethod since 0.x; about 80 us for a request's 70 columns against 250-400 us for a
    concat of per-dtype frames). Falls back to the dict constructor if pandas drops it."""
    index = pd.RangeIndex(n)
    from_arrays = getattr(pd.DataFrame, "_from_arrays", None)
    if from_arrays is not None:
        try:
            return from_arrays(arrays, columns=columns, index=index, verify_integrity=False)
        except TypeError:  # a pandas whose signature changed
            pass
    # Series with their dtypes stated: a bare object array of text would become str dtype
    return pd.DataFrame({name: pd.Series(values, index=index, dtype=values.dtype, copy=False)
                         for name, values in zip(columns, arrays)}, columns=columns)


def _frame_from_blocks(as_of: np.ndarray, text: np.ndarray, numeric: np.ndarray,
                       columns: pd.Index) -> pd.DataFrame:
    """The request frame (columns ``as_of``, then ``text``'s rows as object columns, then
    ``numeric``'s columns as float64) from its three blocks as they are: what
    :func:`_frame_from_arrays` gives for the same columns, without splitting the numbers into
    one array per column and stacking them again (``pandas.api.internals.
    create_dataframe_from_blocks``, public since pandas 2.3; about 40 us for a request's 70
    columns against 90 us). Falls back to :func:`_frame_from_arrays` on an older pandas."""
    n = len(as_of)
    n_text, n_numeric = text.shape[0], numeric.shape[1]
    try:
        from pandas.api.internals import create_dataframe_from_blocks
    except ImportError:
        arrays = [as_of, *text, *(numeric[:, j] for j in range(n_numeric))]
        return _frame_from_arrays(arrays, columns, n)
    blocks = [(as_of.reshape(1, n), np.array([0], dtype=np.intp)),
              (text, np.arange(1, 1 + n_text, dtype=np.intp)),
              (numeric.T, np.arange(1 + n_text, 1 + n_text + n_numeric, dtype=np.intp))]
    return create_dataframe_from_blocks(blocks, index=pd.RangeIndex(n), columns=columns)


class Predictor:
    """The champion models plus everything ``score_frame`` needs, loaded once.

    ``models``: outcome name -> model for the outcomes that have a champion (at least one).
    ``health``: a ``HealthScore``; by default the weekly job's (:func:`serving_health`: the
    adopted weights version, else the defaults), so HTTP and batch agree. ``catalog`` and
    ``playbooks`` default to the configured ``features/catalog.yaml`` and
    ``features/playbooks.yaml``. ``model_info``: per outcome, facts the registry keeps beside
    the model (``trained_at``, ``model_card``: the URI of the version's model card), shown by
    :meth:`metadata`. ``time_to_event``: the ``churnml-time-to-event`` champion
    (``SurvivalModel``), which fills the ``*_probability_<d>d`` columns; None leaves them null.
    """

    def __init__(self, models: Mapping[str, Any], health=None, catalog=None,
                 playbooks=None, model_info: Mapping[str, Mapping] | None = None,
                 time_to_event: Any = None) -> None:
        for name in models:
            get_outcome(name)  # an unknown outcome is a usage error
        if not models:
            raise ModelNotFoundError("the service needs a model for at least one outcome")
        if catalog is None:
            catalog = load_catalog()
        self.health_source = "given"
        if health is None:
            health, self.health_source = serving_health()
        self.models = dict(models)
        self.time_to_event = time_to_event
        # per outcome: facts the registry knows beside the model (``trained_at``)
        self.model_info = {k: dict(v) for k, v in (model_info or {}).items()}
        self.health = health
        self.catalog = catalog
        self.playbooks = playbooks if playbooks is not None else load_playbooks()
        self.feature_dimensions = {s.name: s.health_dimension for s in catalog.specs
                                   if getattr(s, "health_dimension", None)}
        self.fields = payload_fields(catalog, list(self.models.values())
                                     + ([time_to_event] if time_to_event is not None else []))
        self.numeric_fields = [f.name for f in self.fields if f.kind == "numeric"]
        self.categorical_fields = [f.name for f in self.fields if f.kind == "categorical"]
        self.record_model = account_record_model(self.fields)
        # the columns of a request frame with text as objects (see _frame_and_columns)
        self._object_path_columns = pd.Index(
            ["as_of", "account_id", *self.categorical_fields, *self.numeric_fields],
            dtype=object)

    # -- /predict ----------------------------------------------------------------------------
    def frame_from_records(self, records: Sequence[Any]) -> pd.DataFrame:
        """A feature frame from validated records (pydantic models or dicts).

        Columns ``account_id, as_of`` then every known field: numbers float64 (missing = NaN),
        categories pandas strings (missing = NaN), as ``build_features`` writes them.
        """
        return self._frame_and_columns(records, text_dtype="str")[0]

    def _frame_and_columns(self, records: Sequence[Any], text_dtype: str = "str"
                           ) -> tuple[pd.DataFrame, FrameColumns]:
        """:meth:`frame_from_records` plus its FrameColumns, made from the same arrays (so
        ``score_frame`` need not extract them again). ``text_dtype="object"``: text columns
        as Python objects (the same values and scores; no Arrow array to build per column,
        which is most of a one-account frame's cost)."""
        if records and isinstance(records[0], Mapping):
            rows = [dict(r) for r in records]
        else:
            rows = [r.__dict__ for r in records]  # pydantic v2 stores fields in __dict__
        numeric = np.array([[row.get(name) for name in self.numeric_fields] for row in rows],
                           dtype="float64").reshape(len(rows), len(self.numeric_fields))
        # validated records carry ids already normalised (the record model applies the one id
        # rule); plain dicts go through it here
        ids = ([str(row["account_id"]) for row in rows] if not (records and isinstance(
            records[0], Mapping)) else normalise_ids(pd.Series(
                [row["account_id"] for row in rows], dtype=object)).tolist())
        dates = [row["as_of"] for row in rows]
        objects: dict[str, list] = {"account_id": ids}
        texts = {name: [row.get(name) for row in rows] for name in self.categorical_fields}
        for name, values in texts.items():
            if all(v is None or isinstance(v, str) for v in values):
                # what the column's tolist() gives: the text, missing NaN (str) or None
                objects[name] = ([np.nan if v is None else v for v in values]
                                 if text_dtype == "str" else list(values))
        floats = {name: numeric[:, j] for j, name in enumerate(self.numeric_fields)}
        if text_dtype == "str":
            head: dict[str, Any] = {"account_id": pd.array(ids, dtype="str"),
                                    "as_of": pd.to_datetime(dates).as_unit("ns")}
            for name, values in texts.items():
                head[name] = pd.array(values, dtype="str")
            # one float64 block for the numbers (no per-column work), beside the rest
            frame = pd.concat([pd.DataFrame(head), pd.DataFrame(
                numeric, columns=self.numeric_fields, copy=False)], axis=1)
        else:  # text as Python objects: three blocks (date, texts, numbers), then one frame
            if all(type(d) is dt.date for d in dates):  # validated records: no parsing
                as_of = np.array(dates, dtype="datetime64[D]").astype("datetime64[ns]")
            else:
                as_of = pd.to_datetime(dates).as_unit("ns").to_numpy()
            text = np.empty((1 + len(texts), len(rows)), dtype=object)
            text[0, :] = ids
            for k, values in enumerate(texts.values(), start=1):
                text[k, :] = values
            frame = _frame_from_blocks(as_of, text, numeric, self._object_path_columns)
            columns = FrameColumns.from_parts(frame, floats, objects, block=numeric)
            columns.add("as_of", as_of)  # score_frame reads it here, not as a Series
            return frame, columns
        return frame, FrameColumns.from_parts(frame, floats, objects, block=numeric)

    def score(self, features: pd.DataFrame, columns: FrameColumns | None = None,
              output: str = "frame", week_before: pd.DataFrame | None = None):
        """``score_frame`` with this predictor's models, health score, playbooks and catalog.
        ``week_before``: the compared features a week before as_of (``/predict_history``
        computes them from the history; a bare ``/predict`` has none, so every signal there
        counts as new)."""
        return score_frame(features, self.models, self.health, week_before=week_before,
                           playbooks=self.playbooks, feature_dimensions=self.feature_dimensions,
                           catalog=self.catalog, columns=columns, output=output,
                           time_to_event=self.time_to_event)

    def predict_records(self, records: Sequence[Any]) -> list[dict[str, Any]]:
        """Score validated account records; one JSON-ready output row per record, in order."""
        if not records:
            return []
        frame, columns = self._frame_and_columns(records, text_dtype="object")
        return [{k: json_safe(v) for k, v in row.items()}
                for row in self.score(frame, columns, output="records")]

    # -- /predict_history --------------------------------------------------------------------
    def features_from_history(self, tables: Mapping[str, Sequence[Mapping] | None],
                              as_of) -> pd.DataFrame:
        """The features at ``as_of`` of the accounts in ``tables`` (see :meth:`_history`)."""
        return self._history(tables, as_of)[0]

    def _history(self, tables: Mapping[str, Sequence[Mapping] | None],
                 as_of) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Validate raw table rows and build the features at ``as_of`` with the batch builders.

        Raises a pydantic ``ValidationError`` (HTTP 400) naming the table, row, column and
        value when rows would be rejected by the data contract (an HTTP caller gets the
        problem back instead of a silently different answer), when a table cannot be used, or
        when an account is not active at ``as_of``. Returns the features and the compared
        features a week before as_of (``churnml.scoring.compare.week_before``).
        """
        from churnml.data.io import validate_frames
        from churnml.features.build import build_features
        from churnml.features.windows import to_as_of

        frames = {name: pd.DataFrame.from_records(list(rows))
                  for name, rows in tables.items() if rows is not None}
        try:
            book, report = validate_frames(frames, source="request")
        except (ChurnMLError, ValueError, TypeError) as exc:
            # the rows cannot be read as the data contract's tables: the caller's to fix
            raise validation_error("tables", [(("tables",), _short(str(exc), 500))]) from None
        rejects = report.rejects
        if rejects is not None and len(rejects):
            problems: list[tuple[tuple, str]] = []
            for rec in rejects.head(MAX_REJECT_EXAMPLES).to_dict("records"):
                problems.append(((
                    "tables", str(rec["table"]), int(rec["row"]), str(rec["column"])),
                    f"{rec['table']}[{rec['row']}]: column '{rec['column']}': {rec['reason']} "
                    f"(got {_short(rec['value'])})"))
            if len(rejects) > MAX_REJECT_EXAMPLES:
                problems.append((("tables",), f"{len(rejects)} rows rejected in all; the first "
                                              f"{MAX_REJECT_EXAMPLES} are listed"))
            raise validation_error("tables", problems)
        from churnml.features.labels import active_observations

        as_of = to_as_of(as_of)
        requested = book.accounts["account_id"].astype(str).tolist()
        # No active account at all: answer 400 before the builders (they need >= 1 row).
        features = None
        if len(active_observations(book, [as_of])[0]):
            try:
                features = build_features(book, [as_of], catalog=self.catalog)
            except ChurnMLError as exc:
                raise validation_error("tables", [(("tables",), str(exc))]) from None
        active = set() if features is None else set(features["account_id"].astype(str))
        inactive = [a for a in requested if a not in active]
        if inactive:
            from churnml.errors import format_examples

            raise validation_error("tables", [(("tables", "accounts"), (
                f"{len(inactive)} account(s) not active at as_of {as_of:%Y-%m-%d} (no MRR > 0 "
                f"from a change before that date), e.g. {format_examples(inactive)}: only "
                f"active accounts are scored"))])
        # a request names at least one account (validate_frames), and inactive ones raised above
        assert features is not None
        return features, book_week_before(book, as_of, self.playbooks, catalog=self.catalog)

    def predict_history(self, tables: Mapping[str, Sequence[Mapping] | None],
                        as_of) -> list[dict[str, Any]]:
        """Score accounts from their raw history at ``as_of`` (one output row per account)."""
        features, before = self._history(tables, as_of)
        return rows_to_json(self.score(features, week_before=before))

    # -- /metadata ---------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """Model names, versions, training dates, test metrics, features, health weights."""
        models = {}
        for target, model in self.models.items():
            info = dict(getattr(model, "info", None) or {})
            extra = self.model_info.get(target, {})
            config = getattr(model, "config", None)
            horizon = getattr(model, "horizon_days", None)
            if horizon is None and isinstance(config, Mapping):
                horizon = config.get("horizon_days")
            models[target] = {
                "name": get_outcome(target).model_name,
                "version": str(model.version),
                "trained_at": json_safe(extra.get("trained_at") or info.get("trained_at")
                                        or getattr(model, "trained_at", None)),
                "test_metrics": json_safe(info.get("metrics")
                                          or getattr(model, "test_metrics", None) or {}),
                "horizon_days": json_safe(horizon),
                # the version's model card (markdown, an MLflow artifact URI; None when the
                # version has none) and how it was evaluated
                "model_card": extra.get("model_card"),
                "split_policy": json_safe((info.get("split") or {}).get("policy")),
                # the last as_of date the model was fitted on (None: not recorded)
                "train_end": json_safe(info.get("train_end")),
                "features": list(getattr(model, "feature_names", []) or []),
            }
        health_config = getattr(self.health, "active_config", None)
        return {
            "service": "churnml",
            "models": models,
            # outcomes declared by churnml that have no champion: their columns are null
            "outcomes_without_model": [o.name for o in OUTCOMES if o.name not in self.models],
            # the competing-risk model behind the *_probability_<d>d columns (None: null columns)
            "time_to_event": self._time_to_event_metadata(),
            "health": {
                "weights_version": str(getattr(self.health, "version", "default")),
                # where the weights come from: the weekly job's adopted version, the defaults,
                # or those embedded in a built Bento
                "weights_source": self.health_source,
                "weights": json_safe(getattr(health_config, "weights", None)),
                "dimensions": list(getattr(health_config, "dimension_names", []) or []),
            },
            "features": [
                {"name": f.name, "kind": f.kind, "minimum": f.minimum, "maximum": f.maximum,
                 "static": f.static, "description": f.description}
                for f in self.fields
            ],
            "max_accounts_per_call": MAX_ACCOUNTS,
        }


    def _time_to_event_metadata(self) -> dict[str, Any] | None:
        model = self.time_to_event
        if model is None:
            return None
        info = dict(getattr(model, "info", None) or {})
        extra = self.model_info.get(TIME_TO_EVENT, {})
        return {"name": model_name_of(TIME_TO_EVENT), "version": str(model.version),
                "trained_at": json_safe(extra.get("trained_at")),
                "model_card": extra.get("model_card"),
                "train_end": json_safe(info.get("train_end")),
                "test_metrics": json_safe(info.get("metrics") or {}),
                "features": list(getattr(model, "feature_names", []) or [])}


def load_predictor() -> Predictor:
    """A :class:`Predictor` over the ``champion`` of every outcome that has one in the MLflow
    registry (``churnml-churn``, ``churnml-expansion``, ...).

    Raises ``ModelNotFoundError`` when no outcome has a champion.
    """
    models, info = {}, {}
    for outcome in OUTCOMES:
        version = registry.champion_version(outcome.name)
        if version is None:
            continue
        models[outcome.name] = registry.load_version(outcome.name, str(version))
        created = next((v.get("created") for v in registry.list_versions(outcome.name)
                        if str(v.get("version")) == str(version)), None)
        info[outcome.name] = {"trained_at": created,
                              "model_card": registry.model_card_uri(outcome.name, str(version))}
    if not models:
        raise ModelNotFoundError(
            "no champion model for any outcome "
            f"({', '.join(o.model_name for o in OUTCOMES)}): run `churnml train` first")
    time_to_event = None
    version = registry.champion_version(TIME_TO_EVENT)
    if version is not None:
        time_to_event = registry.load_time_to_event(str(version))
        created = next((v.get("created") for v in registry.list_versions(TIME_TO_EVENT)
                        if str(v.get("version")) == str(version)), None)
        info[TIME_TO_EVENT] = {"trained_at": created,
                               "model_card": registry.model_card_uri(TIME_TO_EVENT, str(version))}
    return Predictor(models, model_info=info, time_to_event=time_to_event)
