"""What each page shows, as plain computations over a week's list frame (no web framework
here, so that the tests compare the pages with the same pandas they would write by hand).

Every filter, sort key and column is derived from the columns present: an outcome added to the
registry adds its probability sort and its value KPI; a column added to the output schema shows
in the account page's "every column" table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from churnml.ui.store import outcome_columns, tier_rank

PAGE_SIZE = 50

#: (list-frame column, label) of the select filters, shown when the column is present
SELECT_FILTERS = (
    ("health_tier", "Health tier"),
    ("action_owner", "Owner"),
    ("segment", "Segment"),
    ("rfm_segment", "RFM segment"),
    ("value_tier", "Value tier"),
    ("lifecycle_phase", "Lifecycle phase"),
    ("queue_status", "Queue"),
)


class BadRequest(ValueError):
    """A request parameter the page cannot use (shown as a 400 page with the message)."""


def sort_keys(columns) -> dict[str, tuple[str, str, bool]]:
    """``key -> (column, label, descending by default)`` of the account table's sorts."""
    cols = set(columns)
    keys: dict[str, tuple[str, str, bool]] = {}
    for o in outcome_columns(columns):
        if o["value"] and o["is_risk"]:
            keys[o["value"]] = (o["value"], f"{o['title']}: MRR at risk"
                                if o["name"] != "churn" else "MRR at risk", True)
    for o in outcome_columns(columns):
        keys[o["probability"]] = (o["probability"], f"{o['title']} probability", True)
    for col, label, desc in (("health_score", "Health (lowest first)", False),
                             ("health_change", "Health change since last week", False),
                             ("mrr", "MRR", True), ("expected_value", "Expected value of the play",
                                                     True)):
        if col in cols:
            keys[col] = (col, label, desc)
    return keys


@dataclass
class AccountQuery:
    filters: dict[str, str] = field(default_factory=dict)
    alert: str = ""
    q: str = ""
    sort: str = ""
    descending: bool = True
    page: int = 1

    @classmethod
    def parse(cls, params: Mapping[str, str], columns) -> "AccountQuery":
        keys = sort_keys(columns)
        sort = params.get("sort") or next(iter(keys), "")
        if sort not in keys:
            raise BadRequest(f"unknown sort {sort[:60]!r}: one of {', '.join(keys)}")
        order = params.get("order", "")
        if order not in ("", "asc", "desc"):
            raise BadRequest("order must be 'asc' or 'desc'")
        descending = keys[sort][2] if order == "" else order == "desc"
        try:
            page = int(params.get("page") or 1)
        except ValueError:
            raise BadRequest("page must be a whole number") from None
        if page < 1:
            raise BadRequest("page must be 1 or more")
        filters = {c: str(params[c])[:200] for c, _ in SELECT_FILTERS
                   if params.get(c) and c in set(columns)}
        return cls(filters=filters, alert=str(params.get("alert", ""))[:200],
                   q=str(params.get("q", "")).strip()[:200], sort=sort,
                   descending=descending, page=page)

    def params(self, **override) -> dict[str, str]:
        """The query string parameters of this view (with ``override``), for links."""
        out: dict[str, str] = dict(self.filters)
        if self.alert:
            out["alert"] = self.alert
        if self.q:
            out["q"] = self.q
        out["sort"] = self.sort
        out["order"] = "desc" if self.descending else "asc"
        out["page"] = str(self.page)
        out.update({k: str(v) for k, v in override.items()})
        return {k: v for k, v in out.items() if v not in ("", None)}


def alert_names(frame: pd.DataFrame) -> list[str]:
    """Every alert raised this week, sorted."""
    if "alerts_text" not in frame:
        return []
    text = frame.loc[frame["alerts_count"] > 0, "alerts_text"].astype(str)
    return sorted({a for s in text.unique() for a in s.split(", ") if a})


