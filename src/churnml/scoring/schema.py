"""The one output schema: every column ``churnml score`` writes and ``/predict`` returns,
declared once with its type, meaning and outcome.

Everything else derives from :func:`output_columns`: the column order of ``score_frame``, the
Arrow schema of ``scores.parquet`` (:func:`arrow_schema`), the pydantic response model of the
HTTP service (:func:`response_model`), the report's tables and the table in
``docs/design.md`` (:func:`markdown_table`, kept equal by a test). A column that is not
declared here is an error (:func:`arrow_schema` raises), never a silent float64.

Per-outcome columns are templates (``{outcome}_probability``) expanded for every outcome of
:data:`churnml.outcomes.OUTCOMES`, in that order, so a new outcome adds its columns without a
line here. The health score's dimensions (``health_<dimension>``) come from the health
configuration in force.

``SCHEMA_VERSION`` history:

- 1: churn and expansion only.
- 2: the outcome registry: ``contraction_probability``, ``contraction_reasons``,
  ``contraction_model_version``, ``mrr_at_risk_of_contraction``; a missing outcome model
  leaves its columns null; ``health_tier`` may be ``insufficient_data``;
  ``next_best_action.reason`` is never empty; gate and alert names say what they test
  (``docs/design.md``, "Changes in schema version 2").
- 3: this week's queue and the holdout: ``expected_value``, ``queue_status``, ``queue_rank``,
  ``queue_reason``, ``holdout``, ``policy_version`` after ``next_best_action``
  (``docs/design.md``, "This week's queue" and "Holdout").
- 4: two additions of one release.
  ``effect_source`` after ``expected_value``: ``prior`` or ``uplift`` (the play's effect
  measured by account replaces its prior once it has enough randomized data,
  ``docs/actions.md``). And when, not only whether (the time-to-event model ``churnml-time-to-event``,
  ``churnml.models.survival``): ``{outcome}_probability_{days}d`` for every outcome and each of
  ``outcomes.TIME_TO_EVENT_DAYS`` (30, 60, 90, 180) after the 90-day probabilities,
  ``expected_days_to_churn_within_year`` and ``time_to_event_model_version``; all null when
  that model has no champion. The 90-day ``{outcome}_probability`` columns stay the binary
  models' (``docs/models.md``, "Time to event in the output").
- 5: ``{outcome}_timing_reasons`` for every outcome after the ``{outcome}_reasons``: the
  time-to-event model's reasons for the outcome's hazard in the current period (TreeSHAP of
  its class against "no event", ``churnml.models.survival_explain``); empty without its
  champion (``docs/design.md``, "Timing reasons (schema version 5)").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

from churnml.outcomes import (
    EXPECTED_DAYS_COLUMN,
    OUTCOMES,
    TIME_TO_EVENT,
    TIME_TO_EVENT_DAYS,
    Outcome,
)

#: The version of the output contract written in every row (``schema_version``) and in the
#: parquet metadata (``churnml_schema_version``). The one definition.
SCHEMA_VERSION = 5

#: the time-to-event model's version column; its other columns are ``{outcome}_probability_{days}d``
#: for the days of ``churnml.outcomes.TIME_TO_EVENT_DAYS`` and the expected days to churn
TIME_TO_EVENT_VERSION_COLUMN = f"{TIME_TO_EVENT}_model_version"

ColumnType = Literal["string", "float64", "int32", "bool", "timestamp", "strings", "reasons",
                     "action"]


@dataclass(frozen=True)
class OutputColumn:
    """One output column. ``name`` may hold ``{outcome}`` (one column per outcome) or
    ``{dimension}`` (one per health dimension); ``type`` is one of :data:`ColumnType`:
    ``strings`` a list of text, ``reasons`` a list of reason records, ``action`` the next
    best action record. ``nullable``: the value may be null (the meaning says when)."""

    name: str
    type: ColumnType
    meaning: str
    per: Literal["row", "outcome", "outcome_days", "dimension"] = "row"
    nullable: bool = False
    #: the column comes from the time-to-event model (null without its champion)
    time_to_event: bool = False

    def expand(self, outcomes: Sequence[Outcome], dimensions: Sequence[str],
               days: Sequence[int] = TIME_TO_EVENT_DAYS) -> list[tuple[str, "OutputColumn", str | None]]:
        """``(name, column, outcome_name)`` for each concrete column this declaration gives
        (``outcome_days``: one per outcome and day, outcome by outcome)."""
        if self.per == "outcome":
            return [(self.name.format(outcome=o.name), self, o.name) for o in outcomes]
        if self.per == "outcome_days":
            return [(self.name.format(outcome=o.name, days=d), self, o.name)
                    for o in outcomes for d in days]
        if self.per == "dimension":
            return [(self.name.format(dimension=d), self, None) for d in dimensions]
        return [(self.name, self, None)]


#: The output columns, in order.
COLUMNS: tuple[OutputColumn, ...] = (
    OutputColumn("account_id", "string", "the account"),
    OutputColumn("as_of", "timestamp", "the scoring date: features see only rows before it"),
    OutputColumn("{outcome}_probability", "float64",
                 "calibrated probability of the outcome within the model's horizon; null when "
                 "the outcome has no champion model", per="outcome", nullable=True),
    OutputColumn("{outcome}_probability_{days}d", "float64",
                 "cumulative incidence from the time-to-event model: the probability that the "
                 "outcome is the account's first revenue event within that many days (churn, "
                 "contraction and expansion compete); null when churnml-time-to-event has no "
                 "champion", per="outcome_days", nullable=True, time_to_event=True),
    OutputColumn(EXPECTED_DAYS_COLUMN, "float64",
                 "expected days to churn, restricted to the next 360 days (an account that "
                 "does not churn in them counts 360); null when churnml-time-to-event has no "
                 "champion", nullable=True, time_to_event=True),
    OutputColumn("health_score", "float64", "rule-based health score, 0-100"),
    OutputColumn("health_tier", "string",
                 "thriving / healthy / needs_attention / at_risk / critical, or "
                 "insufficient_data when the known dimensions carry less than half the weight"),
    OutputColumn("health_{dimension}", "float64",
                 "the dimension's sub-score, 0-100; null when none of its signals is known",
                 per="dimension", nullable=True),
    OutputColumn("health_dimensions_used", "string",
                 "the dimensions with data, joined by '|'"),
    OutputColumn("{outcome}_reasons", "reasons",
                 "up to 3 reasons behind the probability: {feature, value, contribution, text}; "
                 "empty when the outcome has no champion model", per="outcome"),
    OutputColumn("{outcome}_timing_reasons", "reasons",
                 "up to 3 reasons behind the time-to-event model's hazard of the outcome in the "
                 "account's current 30-day period (why it may come soon): {feature, value, "
                 "contribution, text}, contribution in log-odds of the outcome against no "
                 "event (uncalibrated); empty when churnml-time-to-event has no champion",
                 per="outcome", time_to_event=True),
    OutputColumn("alerts", "strings", "this week's alerts (docs/health_score.md)"),
    OutputColumn("next_best_action", "action",
                 "{playbook, action, owner, severity, respond_within, reason_feature, reason, "
                 "expansion_blocked_by} (features/playbooks.yaml)"),
    OutputColumn("expected_value", "float64",
                 "MRR the play is expected to save or win: MRR x probability of the outcome "
                 "the play addresses (x its typical share) x the play's prior effect; null when "
                 "no action (the regular cadence) or the outcome has no model; with "
                 "effect_source uplift: MRR x typical share x the account's estimated effect",
                 nullable=True),
    OutputColumn("effect_source", "string",
                 "where expected_value's effect comes from: prior (the playbook's "
                 "prior_effect) or uplift (the play's uplift model, fitted on matured "
                 "randomized holdout outcomes; weekly job only, docs/actions.md); null when "
                 "expected_value is null", nullable=True),
    OutputColumn("queue_status", "string",
                 "queued (in this week's queue of the action's owner) / watch (a candidate "
                 "beyond the owner's capacity) / null (no action this week; always null from "
                 "/predict: the queue is book-wide)", nullable=True),
    OutputColumn("queue_rank", "int32",
                 "position in the owner's priority order this week (new critical signals "
                 "first, then expected value, ties by account_id; holdouts included); null "
                 "when no action and from /predict", nullable=True),
    OutputColumn("queue_reason", "string",
                 "why the row is queued, held out or watched, and what the play is expected "
                 "to save, in words; null when no action", nullable=True),
    OutputColumn("holdout", "bool",
                 "true: recommended but deliberately not worked, to measure the play (does not "
                 "use capacity); null when no action and from /predict", nullable=True),
    OutputColumn("policy_version", "string",
                 "the playbook policy in force (a hash of features/playbooks.yaml apart from "
                 "capacity); with account and playbook it decides the holdout"),
    OutputColumn("{outcome}_model_version", "string",
                 "the registered model version that scored the outcome; null without one",
                 per="outcome", nullable=True),
    OutputColumn(TIME_TO_EVENT_VERSION_COLUMN, "string",
                 "the registered churnml-time-to-event version behind the *_probability_<d>d "
                 "columns; null without a champion", nullable=True, time_to_event=True),
    OutputColumn("health_weights_version", "string", "the health weights in force"),
    OutputColumn("mrr", "float64", "MRR just before as_of (0 when unknown)"),
    # the outcomes' revenue columns follow, in outcome order (Outcome.value_column)
    OutputColumn("value_tier", "string", "foundation / core / vip by annual revenue",
                 nullable=True),
    OutputColumn("lifecycle_phase", "string", "onboarding / activation / expansion / advocacy",
                 nullable=True),
    OutputColumn("rfm_segment", "string", "recency-frequency-monetary segment", nullable=True),
    OutputColumn("expansion_readiness", "string",
                 "ready_now / ready_soon / needs_nurture / not_ready"),
    OutputColumn("schema_version", "int32", "the version of this contract"),
)

_VALUE_AFTER = "mrr"


def _value_columns(outcomes: Sequence[Outcome]) -> list[tuple[str, OutputColumn, str | None]]:
    return [(o.value_column, OutputColumn(o.value_column, "float64", o.value_meaning,
                                          nullable=True), o.name) for o in outcomes]


def declared_columns(dimensions: Sequence[str], outcomes: Sequence[Outcome] = OUTCOMES,
                     ) -> list[tuple[str, OutputColumn, str | None]]:
    """``(name, declaration, outcome)`` of every output column, in order."""
    out: list[tuple[str, OutputColumn, str | None]] = []
    for column in COLUMNS:
        out.extend(column.expand(outcomes, dimensions))
        if column.name == _VALUE_AFTER:
            out.extend(_value_columns(outcomes))
    return out


#: The output columns an uplift model of the queue reads (``churnml.models.uplift``): what the
#: weekly job knows of an account before the play (probabilities, health, MRR).
UPLIFT_FEATURES = ("{outcome}_probability", "health_score", "health_{dimension}", "mrr")


def uplift_feature_columns(dimensions: Sequence[str],
                           outcomes: Sequence[Outcome] = OUTCOMES) -> list[str]:
    """The names of :data:`UPLIFT_FEATURES` for these dimensions and outcomes, in order."""
    out: list[str] = []
    for column in COLUMNS:
        if column.name in UPLIFT_FEATURES:
            out.extend(name for name, _, _ in column.expand(outcomes, dimensions))
    return out


def output_columns(dimensions: Sequence[str], outcomes: Sequence[Outcome] = OUTCOMES) -> list[str]:
    """The output column names for a health score with these dimensions, in order."""
    return [name for name, _, _ in declared_columns(dimensions, outcomes)]


def time_to_event_columns(outcomes: Sequence[Outcome] = OUTCOMES) -> list[str]:
    """The columns the time-to-event model fills (null, or no reasons, without its
    champion), in order: its floats (:func:`time_to_event_floats`, which
    ``SurvivalModel.predict`` gives), its reasons (:func:`time_to_event_reason_columns`) and
    its version."""
    return [name for name, col, _ in declared_columns((), outcomes) if col.time_to_event]


def time_to_event_floats(outcomes: Sequence[Outcome] = OUTCOMES) -> list[str]:
    """The time-to-event model's float columns (incidences, expected days), in order."""
    return [name for name, col, _ in declared_columns((), outcomes)
            if col.time_to_event and col.type == "float64"]


