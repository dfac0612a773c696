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


def trust_panel(table: pd.DataFrame | None, as_of: pd.Timestamp, status=None) -> str:
    """"Can we trust this week's scores?": per outcome, how the model and the health score did
    on the latest cohort whose outcomes are known and that the model did not train on; then
    (``status``, a ``churnml.jobs.drift.WeekStatus``) this week's drift, the label-free
    estimate and the retrain status."""
    h = ["<h2>Can we trust this week's scores?</h2>"]
    if table is None:
        h.append("<p class='note'>Realized performance was not computed for this report.</p>")
        h.append(status_table(status))
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
    h.append(status_table(status))
    return "\n".join(h)


def status_table(status) -> str:
    """This week's drift, CBPE estimate and retrain status per outcome (empty without one)."""
    if status is None:
        return ""
    h = ["<p class='note'>This week, before its outcomes are known: drift of the score and of "
         "the features against the profile of the data the model was trained on (PSI: below 0.1 "
         "stable, above the configured alert shifted); the AUC expected from the calibrated "
         "probabilities alone (CBPE; it assumes the calibration still holds and the relation of "
         "features to the outcome has not changed, so it cannot see concept drift); and whether "
         "the retrain rules fire.</p>",
         "<table><tr><th>outcome</th><th>score drift (PSI)</th><th>features shifted</th>"
         "<th>estimated AUC (training)</th><th>retrain?</th></tr>"]
    for outcome in OUTCOMES:
        def of(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[frame["outcome"] == outcome.name] if len(frame) else frame

        drift, estimated, retrain = of(status.drift), of(status.estimated), of(status.retrain)
        if not len(estimated) and not len(retrain):
            h.append(f"<tr><td>{outcome.name}</td><td colspan='4'>no champion scored this "
                     f"outcome</td></tr>")
            continue
        score = drift[drift["kind"] == "score"] if len(drift) else drift
        features = drift[drift["kind"] == "feature"] if len(drift) else drift
        if len(score):
            s = score.iloc[0]
            score_text = f"{s['psi']:.3f} ({_esc(s['status'])})"
        else:
            score_text = "no reference profile for this version"
        if len(features):
            shifted = features[features["status"] == "shifted"].sort_values("psi", ascending=False)
            top = shifted.head(3)
            names = ", ".join(f"{_esc(r['name'])} {r['psi']:.2f}" for _, r in top.iterrows())
            feature_text = (f"{len(shifted)} of {len(features)}"
                            + (f": {names}" if names else ""))
        else:
            feature_text = "-"
        if len(estimated):
            e = estimated.iloc[0]
            training = e["training_roc_auc"]
            estimate_text = (f"{e['estimated_roc_auc']:.3f}"
                             + (f" ({training:.3f})" if np.isfinite(training) else ""))
        else:
            estimate_text = "-"
        if len(retrain):
            r = retrain.iloc[0]
            retrain_text = (f"<b>yes</b>: {_esc(r['retrain_reason'])}"
                            if bool(r["retrain_recommended"]) else "no")
        else:
            retrain_text = "-"
        h.append(f"<tr><td>{outcome.name}</td><td>{score_text}</td><td>{feature_text}</td>"
                 f"<td>{estimate_text}</td><td>{retrain_text}</td></tr>")
    h.append("</table>")
    due = [str(n) for n in status.retrain.loc[status.retrain["retrain_recommended"].astype(bool),
                                              "outcome"]] if len(status.retrain) else []
    if due:
        commands = " and ".join(f"<code>churnml train --data DIR --target {_esc(n)} --scores "
                                f"OUT</code>" for n in due)
        h.append(f"<p class='note'>To retrain: {commands} (OUT: this report's output folder). "
                 "Given <code>--scores</code>, the gate promotes the "
                 "new version unless it is worse than the champion by "
                 "<code>promotion.after_retrain_margin</code> or more, since the champion's own "
                 "realized performance has already fallen, and trains with the outcome's "
                 "recency weight for a drift (<code>training.recency_after_retrain_days</code>; "
                 "churn: 90 days) so that the newest weeks count most.</p>")
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
