"""The weekly report: one self-contained HTML page a CS leader reads on Monday morning.

Inline CSS, plots as base64 PNG (matplotlib, Agg backend), no scripts and no external links, so
the file can be mailed or opened offline. Sections: headline numbers, this week's queue per
owner (capacity used, held out, watch list, the top queued actions with their expected value
and reason), portfolio metrics (NRR,
GRR, logo churn, expansion rate over 4 and 13 weeks), the revenue forecast for the next six
months and the renewals at risk (``churnml.jobs.report_forecast``; with a time-to-event
champion), health distribution and its change since
last week, the alert queue sorted by MRR at risk, top risks with reasons and actions, and
expansion-ready accounts. The page holds no wall-clock time: the same scores give the same
report.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from churnml.jobs.report_effects import effects_section
from churnml.jobs.report_forecast import forecast_section
from churnml.jobs.report_realized import realized_section, trust_panel
from churnml.health.score import INSUFFICIENT_DATA_TIER
from churnml.jobs.portfolio import portfolio_table
from churnml.outcomes import OUTCOMES
from churnml.scoring.schema import COLUMNS, TIME_TO_EVENT_VERSION_COLUMN, declared_columns

TIER_ORDER = ("thriving", "healthy", "needs_attention", "at_risk", "critical",
              INSUFFICIENT_DATA_TIER)
TIER_COLOURS = {"thriving": "#1a7f37", "healthy": "#5aa469", "needs_attention": "#d4a72c",
                "at_risk": "#e36209", "critical": "#cf222e", INSUFFICIENT_DATA_TIER: "#8c959f"}
_NESTED = ("reasons", "strings", "action")


def _gates_text() -> str:
    """The expansion gates as a CS manager reads them ("health_score < 75 blocks ...")."""
    from churnml.scoring.actions import load_playbooks

    ops = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}
    return "; ".join(f"{g.name.replace('_', ' ')} ({g.feature} {ops[g.op]} {g.value:g})"
                     for g in load_playbooks().gates)


def _scalar_columns(names: list[str]) -> list[str]:
    """The output schema's scalar columns present in a scores file (every row is read)."""
    dims = [n[len("health_"):] for n in names if n.startswith("health_")
            and n not in {c.name for c in COLUMNS}]
    return [name for name, col, _ in declared_columns(dims)
            if col.type not in _NESTED and col.per != "dimension" and name in names]