def time_to_event_reason_columns(outcomes: Sequence[Outcome] = OUTCOMES) -> list[str]:
    """The time-to-event model's reason columns, ``{outcome}_timing_reasons`` in outcome order."""
    return [name for name, col, _ in declared_columns((), outcomes)
            if col.time_to_event and col.type == "reasons"]


def arrow_type(kind: ColumnType) -> Any:
    """The Arrow type of a column type."""
    import pyarrow as pa

    reason = pa.struct([("feature", pa.string()), ("value", pa.float64()),
                        ("contribution", pa.float64()), ("text", pa.string())])
    action = pa.struct([
        ("playbook", pa.string()), ("action", pa.string()), ("owner", pa.string()),
        ("severity", pa.string()), ("respond_within", pa.string()),
        ("reason_feature", pa.string()), ("reason", pa.string()),
        ("expansion_blocked_by", pa.list_(pa.string())),
    ])
    return {
        "string": pa.string(), "float64": pa.float64(), "int32": pa.int32(),
        "bool": pa.bool_(), "timestamp": pa.timestamp("ns"), "strings": pa.list_(pa.string()),
        "reasons": pa.list_(reason), "action": action,
    }[kind]


def arrow_schema(dimensions: Sequence[str], columns: Sequence[str] | None = None,
                 outcomes: Sequence[Outcome] = OUTCOMES):
    """The fixed Arrow schema of ``scores.parquet``; ``columns`` (a frame's columns) must all
    be declared: an undeclared one raises ``ValueError`` naming it."""
    import pyarrow as pa

    declared = declared_columns(dimensions, outcomes)
    if columns is not None:
        known = {name for name, _, _ in declared}
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise ValueError(f"output columns {unknown} are not declared in "
                             "churnml.scoring.schema.COLUMNS")
    fields = [pa.field(name, arrow_type(col.type)) for name, col, _ in declared]
    return pa.schema(fields, metadata={"churnml_schema_version": str(SCHEMA_VERSION)})


