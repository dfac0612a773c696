"""Evaluation plots of a training run (matplotlib, Agg backend: no display needed).

``save_all(result, folder)`` writes ``roc_pr.png``, ``calibration.png``, ``gain_lift.png``,
``shap_summary.png`` and ``backtest.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHAP_SAMPLE = 2000


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def roc_pr(result, path: Path) -> Path:
    from sklearn.metrics import precision_recall_curve, roc_curve

    plt = _plt()
    p = result.predictions
    y = p["label"].to_numpy()
    scorers = [("model", p["probability"]), ("health score", p["health_score_risk"])]
    if "logreg_probability" in p:
        scorers.append(("logistic regression", p["logreg_probability"]))
    if "oracle_probability" in p:
        scorers.append(("oracle", p["oracle_probability"]))
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    for label, s in scorers:
        s = np.asarray(s, dtype="float64")
        ok = np.isfinite(s)  # the oracle is undefined on rows the simulator has no state for
        fpr, tpr, _ = roc_curve(y[ok], s[ok])
        a.plot(fpr, tpr, label=label)
        prec, rec, _ = precision_recall_curve(y[ok], s[ok])
        b.plot(rec, prec, label=label)
    a.plot([0, 1], [0, 1], "k:", lw=0.8)
    a.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC, {result.config.target} (test)")
    b.axhline(y.mean(), color="k", ls=":", lw=0.8)
    b.set(xlabel="recall", ylabel="precision", title="precision-recall (test)")
    a.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def calibration(result, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, table in result.reliability.items():
        ax.plot(table["mean_predicted"], table["observed_rate"], "o-", label=f"{name}")
    hi = max(float(t[["mean_predicted", "observed_rate"]].max().max()) for t in result.reliability.values())
    ax.plot([0, hi], [0, hi], "k:", lw=0.8)
    ax.set(xlabel="mean predicted probability", ylabel="observed rate",
           title=f"reliability, 10 equal-count bins (ECE {result.metrics['test_ece']:.4f})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def gain_lift(result, path: Path) -> Path:
    plt = _plt()
    p = result.predictions
    y = p["label"].to_numpy(dtype="float64")
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    share = np.arange(1, len(y) + 1) / len(y)
    for label, column in (("model", "probability"), ("health score", "health_score_risk")):
        order = np.argsort(-p[column].to_numpy(), kind="stable")
        gain = np.cumsum(y[order]) / max(y.sum(), 1)
        a.plot(share, gain, label=label)
        b.plot(share[len(y) // 100:], (gain / share)[len(y) // 100:], label=label)
    a.plot([0, 1], [0, 1], "k:", lw=0.8)
    a.set(xlabel="share of observations (highest score first)", ylabel="share of events", title="cumulative gain")
    b.axhline(1, color="k", ls=":", lw=0.8)
    b.set(xlabel="share of observations", ylabel="lift", title="lift")
    a.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _summary_without_shap(contrib: np.ndarray, shown, max_display: int = 20) -> None:
    """A SHAP-style summary (beeswarm) drawn with matplotlib alone, for installs without the
    optional ``shap`` package: per feature (largest mean |contribution| on top) one dot per
    row at its contribution, coloured by the feature's value (low blue, high red, grey when
    missing or categorical)."""
    plt = _plt()
    order = np.argsort(np.abs(contrib).mean(axis=0))[::-1][:max_display][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(order) + 1.5))
    rng = np.random.default_rng(0)
    for row, j in enumerate(order):
        values = np.asarray(shown.iloc[:, j], dtype=object)
        numeric = np.array([v if isinstance(v, (int, float, np.number)) else np.nan
                            for v in values], dtype="float64")
        colour = np.full(len(numeric), np.nan)
        ok = np.isfinite(numeric)
        if ok.sum() > 1:
            ranks = numeric[ok].argsort().argsort()
            colour[ok] = ranks / max(1, ok.sum() - 1)
        y = row + rng.uniform(-0.3, 0.3, len(numeric))
        ax.scatter(contrib[~ok, j], y[~ok], s=6, color="0.6", alpha=0.6)
        ax.scatter(contrib[ok, j], y[ok], s=6, c=colour[ok], cmap="coolwarm", vmin=0, vmax=1,
                   alpha=0.7)
    ax.axvline(0, color="k", lw=0.6)
    ax.set_yticks(range(len(order)), [shown.columns[j] for j in order], fontsize=8)
    ax.set_xlabel("contribution (log-odds); colour: feature value, low blue to high red")


def shap_summary(result, path: Path) -> Path:
    """The SHAP summary of the test rows. With the optional ``shap`` package (``pip install
    churnml[explain]``) its ``summary_plot``; without it the same kind of plot drawn with
    matplotlib (:func:`_summary_without_shap`). The contributions are LightGBM's TreeSHAP
    either way (``TargetModel.contributions``)."""
    import pandas as pd

    plt = _plt()
    test = result.dataset.evaluation_rows()
    sample = test.sample(min(SHAP_SAMPLE, len(test)), random_state=result.config.seed)
    model = result.model
    contrib = model.contributions(sample).to_numpy()
    shown = pd.DataFrame(model.matrix(sample), columns=model.feature_names)
    try:
        import shap
    except ImportError:
        shap = None
    if shap is not None:
        plt.figure()
        shap.summary_plot(contrib, shown, show=False, max_display=20)
    else:
        _summary_without_shap(contrib, shown, max_display=20)
    fig = plt.gcf()
    fig.suptitle(f"SHAP summary, {result.config.target} (log-odds)")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def backtest(result, path: Path) -> Path:
    plt = _plt()
    bt = result.backtest
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(bt))
    ax.bar(x - 0.2, bt["roc_auc"], 0.4, label="model")
    ax.bar(x + 0.2, bt["health_roc_auc"], 0.4, label="health score")
    cross_sectional = result.split.policy == "cross_sectional"
    labels = ([f"fold {f}" for f in bt["fold"]] if cross_sectional else
              [f"fold {f}\n{s}..{e}" for f, s, e in zip(bt["fold"], bt["test_start"], bt["test_end"])])
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0.5, 1.0)
    if cross_sectional:
        ax.set(ylabel="ROC AUC on the fold's held-out accounts",
               title=f"cross-validation at {bt['test_start'].iloc[0]} (cross-sectional)")
    else:
        ax.set(ylabel="ROC AUC on the fold's test window", title="rolling-origin backtest")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def save_all(result, folder: Path) -> list[Path]:
    folder = Path(folder)
    return [
        roc_pr(result, folder / "roc_pr.png"),
        calibration(result, folder / "calibration.png"),
        gain_lift(result, folder / "gain_lift.png"),
        shap_summary(result, folder / "shap_summary.png"),
        backtest(result, folder / "backtest.png"),
    ]
