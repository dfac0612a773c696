"""Payload and response models of the HTTP service (pydantic), and the error messages.

The known fields of an account record are exactly the columns ``churnml features`` writes:
``account_id``, ``as_of``, every feature of the catalog, and the static attributes (extra
``accounts`` columns such as ``plan``) the champion models were trained with. Everything else is
an unknown field and is refused, so a typo never silently becomes a missing feature.

Rules, checked by pydantic before anything is scored:

- numbers are JSON numbers (not strings, not booleans), finite; ``null`` or an absent field means
  "missing" (the models handle missing values);
- counts, windows in days, money and rates are ``>= 0``; NPS values lie in ``0..10``, NPS changes
  in ``-10..10``, RFM scores in ``1..5``, flags and shares in ``0..1`` (see :data:`BOUNDS`);
- categorical features and static attributes are strings (numbers are accepted and read as
  their text, as ``churnml features`` reads integer ids);
- one call carries between 1 and :data:`MAX_ACCOUNTS` accounts.

Every validation error names the field and the account: its position in the list and its
``account_id``, e.g. ``accounts[3] (account_id 'A-0042'): field 'nps_latest': Input should be
less than or equal to 10 (got 12)``. BentoML turns them into HTTP 400 with ``detail[].loc``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any, Iterable, Literal, Mapping

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WrapValidator,
    create_model,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from churnml.data.validation import normalise_id

MAX_ACCOUNTS = 1000
"""Most accounts accepted in one ``/predict`` call (and per ``/predict_history`` call)."""

MAX_HISTORY_ROWS = 200_000
"""Most rows per table accepted in one ``/predict_history`` call."""

IDENTITY_FIELDS = ("account_id", "as_of")

# as_of must fit pandas' nanosecond timestamps (1677-2262) with room for windows and horizons.
EARLIEST_AS_OF = dt.date(1900, 1, 1)
LATEST_AS_OF = dt.date(2261, 12, 31)
AsOf = Annotated[dt.date, Field(ge=EARLIEST_AS_OF, le=LATEST_AS_OF,
                                description="YYYY-MM-DD: features see only rows before it")]

# Allowed ranges of catalog features, by name. Features not listed here are counts, windows in
# days, money or ratios to a baseline: ``>= 0`` (:data:`DEFAULT_MINIMUM`). Signed features
# (trends, changes, days to a renewal that may lie in the past) have no bound.
BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "nps_latest": (0, 10),
    "nps_mean_180d": (0, 10),
    "nps_change": (-10, 10),
    "nps_detractor": (0, 1),
    "nps_promoter": (0, 1),
    "usage_drop_50pct": (0, 1),
    "support_spike_then_silence": (0, 1),
    "meeting_attendance_rate_90d": (0, 1),
    "email_reply_rate_90d": (0, 1),
    "rfm_recency": (1, 5),
    "rfm_frequency": (1, 5),
    "rfm_monetary": (1, 5),
    "mrr_change_90d": (-1, None),  # relative change: MRR cannot fall below 0
    "usage_trend_8w": (None, None),
    "days_to_renewal": (None, None),
}
DEFAULT_MINIMUM = 0.0
# Aggregations whose values may be negative (a slope, a difference, days until a date that may
# have passed); every other numeric aggregation counts, sums, averages or measures time since.
SIGNED_AGGREGATIONS = frozenset({"trend", "change", "relative_change", "days_until"})
# Catalog entries that are not columns of the feature frame (the catch-all for extra
# ``accounts`` columns: those come from the models' static attributes instead).
NOT_A_COLUMN_AGGREGATIONS = frozenset({"static_other"})


@dataclass(frozen=True)
class PayloadField:
    """One known field of an account record.

    ``kind`` is ``numeric`` (float, ``null`` = missing) or ``categorical`` (string);
    ``minimum``/``maximum`` are inclusive bounds (``None`` = unbounded).
    """

    name: str
    kind: Literal["numeric", "categorical"]
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    static: bool = False


def catalog_field(name: str, kind: str, description: str = "",
                  aggregation: str = "") -> PayloadField:
    """A catalog feature as a payload field, with its bounds: :data:`BOUNDS` by name, else
    unbounded for :data:`SIGNED_AGGREGATIONS`, else ``>= 0``."""
    kind = "categorical" if kind == "categorical" else "numeric"
    if kind == "categorical":
        return PayloadField(name, "categorical", description)
    default = (None, None) if aggregation in SIGNED_AGGREGATIONS else (DEFAULT_MINIMUM, None)
    low, high = BOUNDS.get(name, default)
    return PayloadField(name, "numeric", description, low, high)


def static_field(name: str, kind: str) -> PayloadField:
    """A static attribute (an extra ``accounts`` column): no bounds, its meaning is the user's."""
    field_kind: Literal["numeric", "categorical"] = (
        "categorical" if kind == "categorical" else "numeric")
    return PayloadField(name, field_kind, f"static attribute '{name}' of the account", static=True)


