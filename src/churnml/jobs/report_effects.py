"""The report's "What each play has been measured to do" section (``churnml.jobs.effects``'s
table as HTML): per play, the recommended accounts against the randomized holdout once their
outcome is known, MRR saved to date, and a plot of each play's effect with its interval and
the MRR it saved."""

from __future__ import annotations

import base64
import html
import io

import numpy as np
import pandas as pd


def _esc(value) -> str:
    return html.escape(str(value))


def _pts(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x * 100:+.1f}"


def _ci(low: float, high: float) -> str:
    return "" if not np.isfinite(low) else f" [{low * 100:+.1f}, {high * 100:+.1f}]"


def _rate(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x:.1%}"


def _money(x: float) -> str:
    if not np.isfinite(x):
        return "-"
    return f"-${-x:,.0f}" if x < 0 else f"${x:,.0f}"


def _num(x: float) -> str:
    if x == np.inf:
        return "never"
    return "-" if not np.isfinite(x) else f"{x:,.1f}"


def plot_effects(table: pd.DataFrame) -> str | None:
    """Left: each measured play's ITT effect (percentage points, positive = helps) with its
    interval; right: MRR saved to date per play. None when no play is measured."""
    measured = table[np.isfinite(table["effect"].to_numpy(dtype="float64"))]
    if not len(measured):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = measured.sort_values("playbook", ascending=False)
    y = np.arange(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 0.45 * len(rows) + 1.4), squeeze=False)
    left, right = axes[0]
    effect = rows["effect"].to_numpy(dtype="float64") * 100
    low = rows["effect_ci_low"].to_numpy(dtype="float64") * 100
    high = rows["effect_ci_high"].to_numpy(dtype="float64") * 100
    colors = np.where(low > 0, "#1a7f37", np.where(high < 0, "#cf222e", "#57606a"))
    left.hlines(y, low, high, colors=list(colors), linewidth=1.5)
    left.scatter(effect, y, c=list(colors), s=18, zorder=3)
    left.axvline(0, color="#8c959f", linewidth=0.8, linestyle=":")
    left.set_yticks(y, rows["playbook"].tolist(), fontsize=7)
    left.set_title("effect when recommended (ITT, points)", fontsize=9)
    saved = rows["mrr_saved_to_date"].to_numpy(dtype="float64")
    right.barh(y, np.nan_to_num(saved), color=list(np.where(saved >= 0, "#0969da", "#cf222e")))
    right.axvline(0, color="#8c959f", linewidth=0.8)
    right.set_yticks(y, [""] * len(rows))
    right.set_title("MRR saved to date (ITT)", fontsize=9)
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    right.xaxis.set_major_locator(MaxNLocator(4))
    right.xaxis.set_major_formatter(FuncFormatter(
        lambda v, _pos: ("-" if v < 0 else "") + (f"${abs(v) / 1000:,.0f}k" if abs(v) >= 1000
                                                  else f"${abs(v):,.0f}")))
    for ax in (left, right):
        ax.tick_params(axis="x", labelsize=7)
        ax.spines[["top", "right"]].set_visible(False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def dimensions_table(dimensions: pd.DataFrame | None) -> list[str]:
    """"Which health dimension's alerts led to saves": the churn plays grouped by the health
    dimension of the reason behind each recommendation (descriptive)."""
    if dimensions is None or not len(dimensions):
        return []
    h = ["<h3>Which health dimension's alerts led to saves</h3><p class='note'>The churn plays "
         "grouped by the health dimension of the signal behind each recommendation "
         "(descriptive: a dimension pools the plays its alerts led to). Positive points: fewer "
         "churns among the recommended accounts than among the held-out ones. Also printed by "
         "<code>churnml calibrate-health --scores</code>.</p>",
         "<table><tr><th>dimension</th><th>plays</th><th>recommended (worked)</th>"
         "<th>held out</th><th>churn rate recommended / held out</th>"
         "<th>ITT points [interval]</th><th>PP points</th><th>MRR saved to date</th>"
         "<th>verdict</th></tr>"]
    for _, r in dimensions.iterrows():  # one row per health dimension
        h.append(
            f"<tr><td>{_esc(r['dimension'])}</td><td>{_esc(r['plays'])}</td>"
            f"<td class='n'>{int(r['n_recommended']):,} ({int(r['n_worked']):,})</td>"
            f"<td class='n'>{int(r['n_holdout']):,}</td>"
            f"<td class='n'>{_rate(r['rate_recommended'])} / {_rate(r['rate_holdout'])}</td>"
            f"<td class='n'>{_pts(r['effect'])}{_ci(r['effect_ci_low'], r['effect_ci_high'])}"
            f"</td><td class='n'>{_pts(r['effect_pp'])}</td>"
            f"<td class='n'>{_money(r['mrr_saved_to_date'])}</td>"
            f"<td>{_esc(r['verdict'])}</td></tr>")
    h.append("</table>")
    return h


def effects_section(table: pd.DataFrame | None,
                    dimensions: pd.DataFrame | None = None) -> str:
    """"What each play has been measured to do": the table of ``effects.parquet``, MRR saved
    to date and the plot, then the health dimensions' table (``dimensions.parquet``); empty
    when no play has been recommended yet."""
    if table is None or not len(table):
        return ""
    h = ["<h2>What each play has been measured to do</h2>"]
    saved = table["mrr_saved_to_date"].to_numpy(dtype="float64")
    measured = np.isfinite(saved)
    confidence = float(table["confidence"].iloc[0])
    h.append(
        "<p class='note'>Each week a share of the recommended accounts is held out at random "
        "(recommended but deliberately not worked). Once an account's outcome is known (one "
        "horizon after the recommendation; younger ones are not counted), the recommended "
        "accounts are compared with the held-out ones: <b>ITT</b> (intention to treat: "
        "recommended vs held out, whether worked or not) is the fair comparison; <b>PP</b> "
        "(per protocol: worked vs held out) is shown beside it and is biased when the team "
        "chooses whom to work. Points: percentage points of the play's outcome, positive = the "
        f"play helps; intervals at {confidence:.0%}. Every figure is in "
        "<code>effects/effects.parquet</code> of the scores folder "
        "(<code>churnml effects</code>).</p>")
    if measured.any():
        h.append(f"<p><b>MRR saved to date: {_money(float(np.nansum(saved)))}</b> (ITT MRR "
                 f"effect x matured recommended accounts, over the {int(measured.sum())} "
                 "measured play(s); see each play's interval).</p>")
    h.append("<table><tr><th>play</th><th>outcome</th><th>recommended (worked)</th>"
             "<th>held out</th><th>rate recommended / held out</th><th>ITT points [interval]"
             "</th><th>PP points</th><th>NNT</th><th>MRR saved per action</th>"
             "<th>MRR saved to date</th><th>verdict</th></tr>")
    for _, r in table.iterrows():  # one row per play
        h.append(
            f"<tr><td>{_esc(r['playbook'])}</td><td>{_esc(r['outcome'])}</td>"
            f"<td class='n'>{int(r['n_recommended']):,} ({int(r['n_worked']):,})</td>"
            f"<td class='n'>{int(r['n_holdout']):,}</td>"
            f"<td class='n'>{_rate(r['rate_recommended'])} / {_rate(r['rate_holdout'])}</td>"
            f"<td class='n'>{_pts(r['effect'])}{_ci(r['effect_ci_low'], r['effect_ci_high'])}"
            f"</td><td class='n'>{_pts(r['effect_pp'])}</td><td class='n'>{_num(r['nnt'])}</td>"
            f"<td class='n'>{_money(r['mrr_saved_per_action'])}</td>"
            f"<td class='n'>{_money(r['mrr_saved_to_date'])}</td>"
            f"<td>{_esc(r['verdict'])}</td></tr>")
    h.append("</table>")
    image = plot_effects(table)
    if image:
        h.append(f"<img alt='measured effect of each play and MRR saved to date' src='{image}'>")
    h.extend(dimensions_table(dimensions))
    return "\n".join(h)


__all__ = ["dimensions_table", "effects_section", "plot_effects"]
