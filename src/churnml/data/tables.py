"""The data contract's tables, declared once.

In memory a book of business is a :class:`Book`: a dict of pandas DataFrames, one per table,
after validation, with these normalised dtypes (every module relies on them):

- ``account_id``: string (integer ids are read as strings);
- timestamps / dates: ``datetime64[ns]``, timezone-naive, meaning UTC (aware values are
  converted to UTC and made naive; naive values are taken as UTC);
- numbers: ``float64`` (``nps_responses.score`` is ``int64``);
- free text / categories: string.

Rows of every table are sorted by (account_id, time column) after loading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

Kind = Literal["id", "timestamp", "number", "integer", "string"]


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: Kind
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[ColumnSpec, ...]
    time_column: str | None
    required: bool = False
    description: str = ""

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> ColumnSpec | None:
        return next((c for c in self.columns if c.name == name), None)


def _c(name: str, kind: Kind, required: bool = False, description: str = "") -> ColumnSpec:
    return ColumnSpec(name, kind, required, description)


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "accounts",
            (
                _c("account_id", "id", True, "unique account identifier"),
                _c("created_at", "timestamp", True, "date the account became a customer"),
                _c("plan", "string", description="plan / package name"),
                _c("segment", "string", description="customer segment (SMB, mid-market, ...)"),
            ),
            time_column=None,
            required=True,
            description="one row per account; extra columns become static features",
        ),
        TableSpec(
            "mrr_changes",
            (
                _c("account_id", "id", True),
                _c("effective_date", "timestamp", True, "date the new MRR takes effect"),
                _c("mrr", "number", True, "MRR after the change (>= 0)"),
                _c("reason", "string", description="new, renewal, upsell, cross_sell, seats, ..."),
                _c("term_end", "timestamp", description="end of the contract term in force"),
            ),
            time_column="effective_date",
            required=True,
            description="the revenue history",
        ),
        TableSpec(
            "usage_events",
            (
                _c("account_id", "id", True),
                _c("ts", "timestamp", True),
                _c("event", "string", True, "event / feature name; 'login' counts as a login"),
                _c("user_id", "string"),
                _c("quantity", "number", description=">= 0, default 1"),
            ),
            time_column="ts",
        ),
        TableSpec(
            "invoices",
            (
                _c("account_id", "id", True),
                _c("invoice_id", "string", True),
                _c("due_date", "timestamp", True),
                _c("amount", "number", True, ">= 0"),
                _c("paid_at", "timestamp", description="null = unpaid"),
            ),
            time_column="due_date",
        ),
        TableSpec(
            "nps_responses",
            (
                _c("account_id", "id", True),
                _c("ts", "timestamp", True),
                _c("score", "integer", True, "0-10"),
                _c("respondent_id", "string"),
                _c("comment", "string"),
            ),
            time_column="ts",
        ),
        TableSpec(
            "touchpoints",
            (
                _c("account_id", "id", True),
                _c("ts", "timestamp", True),
                _c("kind", "string", True),
                _c("value", "number"),
                _c("user_id", "string"),
            ),
            time_column="ts",
        ),
        TableSpec(
            "cs_actions",
            (
                _c("account_id", "id", True),
                _c("date", "timestamp", True, "when the action was taken"),
                _c("playbook", "string", True,
                   "the play worked: a playbook of features/playbooks.yaml"),
                _c("owner", "string", description="who worked it (CSM, CS manager, ...)"),
                _c("channel", "string", description="call, email, meeting, in-app, ..."),
                _c("outcome_note", "string", description="what came of it, in words"),
            ),
            time_column="date",
            description=("the CS team's log of actions taken (optional): what was worked, to "
                         "measure the plays against the holdout; never a feature"),
        ),
    )
}

#: Tables that record what the CS team did, not what the customer did: no feature reads them
#: (the holdout's measurement would otherwise leak into the model it measures).
ACTION_TABLES = ("cs_actions",)


def playbook_names(path=None) -> frozenset[str]:
    """The playbook names of ``features/playbooks.yaml`` (``cs_actions.playbook`` must be
    one). Only the names are read here; ``churnml.scoring.actions.load_playbooks`` checks the
    whole file."""
    from pathlib import Path

    import yaml

    from churnml.config import features_dir

    path = Path(path) if path is not None else features_dir() / "playbooks.yaml"
    if not path.is_file():
        return frozenset()
    with open(path) as fh:
        raw = yaml.safe_load(fh) or {}
    books = raw.get("playbooks") if isinstance(raw, dict) else None
    return frozenset(str(k) for k in books) if isinstance(books, dict) else frozenset()

TOUCHPOINT_KINDS = (
    "meeting_held", "meeting_missed", "qbr_held", "email_sent", "email_replied",
    "support_ticket", "escalation", "champion_left", "billing_page_visit",
    "cancellation_inquiry", "downgrade_inquiry", "data_export_request", "competitor_mentioned",
    "budget_cut", "payment_failed", "expansion_request", "goal_achieved", "referral_given",
)

MRR_REASONS = (
    "new", "renewal", "upsell", "cross_sell", "seats", "price_increase", "downsell", "churn",
    "reactivation",
)


@dataclass
class Book:
    """A validated book of business: ``tables[name]`` for each table present.

    Only ``accounts`` and ``mrr_changes`` are guaranteed; test optional tables with ``has``.
    """

    tables: dict[str, pd.DataFrame]
    source: str | None = None
    meta: dict = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return name in self.tables

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.tables[name]

    @property
    def accounts(self) -> pd.DataFrame:
        return self.tables["accounts"]

    @property
    def mrr_changes(self) -> pd.DataFrame:
        return self.tables["mrr_changes"]

    @property
    def data_end(self) -> pd.Timestamp:
        """The data's end: the bulk end of the revenue history and the usage, at midnight
        (``churnml.data.dates``; not the latest date of any column, so a stray future-dated
        row cannot move it). Later as_of + horizon are unlabeled. A sampled book keeps its full
        book's (``meta["data_end"]``, ``churnml.models.sampling``)."""
        from churnml.data.dates import book_data_end

        if "data_end" in self.meta:
            return pd.Timestamp(self.meta["data_end"])
        return book_data_end(self.tables)
