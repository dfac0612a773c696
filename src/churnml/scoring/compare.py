"""The features compared with a week before ``as_of``, read from the book itself.

A critical signal (``playbooks.yaml``) fires an action, and an event alert fires, only when its
feature changed since a week before ``as_of``: a 90-day count that stays at 1 is last month's
news, not today's emergency. Whether it changed is decided from the book, point in time (the
feature's value at ``as_of - 7 days``, from rows strictly before that day), never from whether
an earlier output partition exists: a first run, a backfill and a rerun give the same actions.

Which features are compared is derived, never listed by hand: the features the alert rules
compare (:data:`churnml.scoring.alerts.ALERT_RULES`), every signal feature of the playbooks and
every feature the health score reads (:attr:`churnml.health.config.HealthConfig.features` of
``features/health_score.yaml``; calibrated weights and presets change weights and tiers, not
signals), so that the health score a week before ``as_of`` is known too
(:func:`health_week_before`): a health score below ``risk.critical_health`` is critical only in
the week the account enters that tier, not every week it stays there.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

from churnml.data.tables import Book
from churnml.features.catalog import Catalog, load_catalog
from churnml.features.windows import to_as_of
from churnml.health.config import default_config_path, load_health_config
from churnml.scoring.actions import Playbooks, known_health
from churnml.scoring.alerts import ALERT_RULES
from churnml.scoring.protocols import HealthScorer

#: How far back "a week before" is (days): the weekly cadence of the job.
COMPARE_DAYS = 7


def compared_features(playbooks: Playbooks) -> tuple[str, ...]:
    """The features whose change since a week before ``as_of`` matters, sorted."""
    names = {f for rule in ALERT_RULES for f in rule.compares}
    names |= {s.feature for s in (*playbooks.critical_signals, *playbooks.high_signals)}
    names |= set(health_features())
    return tuple(sorted(names))


def health_features() -> tuple[str, ...]:
    """The features the health score reads (signals and overrides of the default health
    configuration), read once per version of its file."""
    path = default_config_path()
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    cached = _HEALTH_FEATURES.get(key)
    if cached is None:
        _HEALTH_FEATURES.clear()
        cached = _HEALTH_FEATURES[key] = tuple(load_health_config(path).features)
    return cached


_HEALTH_FEATURES: dict[tuple, tuple[str, ...]] = {}


def health_week_before(health: HealthScorer, account_ids: Sequence[str] | np.ndarray,
                       week_before: pd.DataFrame | None) -> np.ndarray | None:
    """Each account's health score a week before as_of (order of ``account_ids``), scored by
    ``health`` on the compared features of ``week_before``; NaN where it is unknown: the
    account was not in the book then, or its tier was ``insufficient_data``. None without
    ``week_before`` (a lone request: nothing is known about the week before)."""
    if week_before is None:
        return None
    ids = np.asarray(account_ids, dtype=object).astype(str)
    out = np.full(len(ids), np.nan)
    if not len(week_before) or not len(ids):
        return out
    before = week_before.drop_duplicates("account_id")
    pos = pd.Index(before["account_id"].astype(str)).get_indexer(pd.Index(ids))
    have = pos >= 0
    if not have.any():
        return out
    rows = before.iloc[pos[have]].reset_index(drop=True)
    rows["as_of"] = pd.Timestamp(0)  # the score reads one row at a time; the date is unused
    out[have] = known_health(health.score_arrays(rows))
    return out


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
