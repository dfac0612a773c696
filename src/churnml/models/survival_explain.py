"""Timing reasons of the time-to-event model: why an outcome is expected *soon*, per outcome.

The competing-risk model (:mod:`churnml.models.survival`) is one LightGBM multiclass booster
over {none, churn, expansion, contraction}. In period ``j`` the hazard of outcome ``k`` is
``softmax(raw)_k``; the log-odds of ``k`` against "no event" is ``raw_k - raw_none`` (plus the
model's class shift, a constant). That difference is what drives the hazard of ``k``, so it is
what a timing reason explains:

- **where**: the account's *current period* row, the first of the person-period rows the model
  scores for it (period 0: ``period_index`` 0, ``time_since_signup_days`` = ``tenure_days``,
  ``time_to_renewal_days`` = ``days_to_renewal``), encoded as
  ``SurvivalModel.hazards`` encodes it;
- **what**: exact TreeSHAP (LightGBM ``pred_contrib=True``, which on a multiclass booster gives
  one block of ``n_features + 1`` columns per class, the base value last) of class ``k`` minus
  the same of class "none". Per row and outcome the contributions plus the base value equal
  ``raw_k - raw_none`` of the booster (:func:`timing_contributions`; a property test checks it
  against LightGBM's raw scores);
- **the reasons**: the binary models' machinery on those contributions
  (:func:`churnml.models.explain.top_k_indices` and :func:`~churnml.models.explain.build_reasons`):
  up to three ``{feature, value, contribution, text}``, those raising the log-odds first, in
  the feature catalog's plain words (its ``reason`` templates: the same sentences as
  ``<outcome>_reasons``). Two model columns that carry the same fact in the current period are
  one reason: ``time_since_signup_days`` counts with ``tenure_days`` and
  ``time_to_renewal_days`` with ``days_to_renewal`` (their contributions add up: TreeSHAP is
  additive), named and worded as the catalog feature. ``period_index`` is 0 for every account
  in its current period: it describes the period, not the account, and is never a reason (its
  contribution stays in :func:`timing_contributions`).

Baseline: a model that starts from a baseline hazard per renewal stratum adds its stratum's
log odds to the booster's; that part is shared out over the stratum's features by exact Shapley
values (:func:`timing_contributions`), so "the contract renews in 12 days" stays a reason.

Calibration: the reasons explain the model's *uncalibrated* hazard log-odds. A calibration
of the logits by class (the model's ``class_bias``, or any per-class shift) moves every
account's base value by the same amount and leaves each contribution, and so the ranking of
the reasons, unchanged.

Vectorised: one ``pred_contrib`` call for all accounts and classes, the class difference and
the grouping are array operations, and the sentences are rendered once per distinct (feature,
value) as for the binary models.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from churnml.models.explain import build_reasons, top_k_indices
#: rows up to which LightGBM predicts on one thread (a request's few accounts; same numbers)
SMALL_ROWS = 64


def current_period_matrix(model, features: pd.DataFrame, columns=None) -> np.ndarray:
    """``SurvivalModel.current_period_matrix``: each account's current-period row (period 0)."""
    return model.current_period_matrix(features, columns)


def timing_contributions(model, X: np.ndarray) -> np.ndarray:
    """(n, outcomes, n_features + 1) exact TreeSHAP of ``raw_k - raw_none`` at the rows of
    ``X`` (outcome ``k`` in ``model.classes`` order after "none"), the base value last: per
    row and outcome they sum to the model's ``raw_k - raw_none`` (``model.raw_scores``).

    A model with a baseline per renewal stratum (``survival.HazardBaseline``) starts each row
    from its stratum's log odds: that part is explained by exact Shapley values over the
    stratum's features (``HazardBaseline.contributions``), added to the booster's TreeSHAP of
    the same features (the renewal state to ``time_to_renewal_days``, a level of ``by`` to
    that feature), and the reference (their mean over the training strata) to the base value."""
    classes = len(model.classes)
    n, width = len(X), len(model.feature_names) + 1
    if n == 0:
        return np.zeros((0, classes - 1, width))
    kwargs: dict[str, Any] = {"num_threads": 1} if n <= SMALL_ROWS else {}
    contrib = np.asarray(model.booster.predict(X, pred_contrib=True, **kwargs), dtype="float64")
    if contrib.shape != (n, classes * width):
        raise ValueError(f"pred_contrib of the time-to-event booster has shape {contrib.shape}; "
                         f"{classes} classes of {width} columns were expected")
    blocks = contrib.reshape(n, classes, width)
    out = blocks[:, 1:, :] - blocks[:, :1, :]
    baseline = getattr(model, "hazard_baseline", None)
    if baseline is not None:
        phi, reference = baseline.contributions(X, model.feature_names)
        names = list(model.feature_names)
        for axis, feature in enumerate(baseline.axis_features()):
            if feature in names:
                out[:, :, names.index(feature)] += phi[:, :, axis]
        out[:, :, -1] += reference
    return out


