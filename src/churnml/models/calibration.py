"""Probability calibration: isotonic or sigmoid (Platt), fitted on the calibration window.

The model's raw probabilities are mapped through a monotone function so that "20%" means about
one in five. Both calibrators are monotone non-decreasing, so the ranking (and the sign of every
SHAP reason) is unchanged.

Choosing the method never looks at the test window: inside the calibration window, accounts are
split into ``cv_folds`` groups (seeded); each method is fitted on all groups but one and scored
(log loss) on the held-out group; the method with the lower pooled log loss wins and is then
refitted on the whole calibration window. Grouping by account keeps an account's weekly
snapshots on one side, so isotonic's tendency to memorise is seen, not hidden.

The fitted state is plain arrays / two numbers (``to_dict``), stored as JSON with the model:
no pickle.
"""

from __future__ import annotations

import numpy as np

from churnml.errors import ConfigError, NotFittedError

METHODS = ("isotonic", "sigmoid")
# Calibrated probabilities stay inside [EPS, 1 - EPS]: isotonic steps can reach exactly 0 or 1,
# which would make a single surprise cost infinite log loss.
EPS = 1e-4


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype="float64"), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function (the one copy: the model, training and the calibrators use it)."""
    return 1.0 / (1.0 + np.exp(-z))


class Calibrator:
    """Monotone map from raw model probability to calibrated probability.

    Parameters
    ----------
    method : "isotonic" or "sigmoid".

    Attributes (after ``fit``)
    --------------------------
    x_, y_ : isotonic knots (raw probability -> calibrated), linearly interpolated, clipped at
        the ends; or ``a_``, ``b_`` : sigmoid ``p = 1 / (1 + exp(-(a * logit(raw) + b)))``.
    """

    def __init__(self, method: str = "isotonic") -> None:
        if method not in METHODS:
            raise ConfigError(f"The 'method' parameter must be one of {list(METHODS)}. Got {method!r}.")
        self.method = method

    def fit(self, raw: np.ndarray, y: np.ndarray) -> "Calibrator":
        raw = np.asarray(raw, dtype="float64")
        y = np.asarray(y, dtype="float64")
        if self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
            self.x_ = np.asarray(iso.X_thresholds_, dtype="float64")
            self.y_ = np.asarray(iso.y_thresholds_, dtype="float64")
        else:
            from sklearn.linear_model import LogisticRegression

            # Nearly unpenalised Platt scaling on the log-odds of the raw probability.
            lr = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(raw).reshape(-1, 1), y)
            self.a_ = float(lr.coef_[0, 0])
            self.b_ = float(lr.intercept_[0])
        return self

    def _check(self) -> None:
        if not (hasattr(self, "x_") or hasattr(self, "a_")):
            raise NotFittedError("This Calibrator is not fitted yet: call fit(raw, y) first.")

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for raw probabilities (element-wise, batch-independent)."""
        self._check()
        raw = np.asarray(raw, dtype="float64")
        if self.method == "isotonic":
            out = np.interp(raw, self.x_, self.y_)
        else:
            out = sigmoid(self.a_ * _logit(raw) + self.b_)
        return np.clip(out, EPS, 1 - EPS)

    def to_dict(self) -> dict:
        self._check()
        if self.method == "isotonic":
            return {"method": "isotonic", "x": self.x_.tolist(), "y": self.y_.tolist()}
        return {"method": "sigmoid", "a": self.a_, "b": self.b_}

    @classmethod
    def from_dict(cls, data: dict) -> "Calibrator":
        cal = cls(data["method"])
        if cal.method == "isotonic":
            cal.x_ = np.asarray(data["x"], dtype="float64")
            cal.y_ = np.asarray(data["y"], dtype="float64")
        else:
            cal.a_, cal.b_ = float(data["a"]), float(data["b"])
        return cal

    def __repr__(self) -> str:
        return f"Calibrator(method={self.method!r})"


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def choose_calibrator(
    raw: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    method: str = "auto",
    cv_folds: int = 5,
    seed: int = 0,
) -> tuple[Calibrator, dict[str, float]]:
    """Fit the calibrator on the calibration window; with ``method="auto"`` pick the method by
    account-grouped cross-validated log loss (module docstring).

    Returns the calibrator refitted on all rows and ``{"cv_log_loss_<method>": value}`` for the
    methods compared (empty when the method is fixed).
    """
    raw = np.asarray(raw, dtype="float64")
    y = np.asarray(y, dtype="float64")
    if method != "auto":
        return Calibrator(method).fit(raw, y), {}
    uniques, inverse = np.unique(np.asarray(groups), return_inverse=True)
    rng = np.random.default_rng(seed)
    fold_of_group = rng.permutation(len(uniques)) % cv_folds
    fold = fold_of_group[inverse]
    scores: dict[str, float] = {}
    for candidate in METHODS:
        held_out = np.empty_like(raw)
        for k in range(cv_folds):
            test = fold == k
            if not test.any():
                continue
            train = ~test
            if y[train].min() == y[train].max():  # a fold without both classes: fit on all
                train = np.ones_like(test)
            held_out[test] = Calibrator(candidate).fit(raw[train], y[train]).transform(raw[test])
        scores[f"cv_log_loss_{candidate}"] = _log_loss(held_out, y)
    best = min(METHODS, key=lambda m: scores[f"cv_log_loss_{m}"])
    return Calibrator(best).fit(raw, y), scores
