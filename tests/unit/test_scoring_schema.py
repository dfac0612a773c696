"""The one output schema (churnml.scoring.schema) and the outcome registry (churnml.outcomes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from churnml.errors import UsageError
from churnml.outcomes import OUTCOME_NAMES, OUTCOMES, get_outcome
from churnml.scoring.schema import (
    COLUMNS,
    SCHEMA_VERSION,
    arrow_schema,
    markdown_table,
    output_columns,
    response_model,
)

DESIGN = Path(__file__).resolve().parents[2] / "docs" / "design.md"
START, END = "<!-- output-schema:start -->", "<!-- output-schema:end -->"


def test_outcome_registry_names_everything_derived():
    assert OUTCOME_NAMES == ("churn", "expansion", "contraction")
    contraction = get_outcome("contraction")
    assert contraction.model_name == "churnml-contraction"
    assert (contraction.probability_column, contraction.reasons_column,
            contraction.version_column) == ("contraction_probability", "contraction_reasons",
                                            "contraction_model_version")
    assert [o.value_column for o in OUTCOMES] == [
        "mrr_at_risk", "expected_expansion_mrr", "mrr_at_risk_of_contraction"]
    assert [o.health_direction for o in OUTCOMES] == [-1, 1, -1]
    assert [o.label_rule for o in OUTCOMES] == [
        "mrr_reaches_zero", "mrr_rises", "mrr_falls_above_zero"]
    with pytest.raises(UsageError, match="upsell"):
        get_outcome("upsell")


def test_output_columns_have_every_outcome_and_dimension():
    cols = output_columns(["usage", "engagement"])
    for o in OUTCOMES:
        for name in (o.probability_column, o.reasons_column, o.version_column, o.value_column):
            assert cols.count(name) == 1, name
    assert cols[:2] == ["account_id", "as_of"] and cols[-1] == "schema_version"
    assert cols.index("churn_probability") < cols.index("expansion_probability") \
        < cols.index("contraction_probability")
    assert "health_usage" in cols and "health_engagement" in cols
    assert cols.index("mrr") < cols.index("mrr_at_risk")
    assert SCHEMA_VERSION == 5


def test_arrow_schema_refuses_an_undeclared_column():
    dims = ["usage"]
    schema = arrow_schema(dims)
    assert schema.names == output_columns(dims)
    assert schema.metadata[b"churnml_schema_version"] == str(SCHEMA_VERSION).encode()
    assert arrow_schema(dims, columns=output_columns(dims)).names == schema.names
    with pytest.raises(ValueError, match="bogus"):
        arrow_schema(dims, columns=["account_id", "as_of", "bogus"])


def test_response_model_has_a_field_per_column_and_requires_a_reason():
    model = response_model(["usage"])
    assert list(model.model_fields) == output_columns(["usage"])
    action = model.model_fields["next_best_action"].annotation
    with pytest.raises(Exception, match="reason"):
        action(playbook="keep_warm", action="a", owner="CSM", severity="low",
               respond_within="soon", reason_feature="", reason="", expansion_blocked_by=[])


def test_columns_declared_once_with_a_meaning():
    names = [c.name for c in COLUMNS]
    assert len(names) == len(set(names))
    assert all(c.meaning for c in COLUMNS)


def test_docs_design_table_equals_the_declared_schema():
    text = DESIGN.read_text(encoding="utf-8")
    if START not in text or END not in text:
        pytest.skip(f"docs/design.md has no {START} ... {END} markers yet")
    between = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert between == markdown_table(), (
        "docs/design.md's output table is out of date: regenerate it with "
        "python -c 'from churnml.scoring.schema import markdown_table; print(markdown_table())'")
    assert re.search(r"\| `contraction_probability` \|", between)


def test_time_to_event_columns_derive_from_the_registry_and_the_model_days():
    from churnml.models import survival as S
    from churnml.outcomes import TIME_TO_EVENT_DAYS
    from churnml.scoring.schema import (
        TIME_TO_EVENT_VERSION_COLUMN,
        time_to_event_columns,
        time_to_event_floats,
        time_to_event_reason_columns,
    )

    assert TIME_TO_EVENT_DAYS == S.REPORT_DAYS == (30, 60, 90, 180)
    expected = [S.incidence_column(o.name, d) for o in OUTCOMES for d in S.REPORT_DAYS]
    expected += [S.EXPECTED_DAYS_COLUMN, TIME_TO_EVENT_VERSION_COLUMN]
    timing = [o.timing_reasons_column for o in OUTCOMES]
    assert timing == ["churn_timing_reasons", "expansion_timing_reasons",
                      "contraction_timing_reasons"]
    assert time_to_event_floats() == expected[:-1]
    assert time_to_event_reason_columns() == timing
    assert time_to_event_columns() == expected[:-1] + timing + expected[-1:]
    cols = output_columns(["usage"])
    # after the 90-day probabilities, in outcome order; the version beside the others
    first = cols.index("churn_probability_30d")
    assert cols[first:first + len(expected) - 1] == expected[:-1]
    assert cols.index("contraction_probability") < first
    assert cols.index("contraction_model_version") + 1 == cols.index(TIME_TO_EVENT_VERSION_COLUMN)
    # the timing reasons right after the outcome models' reasons, in outcome order
    last_reasons = cols.index("contraction_reasons")
    assert cols[last_reasons + 1:last_reasons + 1 + len(timing)] == timing
    # a fourth outcome would add its four columns without a line in the schema
    extra = OUTCOMES + (OUTCOMES[0].__class__(
        name="upsell", title="Upsell", label_rule="mrr_rises", health_direction=1,
        value_column="expected_upsell_mrr", value_meaning="m", is_risk=False),)
    assert [c for c in time_to_event_columns(extra) if c.startswith("upsell_")] == [
        f"upsell_probability_{d}d" for d in S.REPORT_DAYS] + ["upsell_timing_reasons"]
    # every one is nullable float (the version: nullable text) in Arrow and pydantic
    schema = arrow_schema(["usage"])
    model = response_model(["usage"])
    import pyarrow as pa

    for name in expected:
        kind = pa.string() if name == TIME_TO_EVENT_VERSION_COLUMN else pa.float64()
        assert schema.field(name).type == kind
        assert model.model_fields[name].is_required() and \
            type(None) in getattr(model.model_fields[name].annotation, "__args__", ())
    # the timing reasons: lists of reason records, never null (empty without the model)
    for name in timing:
        assert schema.field(name).type == schema.field("churn_reasons").type
        assert model.model_fields[name].annotation == model.model_fields["churn_reasons"].annotation