class TimingExplainer:
    """The reason columns of one time-to-event model, worded with one feature catalog.

    ``groups``: the reason features (model features, with each time feature merged into its
    catalog feature, ``model.time_feature_sources``, and ``model.period_feature`` left out) and ``membership`` (n_features,
    n_groups), the 0/1 matrix that sums model contributions into them."""

    def __init__(self, model, catalog) -> None:
        from churnml.features.catalog import static_attribute_spec
        from churnml.models.model import _spec_renderer, spec_record

        self.model = model
        self.catalog = catalog
        names = list(model.feature_names)
        groups: list[str] = []
        source: list[int] = []  # per group: the model column whose values are shown
        columns: dict[str, list[int]] = {}
        same_as = dict(model.time_feature_sources)
        for j, name in enumerate(names):
            if name == model.period_feature:
                continue
            columns.setdefault(same_as.get(name, name), []).append(j)
        for group, js in columns.items():
            groups.append(group)
            # the catalog feature's own column when the model has it, else the time feature
            source.append(names.index(group) if group in names else js[0])
        membership = np.zeros((len(names), len(groups)))
        for g, group in enumerate(groups):
            membership[columns[group], g] = 1.0
        self.groups = groups
        self.source = source
        self.membership = membership
        renderers: list[Callable[[Any], str]] = []
        for group in groups:
            kind = "categorical" if group in model.categories else "numeric"
            spec = catalog.get(group) if catalog is not None else None
            renderers.append(_spec_renderer(spec_record(
                spec if spec is not None else static_attribute_spec(group, kind))))
        self.renderers = renderers

    def grouped(self, contrib: np.ndarray) -> np.ndarray:
        """(n, outcomes, n_groups) contributions of the reason features (no base value)."""
        return contrib[:, :, :-1] @ self.membership

    def reasons(self, features: pd.DataFrame, top_k: int = 3, columns=None,
                ) -> dict[str, list[list[dict]]]:
        """Per outcome (registry name), per row, up to ``top_k`` reasons
        ``{feature, value, contribution, text}`` (module docstring)."""
        n = len(features)
        outcomes = list(self.model.classes[1:])
        if n == 0:
            return {o: [] for o in outcomes}
        X = current_period_matrix(self.model, features, columns)
        grouped = self.grouped(timing_contributions(self.model, X))
        tops = [top_k_indices(grouped[:, k, :], top_k) for k in range(len(outcomes))]
        used = sorted({int(g) for idx, valid in tops for g in idx[valid].tolist()})
        shown = self.model.encoder.display_values(features, X, sorted({self.source[g] for g in used}),
                                                  columns)
        values: list[Sequence[object] | None] = [
            shown.get(self.source[g]) if g in used else None for g in range(len(self.groups))]
        return {outcome: build_reasons(grouped[:, k, :], values, self.groups, self.renderers,
                                       top_k, top=tops[k])
                for k, outcome in enumerate(outcomes)}


def timing_reasons(model, features: pd.DataFrame, top_k: int = 3, *, catalog=None,
                   columns=None) -> Mapping[str, list[list[dict]]]:
    """:meth:`TimingExplainer.reasons` of ``model`` worded with ``catalog`` (the default
    feature catalog when None, read once per model); the explainer is kept on the model."""
    cache = model.__dict__.setdefault("_timing_explainers", {})
    key = "default" if catalog is None else id(catalog)
    explainer = cache.get(key)
    if explainer is None or (catalog is not None and explainer.catalog is not catalog):
        if catalog is None:
            from churnml.features.catalog import load_catalog

            catalog = load_catalog()
        if len(cache) > 4:
            cache.clear()
        explainer = cache[key] = TimingExplainer(model, catalog)
    return explainer.reasons(features, top_k, columns)


#: the MLflow model metadata key of a ``churnml-time-to-event`` version whose pyfunc returns
#: the timing reasons (:func:`pyfunc_output`); versions registered before have only floats
PYFUNC_REASONS_KEY = "churnml_timing_reasons"


def pyfunc_output(model, features: pd.DataFrame, top_k: int = 3) -> pd.DataFrame:
    """What the registered pyfunc (``churnml.models.pyfunc_survival``) returns: the model's
    ``predict`` columns and, per outcome, ``{outcome}_timing_reasons`` as JSON text of the
    reason records (a form ``mlflow.pyfunc.spark_udf`` can return, like the outcome models' pyfunc)."""
    import json

    from churnml.outcomes import get_outcome

    out = model.predict(features)
    reasons = model.timing_reasons(features, top_k)
    for name, rows in reasons.items():
        out[get_outcome(name).timing_reasons_column] = [json.dumps(r, allow_nan=False) for r in rows]
    return out