def _nested_columns(names: list[str]) -> list[str]:
    """The output schema's nested columns present in a scores file (read for shown rows)."""
    return [name for name, col, _ in declared_columns([])
            if col.type in _NESTED and name in names]

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;
max-width:1180px;color:#1f2328;background:#fff;font-size:14px;line-height:1.45}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid
#d0d7de;padding-bottom:4px}.sub{color:#59636e;margin-bottom:16px}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #d0d7de;border-radius:8px;
padding:10px 14px;min-width:150px}.card .v{font-size:22px;font-weight:600}.card .l{color:#59636e;
font-size:12px}table{border-collapse:collapse;width:100%;margin:6px 0 10px}th,td{border-bottom:
1px solid #eaeef2;padding:5px 8px;text-align:left;vertical-align:top}th{background:#f6f8fa;
font-weight:600;font-size:12px;color:#424a53}td.n{text-align:right;white-space:nowrap}
.tag{display:inline-block;border-radius:10px;padding:0 7px;margin:1px 2px 1px 0;font-size:11px;
background:#eaeef2}.tier{color:#fff;border-radius:4px;padding:1px 6px;font-size:12px;white-space:nowrap}
.sev-critical{color:#cf222e;font-weight:600}.sev-high{color:#e36209;font-weight:600}
.plots{display:flex;flex-wrap:wrap;gap:10px}.plots img{max-width:570px;width:100%;
border:1px solid #eaeef2;border-radius:6px}.reasons{margin:0;padding-left:16px;color:#424a53}
.note{color:#59636e;font-size:12px}
"""


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _money(x: float) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    return f"-${-x:,.0f}" if x < 0 else f"${x:,.0f}"


def _pct(x: float, digits: int = 1) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f}%"


def _tier(t: object) -> str:  # a tier name, or an index label holding one
    colour = TIER_COLOURS.get(str(t), "#59636e")
    return f'<span class="tier" style="background:{colour}">{_esc(str(t).replace("_", " "))}</span>'


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def plot_health_distribution(current: pd.DataFrame, previous: pd.DataFrame | None) -> str:
    """Histogram of health scores this week (and last week as an outline), as a data URI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.2, 3.4))
    bins = np.arange(0, 105, 5)
    # matplotlib's stubs take bins as int | Sequence[float] | str; an ndarray works (documented)
    ax.hist(current["health_score"], bins=bins,  # type: ignore[arg-type]
            color="#0969da", alpha=0.75, label="this week")
    if previous is not None and len(previous):
        ax.hist(previous["health_score"], bins=bins,  # type: ignore[arg-type]
                histtype="step", color="#1f2328",
                linewidth=1.4, label="last week")
    for cut, name in ((90, "thriving"), (70, "healthy"), (50, "needs attention"),
                      (30, "at risk")):
        ax.axvline(cut, color="#8c959f", linestyle=":", linewidth=1)
    ax.set_xlabel("health score (0-100)")
    ax.set_ylabel("accounts")
    ax.set_title("Health score distribution")
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def plot_mrr_by_tier(tiers: pd.DataFrame) -> str:
    """Bar chart: MRR per health tier, this week next to last week."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.2, 3.4))
    x = np.arange(len(tiers))
    ax.bar(x - 0.2, tiers["mrr_last_week"], width=0.4, color="#d0d7de", label="last week")
    ax.bar(x + 0.2, tiers["mrr"], width=0.4,
           color=[TIER_COLOURS.get(t, "#0969da") for t in tiers.index], label="this week")
    ax.set_xticks(x, [t.replace("_", "\n") for t in tiers.index])
    ax.set_ylabel("MRR")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"${v:,.0f}"))
    ax.set_title("MRR by health tier")
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def plot_risk_map(current: pd.DataFrame) -> str:
    """Scatter: health score vs churn probability, point area by MRR (where the money is)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sample = current
    if len(sample) > 5000:  # a readable picture; the sample is fixed (seeded) for reruns
        sample = sample.sample(5000, random_state=0)
    fig, ax = plt.subplots(figsize=(6.2, 3.4))
    size = 8 + 120 * (sample["mrr"] / max(float(current["mrr"].max()), 1.0))
    ax.scatter(sample["health_score"], sample["churn_probability"], s=size, alpha=0.35,
               c=[TIER_COLOURS.get(t, "#0969da") for t in sample["health_tier"]],
               edgecolors="none")
    ax.set_xlabel("health score")
    ax.set_ylabel("churn probability")
    ax.set_title("Risk map (point size = MRR)")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def plot_portfolio(portfolio: pd.DataFrame) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.2, 3.4))
    metrics = ["nrr", "grr", "logo_churn", "expansion_rate"]
    labels = ["NRR", "GRR", "logo churn", "expansion rate"]
    x = np.arange(len(metrics))
    for k, (_, row) in enumerate(portfolio.iterrows()):
        values = [row[m] * 100 for m in metrics]
        bars = ax.bar(x + (k - 0.5) * 0.38, values, width=0.38,
                      color=["#0969da", "#8250df"][k % 2], label=f"last {int(row['weeks'])} weeks")
        ax.bar_label(bars, fmt="%.1f%%", fontsize=8)
    ax.set_xticks(x, labels)
    ax.set_ylabel("%")
    ax.set_title("Retention and expansion")
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def _reasons_html(reasons) -> str:
    items = [r.get("text") or r.get("feature") for r in (reasons if reasons is not None else [])
             if (r.get("contribution") or 0) > 0]
    if not items:
        return '<span class="note">no single factor stands out</span>'
    return '<ul class="reasons">' + "".join(f"<li>{_esc(t)}</li>" for t in items) + "</ul>"


def _alerts_html(alerts) -> str:
    return "".join(f'<span class="tag">{_esc(str(a).replace("_", " "))}</span>'
                   for a in (alerts if alerts is not None else []))


def _action_html(action, with_reason: bool = False) -> str:
    if action is None:
        return ""
    sev = action.get("severity", "")
    why = ""
    if with_reason and action.get("reason"):
        why = f'<br><span class="note">because {_esc(action.get("reason"))}</span>'
    return (f'{_esc(action.get("action"))}<br><span class="note">{_esc(action.get("owner"))}, '
            f'<span class="sev-{_esc(sev)}">{_esc(action.get("respond_within"))}</span></span>'
            f'{why}')


def tier_table(current: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    """Per tier: accounts and MRR this week and last week (known tiers first, in order)."""
    order = [t for t in TIER_ORDER if t in set(current["health_tier"])
             or (previous is not None and t in set(previous["health_tier"]))]
    order += sorted(set(current["health_tier"]) - set(order))
    now = current.groupby("health_tier")["mrr"].agg(["size", "sum"]).reindex(order).fillna(0)
    out = pd.DataFrame({"accounts": now["size"].astype(int), "mrr": now["sum"]}, index=order)
    if previous is not None and len(previous):
        last = previous.groupby("health_tier").agg(accounts=("account_id", "size"),
                                                   mrr=("mrr", "sum")).reindex(order).fillna(0)
        out["accounts_last_week"] = last["accounts"].astype(int)
        out["mrr_last_week"] = last["mrr"]
    else:
        out["accounts_last_week"] = 0
        out["mrr_last_week"] = 0.0
    return out


def summary_metrics(current: pd.DataFrame, portfolio: pd.DataFrame,
                    alerts_count: int) -> dict[str, float]:
    """Numbers logged to MLflow with the job's run (all floats)."""
    out = {
        "accounts_scored": float(len(current)),
        "total_mrr": float(current["mrr"].sum()),
    }
    for o in OUTCOMES:  # NaN sums and means (no champion for the outcome) are left out
        if o.value_column in current and current[o.probability_column].notna().any():
            out[o.value_column] = float(current[o.value_column].sum())
            out[f"mean_{o.probability_column}"] = float(current[o.probability_column].mean())
    out.update({
        "mean_health_score": float(current["health_score"].mean()) if len(current) else 0.0,
        "accounts_with_alerts": float(alerts_count),
        "expansion_ready_now": float((current["expansion_readiness"] == "ready_now").sum()),
        "expansion_ready_soon": float((current["expansion_readiness"] == "ready_soon").sum()),
    })
    for tier in TIER_ORDER:
        out[f"accounts_{tier}"] = float((current["health_tier"] == tier).sum())
    for _, row in portfolio.iterrows():
        w = int(row["weeks"])
        for m in ("nrr", "grr", "logo_churn", "expansion_rate"):
            if np.isfinite(row[m]):
                out[f"{m}_{w}w"] = float(row[m])
    return out


def queue_table(table: Any, current: pd.DataFrame) -> pd.DataFrame:
    """Per owner: capacity, worked (queued, not held out), held out, watch and the expected
    value of the worked actions (``churnml.scoring.queue``)."""
    from churnml.scoring.actions import load_playbooks

    capacity = load_playbooks().capacity
    if not len(current) or "queue_status" not in current:
        return pd.DataFrame(columns=["owner", "capacity", "worked", "held_out", "watch",
                                     "critical", "expected_value"])
    action = table.column("next_best_action").combine_chunks()
    owner = pd.Series(np.asarray(action.field("owner").to_numpy(zero_copy_only=False),
                                 dtype=object), index=current.index)
    critical = current["queue_reason"].fillna("").str.startswith("new critical signal")
    status = current["queue_status"]
    held = current["holdout"].fillna(False).astype(bool)
    frame = pd.DataFrame({
        "owner": owner, "worked": (status == "queued") & ~held,
        "held_out": held, "watch": (status == "watch") & ~held,
        "critical": critical & (status == "queued"),
        "expected_value": current["expected_value"].where((status == "queued") & ~held, 0.0),
    })[status.notna().to_numpy()]
    out = frame.groupby("owner").sum(numeric_only=False).reset_index()
    out["capacity"] = out["owner"].map(capacity).fillna(0).astype(int)
    return out[["owner", "capacity", "worked", "held_out", "watch", "critical",
                "expected_value"]].sort_values("owner").reset_index(drop=True)


def queue_counts(scores_path: str | Path) -> pd.DataFrame:
    """:func:`queue_table` of a ``scores.parquet`` (what ``churnml score`` prints)."""
    import pyarrow.parquet as pq

    table = pq.read_table(scores_path, columns=["next_best_action", "expected_value",
                                                "queue_status", "queue_reason", "holdout"])
    current = table.drop_columns(["next_best_action"]).to_pandas()
    return queue_table(table, current)


def queue_section(table: Any, current: pd.DataFrame, top_n: int = 10) -> list[str]:
    """The report's "This week's queue": per owner, capacity used, held out, watch, and the
    top ``top_n`` queued rows with expected value, the action's reason in words (what to say
    on the call) and the queue's reason (its place and what it is expected to save)."""
    h = ["<h2>This week's queue</h2><p class='note'>Per owner, the actions to work this week "
         "within the team's capacity (features/playbooks.yaml): new critical signals first, "
         "then the largest expected value (MRR x probability of the outcome the play "
         "addresses x the play's estimated effect). Held-out accounts are recommended but "
         "deliberately not worked, to measure what each play does; they use no capacity. "
         "The rest wait on the watch list.</p>"]
    per_owner = queue_table(table, current)
    if not len(per_owner):
        h.append("<p>No action is recommended this week.</p>")
        return h
    h.append("<table><tr><th>owner</th><th>queued / capacity</th><th>new critical</th>"
             "<th>held out</th><th>watch list</th><th>expected value of the queue</th></tr>")
    for _, r in per_owner.iterrows():
        h.append(f"<tr><td>{_esc(r['owner'])}</td><td class='n'>{int(r['worked']):,} / "
                 f"{int(r['capacity']):,}</td><td class='n'>{int(r['critical']):,}</td>"
                 f"<td class='n'>{int(r['held_out']):,}</td><td class='n'>{int(r['watch']):,}"
                 f"</td><td class='n'>{_money(r['expected_value'])}</td></tr>")
    h.append("</table>")
    action = table.column("next_best_action").combine_chunks()
    owner = np.asarray(action.field("owner").to_numpy(zero_copy_only=False), dtype=object)
    what = np.asarray(action.field("action").to_numpy(zero_copy_only=False), dtype=object)
    within = np.asarray(action.field("respond_within").to_numpy(zero_copy_only=False),
                        dtype=object)
    # what the CSM needs on the call (the signal or reason behind the play), then where the
    # row stands in the queue and what it is expected to save
    because = np.asarray(action.field("reason").to_numpy(zero_copy_only=False), dtype=object)
    worked = ((current["queue_status"] == "queued")
              & ~current["holdout"].fillna(False).astype(bool)).to_numpy()
    rank = current["queue_rank"].to_numpy(dtype="float64", na_value=np.nan)
    for name in per_owner["owner"]:
        idx = np.flatnonzero(worked & (owner == name))
        if not len(idx):
            continue
        idx = idx[np.argsort(rank[idx], kind="stable")][:top_n]
        h.append(f"<h3>{_esc(name)}: top {len(idx)} of {int(worked[owner == name].sum()):,}"
                 "</h3><table><tr><th>#</th><th>account</th><th>MRR</th><th>action</th>"
                 "<th>expected value</th><th>why</th></tr>")
        # "#": the position among the rows to work (what the reason's "#k of N" counts);
        # queue_rank also counts the held-out rows that keep their place in the order
        for position, i in enumerate(idx, start=1):
            r = current.iloc[i]
            h.append(f"<tr><td class='n'>{position}</td><td>{_esc(r['account_id'])}</td>"
                     f"<td class='n'>{_money(r['mrr'])}</td><td>{_esc(what[i])}<br>"
                     f"<span class='note'>{_esc(within[i])}</span></td>"
                     f"<td class='n'>{_money(r['expected_value'])}</td>"
                     f"<td>{_esc(because[i])}<br>"
                     f"<span class='note'>{_esc(r['queue_reason'])}</span></td></tr>")
        h.append("</table>")
    return h


def build_report(scores_path: str | Path, mrr_changes: pd.DataFrame, *,
                 previous_path: str | Path | None = None, top_n: int = 25,
                 realized: pd.DataFrame | None = None,
                 queue_rows: int = 10,
                 effects: pd.DataFrame | None = None,
                 effects_by_dimension: pd.DataFrame | None = None,
                 train_ends: Mapping[str, str | None] | None = None,
                 status=None,
                 ) -> tuple[str, dict[str, float]]:
    """The HTML page and the summary metrics for one scored week.

    ``scores_path``: this week's ``scores.parquet``; ``previous_path``: last week's (for the
    change in health), ``mrr_changes``: the book's revenue history (portfolio metrics before
    this week's as_of), ``realized``: the realized-performance table of the scores folder
    (``churnml.jobs.monitoring``; the trust panel and its plot). ``train_ends``: per outcome,
    the last as_of date its model was fitted on (``train_end``), shown beside the model
    version. ``effects``: each play's measured effect (``churnml.jobs.effects``; the
    "What each play has been measured to do" section), ``effects_by_dimension``: the same per
    health dimension of the recommendations' reasons. ``status``: this week's drift, estimate and
    retrain trigger (``churnml.jobs.drift.WeekStatus``), in the trust panel. Only the scalar columns of every row
    and the nested columns of the ``top_n`` rows shown are materialised in pandas.
    """
    import pyarrow.parquet as pq

    table = pq.read_table(scores_path)
    current = table.select(_scalar_columns(table.schema.names)).to_pandas()
    as_of = pd.Timestamp(current["as_of"].iloc[0]) if len(current) else None
    if as_of is None:
        as_of = pd.Timestamp(Path(scores_path).parent.name.split("=", 1)[1])
    alerts_len = np.asarray(pq.read_table(scores_path, columns=["alerts"]).column("alerts")
                            .combine_chunks().value_lengths().fill_null(0))
    current["n_alerts"] = alerts_len
    previous = None
    if previous_path is not None and Path(previous_path).is_file():
        previous = pd.read_parquet(previous_path, columns=["account_id", "health_score",
                                                           "health_tier", "mrr"])
    portfolio = portfolio_table(mrr_changes, as_of)
    tiers = tier_table(current, previous)

    def detail(index: np.ndarray) -> pd.DataFrame:
        cols = _nested_columns(table.schema.names)
        rows = table.select(cols).take(pd.Index(index).to_numpy()).to_pylist()
        base = current.iloc[index].reset_index(drop=True)
        return pd.concat([base, pd.DataFrame(rows, columns=cols)], axis=1)

    prev_score = (previous.set_index("account_id")["health_score"] if previous is not None
                  else pd.Series(dtype="float64"))
    current["health_change"] = current["health_score"] - current["account_id"].map(prev_score)

    def order_by(mask: np.ndarray, column: str) -> np.ndarray:
        idx = np.flatnonzero(mask)
        keys = current[column].to_numpy()[idx]
        # ties broken by account_id so reruns list the same rows
        order = np.lexsort((current["account_id"].to_numpy()[idx], -keys))
        return idx[order][:top_n]

    alert_idx = order_by(current["n_alerts"].to_numpy() > 0, "mrr_at_risk")
    # top risks: accounts whose next best action is a risk playbook (severity above low)
    severity = np.asarray(table.column("next_best_action").combine_chunks().field("severity")
                          .to_numpy(zero_copy_only=False), dtype=object) if len(current) \
        else np.array([], dtype=object)
    risk_idx = order_by(severity != "low", "mrr_at_risk")
    ready = current["expansion_readiness"].isin(["ready_now", "ready_soon"]).to_numpy()
    exp_idx = order_by(ready, "expected_expansion_mrr")
    contraction = current.get("contraction_probability")
    has_contraction = contraction is not None and contraction.notna().any()
    con_idx = (order_by(contraction.fillna(0).to_numpy() > 0, "mrr_at_risk_of_contraction")
               if has_contraction else np.array([], dtype=int))
    alerts_df, risks_df, exp_df = detail(alert_idx), detail(risk_idx), detail(exp_idx)
    con_df = detail(con_idx)
    summary = summary_metrics(current, portfolio, int((alerts_len > 0).sum()))
    if "queue_status" in current:
        held = current["holdout"].fillna(False).astype(bool)
        worked = (current["queue_status"] == "queued") & ~held
        summary.update({
            "actions_queued": float(worked.sum()),
            "actions_held_out": float(held.sum()),
            "actions_watch": float(((current["queue_status"] == "watch") & ~held).sum()),
            "expected_value_queued": float(current.loc[worked, "expected_value"].sum()),
        })

    def ver(col):
        return ", ".join(sorted(current[col].astype(str).unique())) or "-"

    def change(col_now, col_last, money=False):
        d = tiers[col_now] - tiers[col_last]
        fmt = (lambda v: ("+" if v > 0 else "") + _money(v)) if money else \
            (lambda v: f"{int(v):+d}")
        return d.map(fmt) if previous is not None else d.map(lambda v: "-")

    h = []
    h.append(f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>churnml weekly report {as_of:%Y-%m-%d}</title><style>{_CSS}</style>"
             f"</head><body>")
    h.append(f"<h1>Weekly customer-success report: {as_of:%Y-%m-%d}</h1>")
    spans = dict(train_ends or {})

    def span(name: str) -> str:
        return (f" (trained on as_of dates up to {_esc(spans[name])})" if spans.get(name)
                else "")

    models = ", ".join(
        f"{o.name} v{_esc(ver(o.version_column))}{span(o.name)}"
        if current[o.version_column].notna().any()
        else f"{o.name}: no champion model" for o in OUTCOMES if o.version_column in current)
    if TIME_TO_EVENT_VERSION_COLUMN in current and current[TIME_TO_EVENT_VERSION_COLUMN].notna().any():
        models += f", time to event v{_esc(ver(TIME_TO_EVENT_VERSION_COLUMN))}"
    h.append(f'<div class="sub">{len(current):,} active accounts scored. Models: {models}; '
             f'health weights {_esc(ver("health_weights_version"))}. '
             + ("Compared with last week's scores." if previous is not None else
                "First scored week in this folder: changes and week-over-week alerts start next week.")
             + "</div>")
    cards = [
        (_money(summary["total_mrr"]), "MRR of active accounts"),
        (_money(summary.get("mrr_at_risk", np.nan)), "MRR at risk (churn probability x MRR, 90 days)"),
        (_money(summary.get("expected_expansion_mrr", np.nan)), "expected expansion MRR"),
        (_money(summary.get("mrr_at_risk_of_contraction", np.nan)),
         "MRR at risk of contraction (probability x MRR x typical share)"),
        (f"{int(summary['accounts_with_alerts']):,}", "accounts with alerts"),
        (f"{int(summary['expansion_ready_now']):,} / {int(summary['expansion_ready_soon']):,}",
         "expansion ready now / soon"),
    ]
    h.append('<div class="cards">' + "".join(
        f'<div class="card"><div class="v">{v}</div><div class="l">{_esc(l)}</div></div>'
        for v, l in cards) + "</div>")
    h.append(trust_panel(realized, as_of, status))

    h.extend(queue_section(table, current, top_n=queue_rows))

    h.append("<h2>Retention and expansion</h2><table><tr><th>window</th><th>NRR</th><th>GRR</th>"
             "<th>logo churn</th><th>expansion rate</th><th>accounts at start</th>"
             "<th>MRR at start</th><th>expansion</th><th>contraction</th><th>churned MRR</th></tr>")
    for _, r in portfolio.iterrows():
        h.append(f"<tr><td>last {int(r['weeks'])} weeks</td><td class='n'>{_pct(r['nrr'])}</td>"
                 f"<td class='n'>{_pct(r['grr'])}</td><td class='n'>{_pct(r['logo_churn'])}</td>"
                 f"<td class='n'>{_pct(r['expansion_rate'])}</td>"
                 f"<td class='n'>{int(r['start_accounts']):,}</td>"
                 f"<td class='n'>{_money(r['start_mrr'])}</td>"
                 f"<td class='n'>{_money(r['expansion_mrr'])}</td>"
                 f"<td class='n'>{_money(r['contraction_mrr'])}</td>"
                 f"<td class='n'>{_money(r['churned_mrr'])}</td></tr>")
    h.append("</table><p class='note'>From mrr_changes: accounts paying at the window's start, "
             "their MRR then vs now (NRR = now / start; GRR leaves out expansion). Targets "
             "quoted in CS practice: NRR 100-110% mid-market, 110-130% enterprise.</p>")

    # when, not only whether: the time-to-event columns (churnml.jobs.report_forecast)
    from churnml.scoring.actions import load_playbooks

    when, when_summary = forecast_section(current, mrr_changes, as_of,
                                          load_playbooks().typical_share, top_n=top_n,
                                          nested=table)
    h.extend(when)
    summary.update(when_summary)

    h.append("<h2>Portfolio health</h2><table><tr><th>tier</th><th>accounts</th>"
             "<th>change</th><th>MRR</th><th>change</th></tr>")
    acc_change, mrr_change = change("accounts", "accounts_last_week"), \
        change("mrr", "mrr_last_week", money=True)
    for t, r in tiers.iterrows():
        h.append(f"<tr><td>{_tier(t)}</td><td class='n'>{int(r['accounts']):,}</td>"
                 f"<td class='n'>{acc_change[t]}</td><td class='n'>{_money(r['mrr'])}</td>"
                 f"<td class='n'>{mrr_change[t]}</td></tr>")
    h.append("</table>")
    plots = [plot_health_distribution(current, previous), plot_mrr_by_tier(tiers)]
    if len(current):
        plots.append(plot_risk_map(current))
    plots.append(plot_portfolio(portfolio))
    h.append('<div class="plots">' + "".join(f'<img alt="plot" src="{p}">' for p in plots)
             + "</div>")

    def account_rows(df: pd.DataFrame, kind: str) -> None:
        for _, r in df.iterrows():
            delta = r["health_change"]
            delta_s = "" if not np.isfinite(delta) else f" ({delta:+.0f})"
            if kind == "alerts":
                h.append(f"<tr><td>{_esc(r['account_id'])}</td><td class='n'>{_money(r['mrr_at_risk'])}</td>"
                         f"<td class='n'>{r['health_score']:.0f}{delta_s}</td><td>{_tier(r['health_tier'])}</td>"
                         f"<td>{_alerts_html(r['alerts'])}</td><td>{_action_html(r['next_best_action'], True)}</td></tr>")
            elif kind == "risks":
                h.append(f"<tr><td>{_esc(r['account_id'])}</td><td class='n'>{_money(r['mrr'])}</td>"
                         f"<td class='n'>{_pct(r['churn_probability'], 0)}</td>"
                         f"<td class='n'>{_money(r['mrr_at_risk'])}</td>"
                         f"<td class='n'>{r['health_score']:.0f}{delta_s}</td>"
                         f"<td>{_reasons_html(r['churn_reasons'])}</td>"
                         f"<td>{_action_html(r['next_best_action'])}</td></tr>")
            elif kind == "contraction":
                h.append(f"<tr><td>{_esc(r['account_id'])}</td><td class='n'>{_money(r['mrr'])}</td>"
                         f"<td class='n'>{_pct(r['contraction_probability'], 0)}</td>"
                         f"<td class='n'>{_money(r['mrr_at_risk_of_contraction'])}</td>"
                         f"<td class='n'>{r['health_score']:.0f}{delta_s}</td>"
                         f"<td>{_reasons_html(r['contraction_reasons'])}</td>"
                         f"<td>{_action_html(r['next_best_action'])}</td></tr>")
            else:
                h.append(f"<tr><td>{_esc(r['account_id'])}</td><td class='n'>{_money(r['mrr'])}</td>"
                         f"<td class='n'>{_pct(r['expansion_probability'], 0)}</td>"
                         f"<td class='n'>{_money(r['expected_expansion_mrr'])}</td>"
                         f"<td>{_esc(str(r['expansion_readiness']).replace('_', ' '))}</td>"
                         f"<td class='n'>{r['health_score']:.0f}</td>"
                         f"<td>{_reasons_html(r['expansion_reasons'])}</td></tr>")

    h.append(f"<h2>Alert queue</h2><p class='note'>Accounts with alerts this week, largest MRR "
             f"at risk first (top {top_n} of {int(summary['accounts_with_alerts']):,}).</p>")
    if len(alerts_df):
        h.append("<table><tr><th>account</th><th>MRR at risk</th><th>health (change)</th>"
                 "<th>tier</th><th>alerts</th><th>next best action</th></tr>")
        account_rows(alerts_df, "alerts")
        h.append("</table>")
    else:
        h.append("<p>No alerts this week.</p>")
    h.append(f"<h2>Top risks</h2><p class='note'>Accounts with a risk playbook this week (severity "
             f"medium or above), largest MRR at risk (churn probability x MRR over the model's "
             f"horizon) first, with the reasons behind the risk.</p>"
             "<table><tr><th>account</th><th>MRR</th><th>churn probability</th>"
             "<th>MRR at risk</th><th>health (change)</th><th>why</th><th>next best action</th></tr>")
    account_rows(risks_df, "risks")
    h.append("</table>")
    h.append(f"<h2>Ready for an expansion conversation</h2><p class='note'>Readiness ready now "
             f"or ready soon (no gating rule of playbooks.yaml blocks them: {_gates_text()}), "
             f"largest expected "
             f"expansion MRR first.</p>")
    if len(exp_df):
        h.append("<table><tr><th>account</th><th>MRR</th><th>expansion probability</th>"
                 "<th>expected expansion MRR</th><th>readiness</th><th>health</th><th>why</th></tr>")
        account_rows(exp_df, "expansion")
        h.append("</table>")
    else:
        h.append("<p>No account is ready for an expansion conversation this week.</p>")
    if has_contraction:
        h.append("<h2>Revenue at risk of contraction</h2><p class='note'>Accounts likely to "
                 "downgrade (fewer seats, a lower plan) while staying customers, largest MRR at "
                 "risk of contraction first, with the reasons.</p>")
        h.append("<table><tr><th>account</th><th>MRR</th><th>contraction probability</th>"
                 "<th>MRR at risk of contraction</th><th>health (change)</th><th>why</th>"
                 "<th>next best action</th></tr>")
        account_rows(con_df, "contraction")
        h.append("</table>")
    h.append(realized_section(realized))
    h.append(effects_section(effects, effects_by_dimension))
    h.append("<p class='note'>Generated by churnml score. Probabilities are calibrated 90-day "
             "probabilities; reasons come from the model's SHAP values.</p></body></html>")
    return "\n".join(h), summary