def _equals(values: pd.Series, text: str) -> np.ndarray:
    """``values == text`` as a boolean array (null never equal), categories compared once."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        cats = [str(c) for c in values.cat.categories]
        if text not in cats:
            return np.zeros(len(values), dtype=bool)
        return values.cat.codes.to_numpy() == cats.index(text)
    return (values.astype("string") == text).fillna(False).to_numpy(dtype=bool)


def filter_frame(frame: pd.DataFrame, query: AccountQuery) -> pd.DataFrame:
    """The rows matching every filter, sorted (nulls last, ties by account_id)."""
    return frame.iloc[filter_positions(frame, query)]


def filter_positions(frame: pd.DataFrame, query: AccountQuery) -> np.ndarray:
    """Positions in ``frame`` (sorted by account_id) of :func:`filter_frame`'s rows, in its
    order: only the rows shown are then copied."""
    mask = np.ones(len(frame), dtype=bool)
    for column, value in query.filters.items():
        mask &= _equals(frame[column], value)
    if query.alert == "any":
        mask &= frame["alerts_count"].to_numpy() > 0
    elif query.alert == "none":
        mask &= frame["alerts_count"].to_numpy() == 0
    elif query.alert:
        padded = ", " + frame["alerts_text"].astype(str) + ", "
        mask &= padded.str.contains(f", {query.alert}, ", regex=False).to_numpy(dtype=bool)
    if query.q:
        needle = query.q.lower()
        if "search_text" in frame:  # the store's lower-cased "id name" (ScoreStore.view)
            text = frame["search_text"]
        else:
            text = frame["account_id"].str.lower()
        mask &= text.str.contains(needle, regex=False).to_numpy(dtype=bool)
    positions = np.flatnonzero(mask)
    column = sort_keys(frame.columns)[query.sort][0]
    # the list frame is sorted by account_id: a stable sort on the key alone breaks ties by
    # account_id (NaN last either way)
    values = frame[column].to_numpy(dtype=float, na_value=np.nan)[positions]
    return positions[np.argsort(-values if query.descending else values, kind="stable")]


def page_of(rows, page: int, size: int = PAGE_SIZE):
    """``(rows of the page, page, pages)`` of a frame or of an array of positions; a page
    past the end shows the last one."""
    pages = max(1, math.ceil(len(rows) / size))
    page = min(page, pages)
    part = rows[(page - 1) * size: page * size]
    return (rows.iloc[(page - 1) * size: page * size] if isinstance(rows, pd.DataFrame)
            else part), page, pages


def kpis(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The week's headline figures: ``{label, value, kind, meaning}``."""
    out: list[dict[str, Any]] = [
        {"label": "Accounts scored", "value": len(frame), "kind": "count",
         "meaning": "active accounts in this week's scores"},
        {"label": "MRR", "value": float(frame["mrr"].sum()), "kind": "money",
         "meaning": "sum of mrr: monthly recurring revenue just before the scoring date"},
    ]
    for o in outcome_columns(frame.columns):
        if o["value"]:
            label = {"churn": "MRR at risk of churn", "expansion": "Expected expansion MRR",
                     "contraction": "MRR at risk of downgrade"}.get(
                         o["name"], f"{o['title']}: {o['value']}")
            out.append({"label": label, "value": float(frame[o["value"]].sum()),
                        "kind": "money", "meaning": f"sum of {o['value']}: {o['value_meaning']}"})
    if "alerts_count" in frame:
        out.append({"label": "Accounts with alerts", "value": int((frame["alerts_count"] > 0).sum()),
                    "kind": "count", "meaning": "accounts with at least one alert this week"})
    if "queue_status" in frame:
        worked = frame["queue_status"].eq("queued")
        if "holdout" in frame:
            worked &= ~frame["holdout"].fillna(False).astype(bool)
        out.append({"label": "Plays to run this week", "value": int(worked.sum()),
                    "kind": "count", "meaning": "queued and not held out"})
    return out


def tier_table(now: pd.DataFrame, before: pd.DataFrame | None) -> pd.DataFrame:
    """Per health tier, from the per-tier aggregates (``health_tier, accounts, mrr``) of this
    week and of the previous one: accounts, share, MRR, share of MRR and the change in
    accounts since the previous week (``tier, accounts, account_share, mrr, mrr_share,
    accounts_change``)."""
    g = now.set_index("health_tier")[["accounts", "mrr"]]
    g = g.reindex(tier_rank(g.index))
    g["account_share"] = g["accounts"] / max(int(g["accounts"].sum()), 1)
    total = float(g["mrr"].sum())
    g["mrr_share"] = g["mrr"] / total if total > 0 else np.nan
    if before is not None:
        prev = before.set_index("health_tier")["accounts"]
        g["accounts_change"] = g["accounts"] - prev.reindex(g.index).fillna(0)
    else:
        g["accounts_change"] = np.nan
    return g.rename_axis("tier").reset_index()


