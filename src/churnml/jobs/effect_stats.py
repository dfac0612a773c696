"""The statistics behind ``churnml effects`` (``churnml.jobs.effects``): intervals for the
difference of two proportions and of two means, the number needed to treat and the number of
matured cases before an interval is expected to exclude zero. Pure numpy / scipy, no I/O.

Choices (``docs/actions.md``, "Method"):

- **a rate difference**: Newcombe's hybrid score interval (Newcombe 1998, method 10) from the
  two groups' Wilson score intervals. Held-out groups are small (10% of the queue) and churn
  rates near 0-20%, where the plain Wald interval undercovers badly and collapses to a point
  at 0 events; Newcombe's interval keeps close to its stated coverage there (a test checks it
  over many seeds), needs no resampling and is closed-form;
- **an MRR difference**: a percentile bootstrap of the difference of means, resampling each
  group's accounts separately (seeded). MRR changes are heavy-tailed (most accounts 0, a few
  lose or win their whole MRR) and a normal interval would lean on a mean whose distribution is
  far from normal for a few dozen held-out accounts.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

#: bootstrap resamples behind an MRR interval
BOOTSTRAP_RESAMPLES = 2000


def z_value(confidence: float) -> float:
    """The two-sided normal quantile of ``confidence`` (1.96 for 0.95)."""
    return float(norm.ppf(0.5 + confidence / 2))


def wilson(events: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``events / n``; (nan, nan) when ``n`` is 0."""
    if n <= 0:
        return float("nan"), float("nan")
    z = z_value(confidence)
    p = events / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(events_a: float, n_a: float, events_b: float, n_b: float,
             confidence: float = 0.95) -> tuple[float, float, float]:
    """``(p_a - p_b, low, high)``: the difference of two independent proportions with
    Newcombe's hybrid score interval; nans when a group is empty."""
    if n_a <= 0 or n_b <= 0:
        return float("nan"), float("nan"), float("nan")
    p_a, p_b = events_a / n_a, events_b / n_b
    l_a, u_a = wilson(events_a, n_a, confidence)
    l_b, u_b = wilson(events_b, n_b, confidence)
    d = p_a - p_b
    low = d - math.sqrt((p_a - l_a) ** 2 + (u_b - p_b) ** 2)
    high = d + math.sqrt((u_a - p_a) ** 2 + (p_b - l_b) ** 2)
    return d, low, high


def bootstrap_mean_difference(a: np.ndarray, b: np.ndarray, *, seed: int,
                              confidence: float = 0.95,
                              resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float, float]:
    """``(mean(a) - mean(b), low, high)``: percentile bootstrap interval, each group resampled
    on its own (``seed``: the resampling's seed); nans when a group is empty. The resamples
    are index matrices in blocks of about two million draws (vectorised, bounded memory)."""
    a = np.asarray(a, dtype="float64")
    b = np.asarray(b, dtype="float64")
    if not len(a) or not len(b):
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = []
    for x in (a, b):
        block = max(1, 2_000_000 // len(x))  # resamples per block: bounded memory
        parts = [x[rng.integers(0, len(x), size=(min(block, resamples - start), len(x)))]
                 .mean(axis=1) for start in range(0, resamples, block)]
        means.append(np.concatenate(parts))
    diff = means[0] - means[1]
    tail = (1 - confidence) / 2 * 100
    return (float(a.mean() - b.mean()), float(np.percentile(diff, tail)),
            float(np.percentile(diff, 100 - tail)))


def number_needed_to_treat(effect: float) -> float:
    """Accounts to treat for one more good outcome: ``1 / effect`` for a beneficial effect
    (> 0), infinite otherwise (no amount of treating gains one), nan when unknown."""
    if not np.isfinite(effect):
        return float("nan")
    return 1.0 / effect if effect > 0 else float("inf")


def cases_to_exclude_zero(p_a: float, n_a: int, p_b: float, n_b: int,
                          confidence: float = 0.95) -> float:
    """More matured cases (both groups together, in their current proportions) before the
    interval of ``p_a - p_b`` is expected to exclude zero if the rates stay where they are:
    the total ``N`` at which the normal-approximation half-width
    ``z * sqrt(p_a q_a / (s_a N) + p_b q_b / (s_b N))`` equals ``|p_a - p_b|`` (``s``: each
    group's share of the cases), minus the cases there are. 0 when the half-width is already
    smaller; infinite when the rates are equal (no number of cases separates them); nan
    when a group is empty. At that ``N`` the interval excludes zero about half the time (its
    centre is the current effect): it is the point where the effect becomes visible, not a
    guarantee."""
    n = n_a + n_b
    if n_a <= 0 or n_b <= 0:
        return float("nan")
    d = abs(p_a - p_b)
    if d == 0:
        return float("inf")
    s_a, s_b = n_a / n, n_b / n
    z = z_value(confidence)
    needed = z * z * (p_a * (1 - p_a) / s_a + p_b * (1 - p_b) / s_b) / (d * d)
    return float(max(0, math.ceil(needed) - n))


__all__ = ["BOOTSTRAP_RESAMPLES", "bootstrap_mean_difference", "cases_to_exclude_zero",
           "newcombe", "number_needed_to_treat", "wilson", "z_value"]
