"""A play's effect by account (heterogeneous treatment effect) from randomized holdout data,
and its evaluation (Qini, uplift at k). See ``docs/actions.md``, "Uplift by account".

:class:`XLearner` (Kunzel et al., PNAS 2019) on LightGBM: outcome models per arm, then the
imputed effects of each arm regressed on the features, blended by the known share treated.
The treatment is randomized by the holdout (a stable hash within churn-risk deciles), so the
propensity is a constant, known by design, not a fitted model. ``effect(X)`` estimates
``E[y | treated, X] - E[y | control, X]``: negative is good for a risk outcome (fewer churns),
the caller signs it (``benefit``).

Evaluation on held-out randomized rows (:func:`qini_curve`, :func:`qini_coefficient`,
:func:`uplift_at_k`): rows ranked by predicted benefit; at each cut, the treated rows' good
outcomes minus the control rows' scaled to the treated count. Vectorised (sorts and cumsums).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

#: the effect models an :class:`XLearner` keeps (the outcome models only impute)
EFFECT_MODELS = ("tau1", "tau0")

#: small trees: held-out arms hold tens to thousands of rows
DEFAULT_PARAMS: dict[str, Any] = {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 15,
                                  "min_child_samples": 20, "subsample": 0.8,
                                  "subsample_freq": 1, "colsample_bytree": 0.8, "verbose": -1,
                                  "n_jobs": 1}


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class XLearner:
    """X-learner with LightGBM base learners; ``seed`` fixes every random step."""

    seed: int = 0
    params: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_PARAMS))
    binary: bool = True
    #: the effect models' boosters (``lightgbm.Booster``): ``tau1``, ``tau0``
    _models: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _share: float = field(default=float("nan"), init=False)

    def _outcome_model(self):
        import lightgbm as lgb

        kind = lgb.LGBMClassifier if self.binary else lgb.LGBMRegressor
        return kind(random_state=self.seed, **self.params)

    def _effect_model(self):
        import lightgbm as lgb

        return lgb.LGBMRegressor(random_state=self.seed + 1, **self.params)

    def _predict(self, model, X) -> np.ndarray:
        if self.binary:
            return model.predict_proba(X)[:, 1]
        return model.predict(X)

    def fit(self, X, treated, y) -> "XLearner":
        from churnml.errors import UsageError

        treated = np.asarray(treated, dtype=bool)
        y = np.asarray(y, dtype="float64")
        X = np.asarray(X, dtype="float64")
        if treated.all() or not treated.any():
            raise UsageError("uplift needs both treated and held-out rows; got "
                             f"{int(treated.sum())} treated of {len(treated)}")
        if self.binary and not (((y == 0) | (y == 1)).all()
                                and 0 < y[treated].sum() < treated.sum()
                                and 0 < y[~treated].sum() < (~treated).sum()):
            raise UsageError("uplift on a binary outcome needs both outcomes in each arm")
        self._share = float(treated.mean())
        mu1 = self._outcome_model().fit(X[treated], y[treated])
        mu0 = self._outcome_model().fit(X[~treated], y[~treated])
        d1 = y[treated] - self._predict(mu0, X[treated])
        d0 = self._predict(mu1, X[~treated]) - y[~treated]
        self._models = {"tau1": self._effect_model().fit(X[treated], d1).booster_,
                        "tau0": self._effect_model().fit(X[~treated], d0).booster_}
        return self

    def to_dict(self) -> dict[str, Any]:
        """The fitted learner as JSON-ready values: its settings, the share treated and each
        effect model as LightGBM's text model (exact: thresholds and leaves in full
        precision)."""
        if not self._models:
            from churnml.errors import NotFittedError

            raise NotFittedError("the X-learner is not fitted")
        boosters = {name: self._models[name].model_to_string() for name in EFFECT_MODELS}
        return {"seed": int(self.seed), "params": dict(self.params), "binary": bool(self.binary),
                "share_treated": float(self._share), "boosters": boosters,
                "boosters_sha256": {name: _sha256(text) for name, text in boosters.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], n_features: int | None = None) -> "XLearner":
        """The learner :meth:`to_dict` wrote; ``ValueError`` naming what is wrong otherwise
        (a booster whose text does not match its SHA-256, is not a LightGBM text model, or
        reads another number of features than ``n_features``). The checksum is checked
        before LightGBM parses the text: its parser aborts the process on some damaged
        models (a truncated tree) instead of raising."""
        import lightgbm as lgb

        out = cls(seed=int(data["seed"]), params=dict(data["params"]),
                  binary=bool(data["binary"]))
        share = float(data["share_treated"])
        if not 0 < share < 1:
            raise ValueError(f"share_treated {share!r} is not in (0, 1)")
        out._share = share
        boosters = data["boosters"]
        for name in EFFECT_MODELS:
            text = boosters[name]
            if not isinstance(text, str):
                raise ValueError(f"booster {name!r} is not a LightGBM text model")
            if _sha256(text) != data["boosters_sha256"][name]:
                raise ValueError(f"booster {name!r} does not match its SHA-256 (damaged)")
            try:
                booster = lgb.Booster(model_str=text)
            except Exception as exc:  # LightGBMError: the C++ parser's message
                raise ValueError(f"booster {name!r} is not a LightGBM text model: {exc}"
                                 ) from exc
            if n_features is not None and booster.num_feature() != n_features:
                raise ValueError(f"booster {name!r} reads {booster.num_feature()} features, "
                                 f"the set names {n_features}")
            out._models[name] = booster
        return out

    def effect(self, X) -> np.ndarray:
        """Estimated ``E[y | treated] - E[y | control]`` per row."""
        X = np.asarray(X, dtype="float64")
        g = self._share
        return (g * np.asarray(self._models["tau0"].predict(X), dtype="float64")
                + (1 - g) * np.asarray(self._models["tau1"].predict(X), dtype="float64"))


def qini_curve(benefit_score: np.ndarray, treated: np.ndarray, good: np.ndarray,
               ) -> tuple[np.ndarray, np.ndarray]:
    """``(share targeted, incremental good outcomes)``: rows ranked by ``benefit_score``
    (highest first, ties in row order); at each cut ``k``, good outcomes among the treated
    minus those among the controls scaled by ``n_treated(k) / n_control(k)`` (Radcliffe's
    Qini). ``good``: 1 for the outcome the play wants (a churn avoided: ``1 - churned``)."""
    order = np.argsort(-np.asarray(benefit_score, dtype="float64"), kind="stable")
    t = np.asarray(treated, dtype=bool)[order]
    g = np.asarray(good, dtype="float64")[order]
    nt = np.cumsum(t)
    nc = np.cumsum(~t)
    yt = np.cumsum(g * t)
    yc = np.cumsum(g * ~t)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = yt - np.where(nc > 0, yc * nt / np.maximum(nc, 1), 0.0)
    share = np.arange(1, len(order) + 1) / len(order)
    return np.concatenate([[0.0], share]), np.concatenate([[0.0], q])


def qini_coefficient(benefit_score, treated, good) -> float:
    """Area between the Qini curve and the straight line of random targeting, per row
    (incremental good outcomes per account targeted, averaged over every targeting share;
    0 = no better than random, higher is better)."""
    x, q = qini_curve(benefit_score, treated, good)
    gap = (q - x * q[-1]) / max(len(x) - 1, 1)
    return float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(x)))


def uplift_at_k(benefit_score, treated, good, k: float) -> float:
    """Good-outcome rate of the treated minus that of the controls among the top ``k`` share
    of rows by ``benefit_score`` (nan when an arm is absent there)."""
    score = np.asarray(benefit_score, dtype="float64")
    n = max(1, int(round(k * len(score))))
    top = np.argsort(-score, kind="stable")[:n]
    t = np.asarray(treated, dtype=bool)[top]
    g = np.asarray(good, dtype="float64")[top]
    if not t.any() or t.all():
        return float("nan")
    return float(g[t].mean() - g[~t].mean())


# --------------------------------------------------------------------------------------------
# the queue's learned effects: one X-learner per play that has enough randomized data
# --------------------------------------------------------------------------------------------

#: where ``churnml effects`` and the weekly job keep the fitted set (``OUT/effects/``)
UPLIFT_NAME = "uplift.json"
#: bump when :class:`UpliftSet`'s JSON changes shape: an older file is then ignored (prior
#: used, a warning logged); 1 was the pickle ``uplift.pkl`` (no longer read)
UPLIFT_FORMAT = 2
#: the fields of one play in the JSON besides its learner
_PLAY_FIELDS = ("playbook", "outcome", "is_risk", "n_recommended", "n_holdout",
                "events_recommended", "events_holdout")


@dataclass
class PlayUplift:
    """One play's fitted model and the data it was fitted on."""

    playbook: str
    outcome: str
    is_risk: bool  # a risk outcome (churn, contraction): benefit = -effect
    n_recommended: int
    n_holdout: int
    events_recommended: int
    events_holdout: int
    model: XLearner


