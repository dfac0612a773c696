"""Portfolio metrics from ``mrr_changes`` (DOMAIN.md "Portfolio metrics").

For a window ``[as_of - weeks, as_of)`` the starting cohort is the accounts active at the
window's start (latest MRR change strictly before the start has ``mrr > 0``); their start MRR is
that value and their end MRR the latest value strictly before ``as_of`` (so a change dated on
as_of itself is not yet seen, as for features). Per account of the cohort, comparing end to
start:

- churn MRR: start MRR of accounts whose end MRR is 0 (lost logos);
- contraction: ``start - end`` of accounts still paying less;
- expansion: ``end - start`` of accounts paying more;

so ``NRR = (start + expansion - contraction - churn) / start`` (= end MRR of the cohort / its
start MRR), ``GRR = (start - contraction - churn) / start``, ``logo churn = lost accounts /
accounts at start``, and ``expansion rate = accounts with at least one expansion during the
window (an MRR rise while already above 0, ``price_increase`` rows excluded, as for the
expansion label) / accounts at start``. Accounts that start during the window are not in the
cohort (new business is not retention). Rates are fractions (1.04 = 104%); NaN when the cohort
is empty.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnml.features.windows import to_as_of

DEFAULT_WINDOWS_WEEKS = (4, 13)


def _latest_before(changes: pd.DataFrame, when: pd.Timestamp) -> pd.Series:
    seen = changes[changes["effective_date"] < when]
    return seen.groupby("account_id", sort=True)["mrr"].last()


def portfolio_metrics(mrr_changes: pd.DataFrame, as_of, weeks: int) -> dict[str, float]:
    """NRR, GRR, logo churn and expansion rate over ``[as_of - weeks*7 days, as_of)``.

    Returns ``{weeks, start_accounts, start_mrr, end_mrr, expansion_mrr, contraction_mrr,
    churned_mrr, churned_accounts, expanded_accounts, nrr, grr, logo_churn, expansion_rate}``.
    """
    as_of = to_as_of(as_of)
    start = as_of - pd.Timedelta(days=7 * int(weeks))
    changes = mrr_changes.sort_values(["account_id", "effective_date"], kind="stable")
    start_mrr = _latest_before(changes, start)
    start_mrr = start_mrr[start_mrr > 0]
    end_mrr = _latest_before(changes, as_of).reindex(start_mrr.index).fillna(0.0)
    churned = end_mrr <= 0
    diff = end_mrr - start_mrr
    expansion = float(diff[(diff > 0) & ~churned].sum())
    contraction = float(-diff[(diff < 0) & ~churned].sum())
    churned_mrr = float(start_mrr[churned].sum())

    # Expansion events inside the window: a rise over the previous row while it was > 0.
    prev = changes.groupby("account_id", sort=False)["mrr"].shift(1)
    rise = (
        (changes["mrr"] > prev) & (prev > 0)
        & (changes["effective_date"] >= start) & (changes["effective_date"] < as_of)
    )
    if "reason" in changes.columns:
        rise &= changes["reason"].astype(str).ne("price_increase")
    expanded = changes.loc[rise, "account_id"].unique()
    n_expanded = int(np.isin(start_mrr.index.to_numpy(), expanded).sum())

    total = float(start_mrr.sum())
    n = int(len(start_mrr))
    ratio = (lambda x: x / total) if total > 0 else (lambda x: float("nan"))
    return {
        "weeks": int(weeks),
        "start_accounts": n,
        "start_mrr": total,
        "end_mrr": float(end_mrr.sum()),
        "expansion_mrr": expansion,
        "contraction_mrr": contraction,
        "churned_mrr": churned_mrr,
        "churned_accounts": int(churned.sum()),
        "expanded_accounts": n_expanded,
        "nrr": ratio(total + expansion - contraction - churned_mrr),
        "grr": ratio(total - contraction - churned_mrr),
        "logo_churn": int(churned.sum()) / n if n else float("nan"),
        "expansion_rate": n_expanded / n if n else float("nan"),
    }


def portfolio_table(mrr_changes: pd.DataFrame, as_of,
                    windows_weeks=DEFAULT_WINDOWS_WEEKS) -> pd.DataFrame:
    """:func:`portfolio_metrics` for each window, one row per window (``weeks`` column)."""
    return pd.DataFrame([portfolio_metrics(mrr_changes, as_of, w) for w in windows_weeks])