def _annotation(spec: PayloadField) -> Any:
    if spec.kind == "categorical":
        return Annotated[str | None, Field(default=None, max_length=200,
                                           description=spec.description or None)]
    return Annotated[
        float | None,
        Field(default=None, ge=spec.minimum, le=spec.maximum, strict=True, allow_inf_nan=False,
              description=spec.description or None),
    ]


def _account_id(value: Any) -> Any:
    """``account_id`` by the data contract's one id rule (``churnml.data.validation.
    normalise_ids``: stripped, integral numbers as their exact integer text), so a request
    names the same account as the files do; a blank id is refused here, before scoring."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        normalised = normalise_id(value)
        if normalised is None:
            raise ValueError("account_id must not be empty or blank")
        return normalised
    return value


def account_record_model(fields: Iterable[PayloadField],
                         name: str = "AccountFeatures") -> type[BaseModel]:
    """The pydantic model of one account record: identity fields plus ``fields``.

    ``account_id`` (string, required), ``as_of`` (ISO date, required), then every field,
    optional. Unknown fields are refused (``extra="forbid"``).
    """
    definitions: dict[str, Any] = {
        "account_id": (Annotated[str, BeforeValidator(_account_id),
                                 Field(min_length=1, max_length=200,
                                       description="the account's identifier")], ...),
        "as_of": (AsOf, ...),
    }
    for spec in fields:
        if spec.name in definitions:
            continue
        definitions[spec.name] = (_annotation(spec), None)
    config = ConfigDict(extra="forbid", coerce_numbers_to_str=True,
                        title=name, protected_namespaces=())
    return create_model(name, __config__=config, **definitions)


# --- error messages that name the account -----------------------------------------------------

def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _rephrase(error: ErrorDetails, collection: str) -> str:
    loc = error["loc"]
    kind = error["type"]
    if kind == "extra_forbidden":
        return (f"unknown field {_short(str(loc[-1]), 80)}: not a feature of the catalog nor a "
                f"static attribute of the models (GET /metadata lists the known fields)")
    if kind == "too_long" and not loc:
        return (f"{collection}: at most {error.get('ctx', {}).get('max_length', MAX_ACCOUNTS)} "
                f"accounts per call")
    if kind == "too_short" and not loc:
        return f"{collection}: the list is empty; send at least one account"
    message = error["msg"]
    if "input" in error and kind not in ("missing",):
        message = f"{message} (got {_short(error['input'])})"
    return message


def _account_label(items: Any, index: int, collection: str) -> str:
    account_id = None
    if isinstance(items, list) and 0 <= index < len(items) and isinstance(items[index], dict):
        account_id = items[index].get("account_id")
    if account_id is None:
        return f"{collection}[{index}] (no account_id)"
    return f"{collection}[{index}] (account_id {_short(account_id, 80)})"


def named_account_errors(collection: str = "accounts"):
    """A pydantic wrap validator for a list of account records that rewrites each error message
    to name the account (index and ``account_id``) and the field; ``loc`` is kept unchanged."""

    def validate(value: Any, handler):
        try:
            return handler(value)
        except ValidationError as exc:
            details: list[InitErrorDetails] = []
            for error in exc.errors(include_url=False):
                loc = tuple(error["loc"])
                text = _rephrase(error, collection)
                if loc and isinstance(loc[0], int):
                    field = ".".join(str(p) for p in loc[1:])
                    where = _account_label(value, loc[0], collection)
                    text = f"{where}: field '{field}': {text}" if field else f"{where}: {text}"
                elif not text.startswith(collection):
                    text = f"{collection}: {text}"
                details.append(InitErrorDetails(
                    type=PydanticCustomError("invalid_account", text),
                    loc=loc, input=error.get("input")))
            raise ValidationError.from_exception_data(collection, details) from None

    return WrapValidator(validate)


def accounts_annotation(record_model: type[BaseModel], max_accounts: int = MAX_ACCOUNTS) -> Any:
    """The type of the ``accounts`` field: 1 to ``max_accounts`` records, errors named."""
    # a type built at run time for pydantic: mypy cannot check a type made from a variable
    return Annotated[
        list[record_model],  # type: ignore[valid-type]
        Field(min_length=1, max_length=max_accounts,
              description=f"1 to {max_accounts} account records, as `churnml features` writes "
                          "them; missing features may be left out or null"),
        named_account_errors("accounts"),
    ]


def validation_error(title: str, problems: list[tuple[tuple, str]]) -> ValidationError:
    """A pydantic ``ValidationError`` from ``(loc, message)`` pairs (BentoML answers 400)."""
    return ValidationError.from_exception_data(title, [
        InitErrorDetails(type=PydanticCustomError("invalid_input", message), loc=loc, input=None)
        for loc, message in problems
    ])


# --- responses --------------------------------------------------------------------------------

def prediction_model(dimensions: Iterable[str]) -> type[BaseModel]:
    """The pydantic model of one ``/predict`` row: the one output schema
    (``churnml.scoring.schema``) for a health score with these dimensions."""
    from churnml.scoring.schema import response_model

    return response_model(list(dimensions))


class ResponseError(RuntimeError):
    """A scored row that does not match the output schema: a bug of the service (HTTP 500),
    never the caller's fault."""


