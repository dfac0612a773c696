"""The outcome registry: every outcome churnml predicts is declared once, here.

An outcome is something that happens to an account's revenue within a horizon after ``as_of``,
read from ``mrr_changes`` alone (DESIGN.md, "Observations, labels, leakage"). Training, the
model registry, the weekly job, the Spark engine, the HTTP schema and the report all take
their lists from :data:`OUTCOMES`; nothing else names an outcome. Adding a fourth outcome is
one :class:`Outcome` here, a ``models/<name>.yaml`` and (optionally) catalog directions.

Label rules (``label_rule``), each on the revenue history in ``[as_of, as_of + horizon)``:

- ``mrr_reaches_zero``: the account's MRR reaches 0 (churn);
- ``mrr_rises``: MRR rises from a value above 0, by at least the config's
  ``expansion_min_share`` of the previous MRR, not counting rows whose reason is
  ``price_increase`` (expansion);
- ``mrr_falls_above_zero``: MRR falls from a value above 0 to a smaller value still above 0
  (contraction: fewer seats, a lower plan, a discount). A fall to 0 is churn, not contraction.

The event MRR (``event_mrr`` of a training row, what the outcome moves when it happens) follows
the rule: the MRR at as_of for churn, the sum of the rises for expansion, the sum of the falls
for contraction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from churnml.errors import UsageError

LabelRule = Literal["mrr_reaches_zero", "mrr_rises", "mrr_falls_above_zero"]
LABEL_RULES: tuple[str, ...] = ("mrr_reaches_zero", "mrr_rises", "mrr_falls_above_zero")


@dataclass(frozen=True)
class Outcome:
    """One predicted outcome. Derived names (``probability_column`` ...) are properties so that
    they cannot disagree with ``name``."""

    name: str
    #: what a CS manager reads (the report, the model card, ``/metadata``)
    title: str
    label_rule: LabelRule
    #: +1 when a higher health score means the outcome is *more* likely (expansion), -1 when
    #: less likely (churn, contraction): the health score baseline ranks by ``direction * score``
    health_direction: int
    #: the revenue column this outcome's probability turns into, and what it means
    value_column: str
    value_meaning: str
    #: True for outcomes a CS team works to prevent (risk plays), False for ones it works to win
    is_risk: bool
    default_horizon_days: int = 90

    @property
    def model_name(self) -> str:
        """The registered model and the training experiment: ``churnml-<name>``."""
        return f"churnml-{self.name}"

    @property
    def probability_column(self) -> str:
        return f"{self.name}_probability"

    @property
    def reasons_column(self) -> str:
        return f"{self.name}_reasons"

    @property
    def timing_reasons_column(self) -> str:
        """The time-to-event model's reasons for this outcome's hazard (``churn_timing_reasons``)."""
        return f"{self.name}_timing_reasons"

    @property
    def version_column(self) -> str:
        return f"{self.name}_model_version"

    @property
    def config_file(self) -> str:
        """The default configuration's file name under the models config folder."""
        return f"{self.name}.yaml"


OUTCOMES: tuple[Outcome, ...] = (
    Outcome(
        name="churn",
        title="Churn",
        label_rule="mrr_reaches_zero",
        health_direction=-1,
        value_column="mrr_at_risk",
        value_meaning="churn_probability x mrr: the MRR expected to be lost to churn",
        is_risk=True,
    ),
    Outcome(
        name="expansion",
        title="Expansion",
        label_rule="mrr_rises",
        health_direction=+1,
        value_column="expected_expansion_mrr",
        value_meaning=("expansion_probability x mrr x typical_expansion_share (playbooks.yaml): "
                       "the MRR expected to be won by expansion"),
        is_risk=False,
    ),
    Outcome(
        name="contraction",
        title="Contraction",
        label_rule="mrr_falls_above_zero",
        health_direction=-1,
        value_column="mrr_at_risk_of_contraction",
        value_meaning=("contraction_probability x mrr x typical_contraction_share "
                       "(playbooks.yaml): the MRR expected to be lost to downgrades"),
        is_risk=True,
    ),
)

OUTCOME_NAMES: tuple[str, ...] = tuple(o.name for o in OUTCOMES)
_BY_NAME = {o.name: o for o in OUTCOMES}
_BY_MODEL_NAME = {o.model_name: o for o in OUTCOMES}

for _o in OUTCOMES:  # a wrong declaration is a programming error: fail at import
    if _o.label_rule not in LABEL_RULES or _o.health_direction not in (-1, 1):
        raise ValueError(f"outcome {_o.name!r}: bad label_rule or health_direction")


def get_outcome(name: str) -> Outcome:
    """The outcome called ``name``; :class:`UsageError` listing the known ones otherwise."""
    outcome = _BY_NAME.get(name)
    if outcome is None:
        raise UsageError(f"The 'target' parameter must be one of {list(OUTCOME_NAMES)}. "
                         f"Got {name!r}.")
    return outcome


def outcome_of_model(model_name: str) -> Outcome | None:
    """The outcome of a registered model name (``churnml-churn``), None for other names."""
    return _BY_MODEL_NAME.get(model_name)


#: the competing-risk model over every outcome (``churnml train --target time_to_event``):
#: not an outcome of its own but a model of when each of them happens first
#: (``churnml.models.survival``); registered as ``churnml-time-to-event``
TIME_TO_EVENT = "time_to_event"
#: the days the time-to-event model reports each outcome's cumulative incidence at (ends of its
#: 30-day periods 1, 2, 3 and 6): the output columns ``{outcome}_probability_{days}d``
#: (``churnml.scoring.schema``; ``churnml.models.survival.REPORT_DAYS``)
TIME_TO_EVENT_DAYS: tuple[int, ...] = (30, 60, 90, 180)
#: the time-to-event model's restricted mean days to churn within a year (an output column)
EXPECTED_DAYS_COLUMN = "expected_days_to_churn_within_year"
#: every ``--target`` of ``churnml train``: one model per outcome, then the time-to-event model
MODEL_TARGETS: tuple[str, ...] = OUTCOME_NAMES + (TIME_TO_EVENT,)


def model_name_of(target: str) -> str:
    """The registered model of a training target: the outcome's ``model_name``, or
    ``churnml-time-to-event``."""
    if target == TIME_TO_EVENT:
        return "churnml-" + TIME_TO_EVENT.replace("_", "-")
    return get_outcome(target).model_name