def queue_frame(frame: pd.DataFrame, owner: str = "") -> pd.DataFrame:
    """This week's queue: rows with a queue status (queued or watch), per owner in queue
    order (owner, then queue_rank, then account_id)."""
    if "queue_status" not in frame:
        return frame.iloc[0:0]
    rows = frame[frame["queue_status"].notna().to_numpy()]
    if owner:
        rows = rows[_equals(rows["action_owner"], owner)]
    # the list frame is sorted by account_id: stable sorts give the ties in that order
    rank = rows["queue_rank"].to_numpy(dtype=float, na_value=np.nan)
    owner_col = rows["action_owner"]
    owners: np.ndarray
    if isinstance(owner_col.dtype, pd.CategoricalDtype) and \
            list(owner_col.cat.categories) == sorted(owner_col.cat.categories):
        owners = owner_col.cat.codes.to_numpy()
    else:
        owners = owner_col.astype(str).to_numpy()
    return rows.iloc[np.lexsort((rank, owners))]


def call_first(frame: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The portfolio's "call first" list: this week's plays to run (queued and not held out),
    highest expected value first (ties by account id), at most ``n``; empty without a queue."""
    if "queue_status" not in frame or "expected_value" not in frame:
        return frame.iloc[0:0]
    worked = frame["queue_status"].eq("queued").to_numpy(dtype=bool)
    if "holdout" in frame:
        worked = worked & ~frame["holdout"].fillna(False).astype(bool).to_numpy()
    positions = np.flatnonzero(worked)
    values = frame["expected_value"].to_numpy(dtype=float, na_value=np.nan)[positions]
    # the list frame is sorted by account_id: the stable sort breaks ties by it (NaN last)
    order = np.argsort(-values, kind="stable")
    return frame.iloc[positions[order][:n]]


def since_label(week_as_of: pd.Timestamp, previous: pd.Timestamp | None) -> str | None:
    """What "change since ..." compares with: "last week" when the previous scored week is
    7 days before, else its date; None without a previous week."""
    if previous is None:
        return None
    if (pd.Timestamp(week_as_of) - pd.Timestamp(previous)).days == 7:
        return "last week"
    return f"{pd.Timestamp(previous):%Y-%m-%d}"


def queue_owners(queue: pd.DataFrame, capacity: Mapping[str, int]) -> list[dict[str, Any]]:
    """Per owner: ``{owner, capacity, used, queued, held_out, watch, expected_value}``; used =
    queued and not held out (holdouts use no capacity), expected value over those."""
    out = []
    for owner, rows in queue.groupby(queue["action_owner"].astype(str), sort=True):
        hold = rows["holdout"].fillna(False).astype(bool) if "holdout" in rows else \
            pd.Series(False, index=rows.index)
        queued = rows["queue_status"].eq("queued")
        worked = queued & ~hold
        ev = rows.loc[worked, "expected_value"].sum() if "expected_value" in rows else np.nan
        out.append({"owner": owner, "capacity": capacity.get(str(owner)),
                    "used": int(worked.sum()), "held_out": int((queued & hold).sum()),
                    "watch": int(rows["queue_status"].eq("watch").sum()),
                    "expected_value": float(ev)})
    return out


def realized_summary(realized: pd.DataFrame) -> pd.DataFrame:
    """Per outcome and scorer, over the out-of-sample matured weeks (``in_sample`` false):
    weeks, mean ROC AUC, mean lift in the top decile, mean ECE, and the latest week's AUC."""
    rows = realized[realized["in_sample"].eq(False)] if "in_sample" in realized else realized
    if rows.empty:
        return pd.DataFrame(columns=["outcome", "scorer", "weeks", "roc_auc", "lift_top_decile",
                                     "ece", "latest_as_of", "latest_roc_auc"])
    rows = rows.sort_values("as_of")
    g = rows.groupby(["outcome", "scorer"], sort=True)
    out = g.agg(weeks=("as_of", "nunique"), roc_auc=("roc_auc", "mean"),
                lift_top_decile=("lift_top_decile", "mean"), ece=("ece", "mean"),
                latest_as_of=("as_of", "last"), latest_roc_auc=("roc_auc", "last"))
    return out.reset_index()


def model_versions(frames: Mapping[pd.Timestamp, pd.DataFrame]) -> pd.DataFrame:
    """Per scored week: the distinct values of every ``*_version`` column (model versions per
    outcome, health weights, playbook policy, schema), newest week first."""
    rows = []
    for as_of, frame in frames.items():
        row: dict[str, Any] = {"as_of": as_of}
        for c in frame.columns:
            if c.endswith("_version") and not c.startswith("action_"):
                values = sorted({str(v) for v in frame[c].dropna().unique()})
                row[c] = ", ".join(values) if values else "none"
        rows.append(row)
    return pd.DataFrame(rows).sort_values("as_of", ascending=False, ignore_index=True) \
        if rows else pd.DataFrame()
