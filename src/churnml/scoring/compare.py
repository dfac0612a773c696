"""The features compared with a week before ``as_of``, read from the book itself.

A critical signal (``playbooks.yaml``) fires an action, and an event alert fires, only when its
feature changed since a week before ``as_of``: a 90-day count that stays at 1 is last month's
news, not today's emergency. Whether it changed is decided from the book, point in time (the
feature's value at ``as_of - 7 days``, from rows strictly before that day), never from whether
an earlier output partition exists: a first run, a backfill and a rerun give the same actions.

Which features are compared is derived, never listed by hand: the features the alert rules
compare (:data:`churnml.scoring.alerts.ALERT_RULES`) and every signal feature of the playbooks.
"""

from __future__ import annotations

from typing import Callable

import pandas as pd

from churnml.data.tables import Book
from churnml.features.catalog import Catalog, load_catalog
from churnml.features.windows import to_as_of
from churnml.scoring.actions import Playbooks
from churnml.scoring.alerts import ALERT_RULES

#: How far back "a week before" is (days): the weekly cadence of the job.
COMPARE_DAYS = 7


def compared_features(playbooks: Playbooks) -> tuple[str, ...]:
    """The features whose change since a week before ``as_of`` matters, sorted."""
    names = {f for rule in ALERT_RULES for f in rule.compares}
    names |= {s.feature for s in (*playbooks.critical_signals, *playbooks.high_signals)}
    return tuple(sorted(names))


def week_before(book: Book, as_of, playbooks: Playbooks, catalog: Catalog | None = None,
                build_features: Callable | None = None) -> pd.DataFrame:
    """``account_id`` plus each compared feature (float64) at ``as_of - 7 days``, for the
    accounts active then (point in time: rows strictly before that day). Features the book's
    tables cannot give are absent (unknown, never zero)."""
    if build_features is None:
        from churnml.features.build import build_features as default_build_features

        build_features = default_build_features
    catalog = catalog if catalog is not None else load_catalog()
    names = compared_features(playbooks)
    sub = catalog.subset(names)
    date = to_as_of(as_of) - pd.Timedelta(days=COMPARE_DAYS)
    frame = build_features(book, [date], catalog=sub)
    keep = ["account_id", *[n for n in names if n in frame.columns]]
    out = frame[keep].copy()
    for name in keep[1:]:
        out[name] = pd.to_numeric(out[name], errors="coerce").astype("float64")
    out["account_id"] = out["account_id"].astype(str)
    return out.reset_index(drop=True)