@dataclass
class UpliftSet:
    """The plays whose effect by account is learned (:func:`fit_uplift_set`), the output
    columns the models read (``features``) and the last week of the units they learnt from."""

    features: list[str]
    plays: dict[str, PlayUplift]
    fitted_through: str = ""
    #: the last day whose outcomes the models saw (max of a unit's as_of + horizon): a week
    #: scored before it must not use them (point in time), :meth:`usable_on`
    outcomes_known_on: str = ""
    format: int = UPLIFT_FORMAT

    def to_dict(self) -> dict[str, Any]:
        """The set as JSON-ready values (``json.dumps`` writes it; :meth:`from_dict` reads
        it back): the format version, the features, the dates and per play its counts and
        :meth:`XLearner.to_dict`."""
        return {"format": UPLIFT_FORMAT, "kind": "churnml.uplift_set",
                "features": list(self.features), "fitted_through": self.fitted_through,
                "outcomes_known_on": self.outcomes_known_on,
                "plays": {name: {**{k: getattr(p, k) for k in _PLAY_FIELDS},
                                 "model": p.model.to_dict()}
                          for name, p in self.plays.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "UpliftSet":
        """The set :meth:`to_dict` wrote. ``ValueError`` (or ``KeyError``/``TypeError`` for
        a missing or mistyped field) when it is not one of format :data:`UPLIFT_FORMAT`:
        the caller names the file."""
        if not isinstance(data, Mapping) or data.get("kind") != "churnml.uplift_set":
            raise ValueError("not a churnml uplift set (no \"kind\": \"churnml.uplift_set\")")
        if data.get("format") != UPLIFT_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, this churnml reads format "
                             f"{UPLIFT_FORMAT}")
        features = [str(f) for f in data["features"]]
        plays = {}
        for name, p in dict(data["plays"]).items():
            plays[str(name)] = PlayUplift(
                playbook=str(p["playbook"]), outcome=str(p["outcome"]),
                is_risk=bool(p["is_risk"]),
                **{k: int(p[k]) for k in _PLAY_FIELDS[3:]},
                model=XLearner.from_dict(p["model"], n_features=len(features)))
        return cls(features=features, plays=plays, fitted_through=str(data["fitted_through"]),
                   outcomes_known_on=str(data["outcomes_known_on"]))

    def usable_on(self, as_of: Any) -> bool:
        """True when a week scored at ``as_of`` may use the models: they have plays and saw
        no outcome on or after ``as_of``."""
        return bool(self.plays) and (not self.outcomes_known_on
                                     or pd.Timestamp(self.outcomes_known_on)
                                     <= pd.Timestamp(as_of))

    def benefit(self, columns: Any, playbook: Any) -> np.ndarray:
        """Per row, the estimated change in the probability of the outcome the row's play
        addresses, signed so that positive helps (churns avoided; expansions won); NaN where
        the row's play has no model. ``columns``: output column name -> values (a frame or a
        mapping of arrays; a feature column absent is unknown, NaN)."""
        play = np.asarray(playbook, dtype=object)
        out = np.full(len(play), np.nan)
        if not self.plays or not len(play):
            return out
        X = self.matrix(columns, len(play))
        for name, fitted in self.plays.items():  # a loop over plays, not accounts
            at = play == name
            if at.any():
                effect = fitted.model.effect(X[at])
                out[at] = -effect if fitted.is_risk else effect
        return out

    def matrix(self, columns: Any, n: int) -> np.ndarray:
        """The feature matrix (rows x :attr:`features`), float64, NaN where unknown."""
        X = np.full((n, len(self.features)), np.nan)
        for j, name in enumerate(self.features):
            if name in columns:
                X[:, j] = np.asarray(pd.to_numeric(pd.Series(np.asarray(columns[name],
                                                                        dtype=object)),
                                                   errors="coerce"), dtype="float64")
        return X


def play_qualifies(treated: np.ndarray, label: np.ndarray, rules: Mapping[str, int]) -> bool:
    """The rule of ``playbooks.yaml``'s ``uplift:``: at least ``min_holdout`` held-out and
    ``min_recommended`` recommended labeled units, and ``min_events`` outcomes and as many
    non-outcomes in each arm (an arm with no variation teaches the model nothing)."""
    treated = np.asarray(treated, dtype=bool)
    y = np.asarray(label, dtype="float64")
    t, c = y[treated], y[~treated]
    need = int(rules.get("min_events", 1))
    return (len(c) >= int(rules.get("min_holdout", 1))
            and len(t) >= int(rules.get("min_recommended", 1))
            and min(t.sum(), c.sum(), len(t) - t.sum(), len(c) - c.sum()) >= need)


def fit_uplift_set(units: pd.DataFrame, features: Sequence[str], rules: Mapping[str, int], *,
                   risk_outcomes: Sequence[str] = ("churn", "contraction"),
                   seed: int = 0, params: Mapping[str, Any] | None = None) -> UpliftSet:
    """One :class:`XLearner` per play of ``units`` that meets ``rules``
    (:func:`play_qualifies`). ``units``: one row per randomized unit with ``playbook``,
    ``outcome``, ``treated`` (recommended and not held out: intention to treat), ``label``
    (0/1, NaN when not matured or unlabeled: left out), ``as_of``, ``horizon_days`` (the
    outcome's, for :attr:`UpliftSet.outcomes_known_on`) and the ``features`` columns. Plays
    are fitted in name order, each with its own seed; ``params``: the LightGBM parameters
    (default :data:`DEFAULT_PARAMS`)."""
    features = [f for f in features if f in units.columns]
    plays: dict[str, PlayUplift] = {}
    ok = units[pd.to_numeric(units["label"], errors="coerce").notna()]
    if not features:  # nothing to tell accounts apart: the prior says as much
        ok = ok.iloc[:0]
    for i, (name, group) in enumerate(sorted(ok.groupby("playbook"), key=lambda t: str(t[0]))):
        treated = group["treated"].to_numpy(dtype=bool)
        y = group["label"].to_numpy(dtype="float64")
        if not play_qualifies(treated, y, rules):
            continue
        outcome = str(group["outcome"].iloc[0])
        X = UpliftSet(features, {}).matrix(group, len(group))
        model = XLearner(seed=seed + 7919 * i, params=dict(params or DEFAULT_PARAMS)
                         ).fit(X, treated, y)
        plays[str(name)] = PlayUplift(
            playbook=str(name), outcome=outcome, is_risk=outcome in risk_outcomes,
            n_recommended=int(treated.sum()), n_holdout=int((~treated).sum()),
            events_recommended=int(y[treated].sum()), events_holdout=int(y[~treated].sum()),
            model=model)
    used = ok[ok["playbook"].astype(str).isin(list(plays))]
    through = str(pd.Timestamp(used["as_of"].max()).date()) if len(used) else ""
    known = ""
    if len(used) and "horizon_days" in used:
        known = str((pd.to_datetime(used["as_of"]) + pd.to_timedelta(
            used["horizon_days"].astype("int64"), unit="D")).max().date())
    return UpliftSet(features=list(features), plays=plays, fitted_through=through,
                     outcomes_known_on=known)


__all__ = ["DEFAULT_PARAMS", "EFFECT_MODELS", "PlayUplift", "UPLIFT_FORMAT", "UPLIFT_NAME",
           "UpliftSet", "XLearner", "fit_uplift_set", "play_qualifies", "qini_coefficient", "qini_curve",
           "uplift_at_k"]
