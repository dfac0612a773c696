"""The report's realized-performance parts (``churnml.jobs.monitoring``'s table as HTML):
the "Can we trust this week's scores?" panel at the top and the per-outcome plot of realized
AUC over the matured cohorts, model and health score side by side."""

from __future__ import annotations

import base64
import html
import io

import numpy as np
import pandas as pd

from churnml.jobs.monitoring import out_of_sample
from churnml.outcomes import OUTCOMES


def _esc(value) -> str:
    return html.escape(str(value))


def _auc(row) -> str:
    value = row["roc_auc"]
    if not np.isfinite(value):
        return "-"
    low, high = row.get("roc_auc_ci_low", np.nan), row.get("roc_auc_ci_high", np.nan)
    interval = f" [{low:.3f}, {high:.3f}]" if np.isfinite(low) and np.isfinite(high) else ""
    return f"{value:.3f}{interval}"


def trust_panel(table: pd.DataFrame | None, as_of: pd.Timestamp) -> str:
    """"Can we trust this week's scores?": per outcome, how the model and the health score did
    on the latest cohort whose outcomes are known and that the model did not train on."""
    h = ["<h2>Can we trust this week's scores?</h2>"]
    if table is None:
        h.append("<p class='note'>Realized performance was not computed for this report.</p>")
        return "\n".join(h)
    counted = out_of_sample(table)
    h.append("<p class='note'>Each week's scores are checked once their outcomes are known "
             "(after the label delay: the model's horizon). Weeks inside the scoring model's own "
             "training span are left out, so these are out-of-sample figures. AUC 0.5 is a coin "
             "toss; the interval is a 95% account bootstrap. Calibration slope 1 means the "
             "probabilities are as extreme as they should be.</p>")
    h.append("<table><tr><th>outcome</th><th>latest matured week (outcome known on)</th>"
             "<th>accounts (events)</th><th>model AUC</th><th>health score AUC</th>"
             "<th>model ECE</th><th>calibration slope</th><th>weeks checked</th></tr>")
    for outcome in OUTCOMES:
        rows = counted[counted["outcome"] == outcome.name]
        every = table[table["outcome"] == outcome.name]
        if not len(every):
            h.append(f"<tr><td>{outcome.name}</td><td colspan='7'>no scored week has matured yet "
                     f"(outcomes are known one horizon after the week is scored)</td></tr>")
            continue
        if not len(rows):
            h.append(f"<tr><td>{outcome.name}</td><td colspan='7'>{every['as_of'].nunique()} "
                     f"matured week(s), all inside the scoring model's training span: no "
                     f"out-of-sample figure yet</td></tr>")
            continue
        last_week = rows["as_of"].max()
        latest = rows[rows["as_of"] == last_week].set_index("scorer")
        model = latest.loc["model"] if "model" in latest.index else None
        health = latest.loc["health_score"] if "health_score" in latest.index else None
        base = model if model is not None else health
        assert base is not None
        h.append(
            f"<tr><td>{outcome.name}</td><td>{last_week:%Y-%m-%d} "
            f"({pd.Timestamp(base['matured_on']):%Y-%m-%d})</td>"
            f"<td>{int(base['n']):,} ({int(base['positives']):,})</td>"
            f"<td>{_auc(model) if model is not None else '-'}</td>"
            f"<td>{_auc(health) if health is not None else '-'}</td>"
            f"<td>{model['ece']:.3f}</td><td>{model['calibration_slope']:.2f}</td>"
            if model is not None else
            f"<tr><td>{outcome.name}</td><td>{last_week:%Y-%m-%d}</td>"
            f"<td>{int(base['n']):,} ({int(base['positives']):,})</td><td>-</td>"
            f"<td>{_auc(health)}</td><td>-</td><td>-</td>")
        h.append(f"<td>{rows['as_of'].nunique()}</td></tr>")
    h.append("</table>")
    return "\n".join(h)


def plot_realized(table: pd.DataFrame) -> str | None:
    """Realized AUC per matured week, a line per scorer, a panel per outcome (out-of-sample
    weeks only); None when there is nothing to plot."""
    counted = out_of_sample(table)
    outcomes = [o.name for o in OUTCOMES if (counted["outcome"] == o.name).any()]
    if not outcomes:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(outcomes), figsize=(3.6 * len(outcomes), 2.9), squeeze=False)
    colors = {"model": "#0969da", "health_score": "#bf8700"}
    labels = {"model": "model", "health_score": "health score"}
    for ax, name in zip(axes[0], outcomes):
        rows = counted[counted["outcome"] == name].sort_values("as_of")
        for key, group in rows.groupby("scorer", sort=False):
            scorer = str(key)
            x = pd.to_datetime(group["as_of"])
            ax.plot(x, group["roc_auc"], marker="o", markersize=3, color=colors.get(scorer),
                    label=labels.get(scorer, scorer))
            has_ci = group["roc_auc_ci_low"].notna()
            if has_ci.any():
                ax.fill_between(x[has_ci], group["roc_auc_ci_low"][has_ci],
                                group["roc_auc_ci_high"][has_ci], color=colors.get(scorer),
                                alpha=0.15, linewidth=0)
        ax.axhline(0.5, color="#8c959f", linewidth=0.8, linestyle=":")
        ax.set_title(f"{name}: realized AUC by week scored", fontsize=9)
        ax.set_ylim(0.4, 1.0)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0][0].legend(frameon=False, fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def realized_section(table: pd.DataFrame | None) -> str:
    """"Realized performance": the plot and where the table lives."""
    if table is None or not len(out_of_sample(table)):
        return ""
    image = plot_realized(table)
    h = ["<h2>Realized performance</h2><p class='note'>Each matured week scored, out of sample: "
         "how well this week's kind of score ranked the accounts whose outcome is now known "
         "(model vs the health score). Every figure per week, outcome and scorer is in "
         f"<code>monitoring/realized.parquet</code> of the scores folder.</p>"]
    if image:
        h.append(f"<img alt='realized AUC per matured week' src='{image}'>")
    return "\n".join(h)
