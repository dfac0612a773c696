"""The report's "when" sections, from the time-to-event columns of ``scores.parquet``.

- **Revenue forecast**: the MRR expected to be lost to churn, lost to contraction and won by
  expansion in each of the next six months (30-day periods), with a 90% band. Per account and
  outcome, the probability that its first event falls in month ``m`` is the rise of the
  cumulative incidence over that month; the MRR it moves is ``mrr x typical_share``
  (``features/playbooks.yaml``; 1 for churn), as in the 90-day value columns. Accounts are taken
  as independent, so each month's total is a sum of independent Bernoulli amounts: its mean is
  exact, and the band is the central 90% of that sum, simulated (seeded) with the accounts that
  carry most of its variance drawn one by one and the rest by the normal approximation
  (``churnml.models.survival.revenue_forecast`` and ``sum_band``; a plain simulation of every
  account agrees in the tests). MRR is heavy-tailed, so the sum is skewed: ``mean +- 1.645 sd``
  put the lower end at $0 on the demo book, where it is about $20,000.
  The scores keep the incidences at 30, 60, 90 and 180 days
  (``churnml.scoring.schema.TIME_TO_EVENT_DAYS``), so months 1-3 are exact and the split of
  months 4-6 is linear in days between 90 and 180 (their three-month total is exact).
  The band is the spread of the events alone; it does not hold the model's own error or the
  spread of the moved amounts around the typical share.
- **Renewing into risk**: accounts whose contract term (``mrr_changes.term_end`` of the latest
  change before as_of, as the feature ``days_to_renewal``) ends in the next 90 days, ranked by
  the MRR at risk before the renewal: ``mrr x (churn incidence + typical contraction share x
  contraction incidence)`` by the end of the 30-day period in which the renewal falls.

Both need the ``churnml-time-to-event`` champion; without it the columns are null and the report
says so in one line.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from churnml.models.survival import PERIOD_DAYS, incidence_column, revenue_forecast
from churnml.outcomes import OUTCOMES, TIME_TO_EVENT_DAYS, Outcome


#: months (30-day periods) the forecast covers
FORECAST_MONTHS = 6
#: the band's two-sided level
BAND_LEVEL = 0.90
#: its normal quantile (scipy.stats.norm.ppf(0.95)), for the binary models' 90-day comparison
#: in benchmarks/forecast_backtest.py
BAND_Z = 1.6448536269514722
#: the renewal window of "renewing into risk", in days
RENEWAL_WINDOW_DAYS = 90


def has_time_to_event(scores: pd.DataFrame, outcomes: Sequence[Outcome] = OUTCOMES) -> bool:
    """Whether ``scores`` hold time-to-event incidences (the champion scored this week)."""
    column = incidence_column(outcomes[0].name, TIME_TO_EVENT_DAYS[0])
    return column in scores and bool(scores[column].notna().any())


def incidence_by_month(scores: pd.DataFrame, months: int = FORECAST_MONTHS,
                       outcomes: Sequence[Outcome] = OUTCOMES) -> tuple[np.ndarray, np.ndarray]:
    """``(incidence, interpolated)``: the cumulative incidence (accounts, outcomes, months + 1)
    at 0, 30, ..., ``30 months`` days from the scores' ``*_probability_<d>d`` columns (0 at day
    0), linear in days between the known days; ``interpolated[j]``: day ``30 j`` is not a known
    day. A missing value (no champion for a row) counts 0."""
    known = np.array((0,) + tuple(TIME_TO_EVENT_DAYS), dtype="float64")
    days = PERIOD_DAYS * np.arange(months + 1, dtype="float64")
    if days[-1] > known[-1]:
        raise ValueError(f"the scores hold incidences up to {int(known[-1])} days; a forecast of "
                         f"{months} months needs {int(days[-1])}")
    n = len(scores)
    out = np.zeros((n, len(outcomes), months + 1))
    for k, outcome in enumerate(outcomes):
        values = np.zeros((n, len(known)))
        for j, d in enumerate(TIME_TO_EVENT_DAYS, start=1):
            values[:, j] = pd.to_numeric(scores[incidence_column(outcome.name, d)],
                                         errors="coerce").fillna(0.0).to_numpy(dtype="float64")
        hi = np.clip(np.searchsorted(known, days, side="left"), 1, len(known) - 1)
        lo = hi - 1
        w = (days - known[lo]) / (known[hi] - known[lo])
        out[:, k, :] = values[:, lo] * (1.0 - w) + values[:, hi] * w
    interpolated = ~np.isin(days, known)
    return out, interpolated


def forecast(scores: pd.DataFrame, shares: Mapping[str, float], months: int = FORECAST_MONTHS,
             level: float = BAND_LEVEL, outcomes: Sequence[Outcome] = OUTCOMES) -> pd.DataFrame:
    """The revenue forecast table (module docstring): one row per outcome and month, the
    columns of ``survival.revenue_forecast`` plus ``month`` (1..months) and ``interpolated``
    (the month's split rests on a linear interpolation)."""
    incidence, interpolated = incidence_by_month(scores, months, outcomes)
    mrr = pd.to_numeric(scores["mrr"], errors="coerce").fillna(0.0).to_numpy(dtype="float64")
    table = revenue_forecast(incidence, mrr, {o.name: float(shares.get(o.name, 1.0))
                                              for o in outcomes}, periods=months, level=level,
                             names=[o.name for o in outcomes])
    table["month"] = table["period"] + 1
    table["interpolated"] = interpolated[table["period"]] | interpolated[table["period"] + 1]
    return table


def renewing_into_risk(scores: pd.DataFrame, mrr_changes: pd.DataFrame, as_of,
                       shares: Mapping[str, float], window_days: int = RENEWAL_WINDOW_DAYS,
                       outcomes: Sequence[Outcome] = OUTCOMES) -> pd.DataFrame:
    """Accounts of ``scores`` whose term in force at ``as_of`` ends within ``window_days``,
    largest MRR at risk before the renewal first (ties by account_id). Columns:
    ``account_id, mrr, renewal_date, days_to_renewal, churn_by_renewal,
    contraction_by_renewal, mrr_at_risk_before_renewal`` (the incidences by the end of the
    30-day period in which the renewal falls)."""
    as_of = pd.Timestamp(as_of)
    if "term_end" not in mrr_changes:  # optional in the data contract: no renewal known
        mrr_changes = mrr_changes.assign(term_end=pd.Series(pd.NaT, index=mrr_changes.index))
    changes = mrr_changes[["account_id", "effective_date", "term_end"]]
    changes = changes[pd.to_datetime(changes["effective_date"]) < as_of]
    latest = (changes.sort_values(["account_id", "effective_date"], kind="stable")
              .groupby("account_id", sort=False).tail(1))
    term_end = pd.to_datetime(latest.set_index(latest["account_id"].astype(str))["term_end"])
    ids = scores["account_id"].astype(str)
    renewal = pd.to_datetime(ids.map(term_end)).to_numpy(dtype="datetime64[ns]")
    days = (renewal - np.datetime64(as_of, "ns")) / np.timedelta64(1, "D")
    due = np.isfinite(days) & (days >= 0) & (days < window_days)
    # the incidence by the end of the period holding the renewal day (a report day: 30/60/90)
    period_end = PERIOD_DAYS * (np.floor(np.where(due, days, 0) / PERIOD_DAYS) + 1)
    if not set(np.unique(period_end)) <= set(TIME_TO_EVENT_DAYS):
        raise ValueError(f"The 'window_days' parameter must keep every renewal within a period "
                         f"ending on {list(TIME_TO_EVENT_DAYS)}. Got {window_days!r}.")
    risk_outcomes = [o for o in outcomes if o.is_risk]
    by_renewal = {}
    for o in risk_outcomes:
        value = np.zeros(len(scores))
        for d in TIME_TO_EVENT_DAYS:
            column = pd.to_numeric(scores[incidence_column(o.name, d)], errors="coerce")
            value = np.where(period_end == d, column.to_numpy(dtype="float64"), value)
        by_renewal[o.name] = value
    mrr = pd.to_numeric(scores["mrr"], errors="coerce").fillna(0.0).to_numpy(dtype="float64")
    at_risk = sum(mrr * float(shares.get(o.name, 1.0)) * np.nan_to_num(by_renewal[o.name])
                  for o in risk_outcomes)
    out = pd.DataFrame({"account_id": ids.to_numpy(), "mrr": mrr, "renewal_date": renewal,
                        "days_to_renewal": days,
                        **{f"{o.name}_by_renewal": by_renewal[o.name] for o in risk_outcomes},
                        "mrr_at_risk_before_renewal": np.asarray(at_risk, dtype="float64")})
    out = out[due]
    order = np.lexsort((out["account_id"].to_numpy(), -out["mrr_at_risk_before_renewal"].to_numpy()))
    return out.iloc[order].reset_index(drop=True)


# ---- HTML ----------------------------------------------------------------------------------
_VERB = {"churn": "lost to churn", "contraction": "lost to contraction",
         "expansion": "won by expansion"}
_COLOUR = {"churn": "#cf222e", "contraction": "#e36209", "expansion": "#1a7f37"}


def _esc(value) -> str:
    import html

    return html.escape("" if value is None else str(value))


def _money(x: float) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    return f"-${-x:,.0f}" if x < 0 else f"${x:,.0f}"


def _band(row, prefix: str = "") -> str:
    return (f"{_money(row[prefix + 'expected_mrr'])}<br><span class='note'>"
            f"{_money(row[prefix + 'low'])} - {_money(row[prefix + 'high'])}</span>")


def _verb(outcome: Outcome) -> str:
    return _VERB.get(outcome.name, ("lost to " if outcome.is_risk else "won by ") + outcome.name)


def plot_forecast(table: pd.DataFrame, outcomes: Sequence[Outcome] = OUTCOMES) -> str:
    """Grouped bars: expected MRR per month and outcome, the 90% band as error bars."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    months = sorted(table["month"].unique())
    fig, ax = plt.subplots(figsize=(7.4, 3.4))
    width = 0.8 / max(len(outcomes), 1)
    x = np.arange(len(months))
    for k, o in enumerate(outcomes):
        part = table[table["outcome"] == o.name].sort_values("month")
        mean = part["expected_mrr"].to_numpy()
        # a simulated band need not hold the mean (a few accounts, each unlikely to move: the
        # 95% point can be 0 below a positive mean); matplotlib refuses negative error bars
        err = np.clip(np.vstack([mean - part["low"].to_numpy(), part["high"].to_numpy() - mean]),
                      0.0, None)
        ax.bar(x + (k - (len(outcomes) - 1) / 2) * width, mean, width=width, yerr=err,
               capsize=3, color=_COLOUR.get(o.name, "#0969da"), alpha=0.85,
               error_kw={"elinewidth": 1, "ecolor": "#424a53"}, label=f"MRR {_verb(o)}")
    ax.set_xticks(x, [f"month {m}" + ("*" if part_flag else "") for m, part_flag in zip(
        months, table.groupby("month")["interpolated"].any().reindex(months))])
    ax.set_ylabel("MRR")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"${v:,.0f}"))
    ax.set_title(f"Expected MRR moved per month ({BAND_LEVEL:.0%} band)")
    ax.legend(frameon=False, fontsize=8, ncol=len(outcomes), loc="upper center",
              bbox_to_anchor=(0.5, -0.1))
    ax.spines[["top", "right"]].set_visible(False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def forecast_section(scores: pd.DataFrame, mrr_changes: pd.DataFrame, as_of, shares: Mapping[str, float],
                     top_n: int = 25, outcomes: Sequence[Outcome] = OUTCOMES,
                     nested=None) -> tuple[list[str], dict[str, float]]:
    """The report's "Revenue forecast" and "Renewing into risk" sections and their summary
    figures (``forecast_<outcome>_mrr_90d`` with ``_low``/``_high``, ``accounts_renewing_90d``,
    ``mrr_at_risk_before_renewal_90d``). The timing reasons of the accounts shown come from
    ``scores`` or, when it holds only the scalar columns, from ``nested`` (the week's whole
    Arrow table; only the shown rows are materialised)."""
    h = ["<h2>Revenue forecast: the next six months</h2>"]
    if not has_time_to_event(scores, outcomes):
        h.append("<p class='note'>No time-to-event champion (<code>churnml train --target "
                 "time_to_event</code>): the forecast by month and the renewals at risk need "
                 "it.</p>")
        return h, {}
    as_of = pd.Timestamp(as_of)
    table = forecast(scores, shares, outcomes=outcomes)
    summary: dict[str, float] = {}
    h.append(f"<p class='note'>MRR the time-to-event model expects each outcome to move, month "
             f"by month (30-day periods from {as_of:%Y-%m-%d}), over the {len(scores):,} accounts "
             f"scored: each account's chance that the outcome is its first revenue event in the "
             f"month x its MRR (x the typical share for contraction and expansion, "
             f"features/playbooks.yaml). Below each figure its {BAND_LEVEL:.0%} band: the spread "
             f"of which accounts it turns out to be, taken as independent (not the model's own "
             f"error). * months 4-6: their total is the model's, their split linear in time.</p>")
    h.append("<table><tr><th>month</th><th>dates</th>" + "".join(
        f"<th>MRR {_esc(_verb(o))}</th>" for o in outcomes) + "<th>net expected</th></tr>")
    signs = {o.name: (-1.0 if o.is_risk else 1.0) for o in outcomes}
    # (outcome, month) -> the table's figures, as plain floats
    cell = {(str(r["outcome"]), int(r["month"])): r for r in table.to_dict("records")}
    for month in sorted(int(m) for m in table["month"].unique()):
        start = as_of + pd.Timedelta(days=PERIOD_DAYS * (month - 1))
        end = start + pd.Timedelta(days=PERIOD_DAYS - 1)
        flag = "*" if any(cell[(o.name, month)]["interpolated"] for o in outcomes) else ""
        net = sum(signs[o.name] * float(cell[(o.name, month)]["expected_mrr"]) for o in outcomes)
        h.append(f"<tr><td>{month}{flag}</td><td>{start:%b %d} - {end:%b %d}</td>" + "".join(
            f"<td class='n'>{_band(cell[(o.name, month)])}</td>" for o in outcomes)
            + f"<td class='n'>{_money(net)}</td></tr>")
    for months in (3, FORECAST_MONTHS):
        net = sum(signs[o.name] * float(cell[(o.name, months)]["cumulative_expected_mrr"])
                  for o in outcomes)
        last = as_of + pd.Timedelta(days=PERIOD_DAYS * months - 1)
        h.append(f"<tr><th>months 1-{months}</th><th>to {last:%b %d}</th>" + "".join(
            f"<th class='n'>{_band(cell[(o.name, months)], 'cumulative_')}</th>" for o in outcomes)
            + f"<th class='n'>{_money(net)}</th></tr>")
        if months == 3:
            for o in outcomes:
                row = cell[(o.name, months)]
                summary[f"forecast_{o.name}_mrr_90d"] = float(row["cumulative_expected_mrr"])
                summary[f"forecast_{o.name}_mrr_90d_low"] = float(row["cumulative_low"])
                summary[f"forecast_{o.name}_mrr_90d_high"] = float(row["cumulative_high"])
    h.append("</table>")
    h.append(f'<div class="plots"><img alt="forecast by month" src="{plot_forecast(table, outcomes)}">'
             "</div>")

    renewing = renewing_into_risk(scores, mrr_changes, as_of, shares, outcomes=outcomes)
    summary["accounts_renewing_90d"] = float(len(renewing))
    summary["mrr_at_risk_before_renewal_90d"] = float(renewing["mrr_at_risk_before_renewal"].sum())
    risk = [o for o in outcomes if o.is_risk]
    h.append(f"<h2>Renewing into risk</h2><p class='note'>Accounts whose contract term ends in "
             f"the next {RENEWAL_WINDOW_DAYS} days ({len(renewing):,} accounts, "
             f"{_money(float(renewing['mrr'].sum()))} MRR), largest MRR at risk before the renewal "
             f"first: MRR x the chance of churn (+ the typical share x the chance of contraction) "
             f"by the end of the 30-day period in which the renewal falls. Top {min(top_n, len(renewing))}."
             "</p>")
    if not len(renewing):
        h.append(f"<p>No known renewal in the next {RENEWAL_WINDOW_DAYS} days "
                 "(mrr_changes.term_end).</p>")
        return h, summary
    by_id = _shown_rows(scores, nested, renewing["account_id"].head(top_n).tolist(), risk)
    days_to_churn = by_id.get("expected_days_to_churn_within_year")
    h.append("<table><tr><th>account</th><th>MRR</th><th>renews</th>" + "".join(
        f"<th>chance of {_esc(o.name)} by then</th>" for o in risk)
        + "<th>MRR at risk before the renewal</th><th>expected days to churn (within a year)"
        "</th><th>why it could come soon</th></tr>")
    for _, r in renewing.head(top_n).iterrows():
        expected = (days_to_churn.get(r["account_id"], np.nan) if days_to_churn is not None
                    else np.nan)
        why = _timing_words(by_id, r, risk, shares)
        h.append(f"<tr><td>{_esc(r['account_id'])}</td><td class='n'>{_money(r['mrr'])}</td>"
                 f"<td>{pd.Timestamp(r['renewal_date']):%Y-%m-%d}<br><span class='note'>in "
                 f"{int(r['days_to_renewal'])} days</span></td>" + "".join(
                     f"<td class='n'>{100 * r[f'{o.name}_by_renewal']:.0f}%</td>" for o in risk)
                 + f"<td class='n'>{_money(r['mrr_at_risk_before_renewal'])}</td>"
                 f"<td class='n'>{'-' if not np.isfinite(expected) else f'{expected:.0f}'}</td>"
                 f"<td>{why}</td></tr>")
    h.append("</table>")
    return h, summary


def _shown_rows(scores: pd.DataFrame, nested, ids: Sequence[str],
                risk: Sequence[Outcome]) -> pd.DataFrame:
    """The rows of accounts ``ids`` by account id, with the risk outcomes' timing reasons
    (from ``nested`` when ``scores`` lacks them)."""
    by_id = scores.set_index(scores["account_id"].astype(str))
    wanted = [o.timing_reasons_column for o in risk if o.timing_reasons_column not in scores]
    if nested is None or not wanted or not set(wanted) <= set(nested.schema.names):
        return by_id
    import pyarrow as pa
    import pyarrow.compute as pc

    shown = nested.filter(pc.is_in(nested.column("account_id").cast(pa.string()),
                                   value_set=pa.array(list(ids), type=pa.string())))
    reasons = shown.select(["account_id", *wanted]).to_pandas()
    reasons = reasons.set_index(reasons["account_id"].astype(str))[wanted]
    return by_id.join(reasons, how="left")


def _timing_words(by_id: pd.DataFrame, row, risk: Sequence[Outcome],
                  shares: Mapping[str, float], shown: int = 2) -> str:
    """The timing reasons, in words, of the risk outcome that puts the most MRR at risk before
    this account's renewal (``{outcome}_timing_reasons``: what brings that outcome closer in
    time, strongest first); ``-`` when the scores have none."""
    account = row["account_id"]
    weight = {o.name: float(shares.get(o.name, 1.0)) * float(np.nan_to_num(row[f"{o.name}_by_renewal"]))
              for o in risk}
    outcome = max(risk, key=lambda o: weight[o.name])
    column = outcome.timing_reasons_column
    if column not in by_id.columns or account not in by_id.index:
        return "-"
    reasons = by_id.at[account, column]
    if not isinstance(reasons, (list, np.ndarray)):  # no timing reasons (None, NaN)
        return "-"
    texts = [str(r.get("text", "")) for r in reasons
             if r is not None and (r.get("contribution") or 0) > 0][:shown]
    if not texts:
        return "-"
    return f"<span class='note'>{_esc(outcome.name)}:</span> " + "; ".join(_esc(t) for t in texts)