class PredictionsJSON:
    """The body of a ``/predict`` (and ``/predict_history``) answer: the rows checked against
    the response model, as JSON bytes.

    Why not let BentoML serialize the returned list: its path builds a root model of the
    list, dumps it to Python objects, serializes that and streams it in chunks (three ASGI
    messages, chunked transfer encoding), about 0.3-0.5 ms per one-account answer on a busy
    2-core machine; validating and dumping with one ``TypeAdapter`` takes about 0.07-0.12 ms
    for the same bytes of JSON (``benchmarks/README.md``, session 5). The check is kept:
    a row that breaks the schema (an unknown column, an action without a reason) is a
    :class:`ResponseError`, never sent."""

    def __init__(self, row_model: type[BaseModel]) -> None:
        self.row_model = row_model
        self.adapter: TypeAdapter[list[Any]] = TypeAdapter(list[row_model])  # type: ignore[valid-type]

    def __call__(self, rows: list[dict[str, Any]]) -> bytes:
        try:
            checked = self.adapter.validate_python(rows)
        except ValidationError as exc:
            first: Mapping[str, Any] = exc.errors()[0] if exc.error_count() else {}
            raise ResponseError(
                f"a scored row does not match the output schema ({exc.error_count()} "
                f"problem(s); first at {first.get('loc')}: {first.get('msg')})") from None
        return self.adapter.dump_json(checked)


Scalar = str | float | int | bool | None
TableRows = Annotated[list[dict[str, Scalar]], Field(max_length=MAX_HISTORY_ROWS)]


class HistoryTables(BaseModel):
    """Rows of the data contract's tables (``docs/data_contract.md``), as JSON objects."""

    model_config = ConfigDict(extra="forbid")

    accounts: Annotated[list[dict[str, Scalar]], Field(min_length=1, max_length=MAX_ACCOUNTS)]
    mrr_changes: Annotated[list[dict[str, Scalar]], Field(min_length=1,
                                                          max_length=MAX_HISTORY_ROWS)]
    usage_events: TableRows | None = None
    invoices: TableRows | None = None
    nps_responses: TableRows | None = None
    touchpoints: TableRows | None = None