def response_model(dimensions: Sequence[str], outcomes: Sequence[Outcome] = OUTCOMES) -> Any:
    """The pydantic model of one ``/predict`` row, with a field per output column (``as_of``
    as ``YYYY-MM-DD`` text, as the service writes it)."""
    from pydantic import BaseModel, ConfigDict, Field, create_model

    class Reason(BaseModel):
        model_config = ConfigDict(extra="forbid")
        feature: str
        value: float | None = None
        contribution: float
        text: str

    class NextBestAction(BaseModel):
        model_config = ConfigDict(extra="forbid")
        playbook: str
        action: str
        owner: str
        severity: str
        respond_within: str
        reason_feature: str
        reason: str = Field(min_length=1)
        expansion_blocked_by: list[str]

    python: dict[str, Any] = {
        "string": str, "float64": float, "int32": int, "bool": bool, "timestamp": str,
        "strings": list[str], "reasons": list[Reason], "action": NextBestAction,
    }
    fields: dict[str, Any] = {}
    for name, col, _ in declared_columns(dimensions, outcomes):
        kind = python[col.type]
        annotation = kind | None if col.nullable else kind
        fields[name] = (annotation, Field(description=col.meaning))
    config = ConfigDict(extra="forbid", protected_namespaces=(), title="AccountPrediction")
    return create_model("AccountPrediction", __config__=config, **fields)


def markdown_table(dimensions: Sequence[str] = ("<dimension>",),
                   outcomes: Sequence[Outcome] = OUTCOMES) -> str:
    """The output columns as a markdown table (``docs/design.md`` holds this table; a test
    keeps them equal): ``python -c "from churnml.scoring.schema import markdown_table;
    print(markdown_table())"``."""
    lines = ["| column | type | outcome | meaning |", "|---|---|---|---|"]
    for name, col, outcome in declared_columns(dimensions, outcomes):
        kind = col.type + (" (nullable)" if col.nullable else "")
        lines.append(f"| `{name}` | {kind} | {outcome or ''} | {col.meaning.replace('|', '/')} |")
    return "\n".join(lines)
