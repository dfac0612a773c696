"""Training on a stratified sample of accounts: a book too large for one machine.

Memory and time of ``churnml train`` grow with the labeled observations (accounts x weekly
as_of dates). When the book has more accounts than the budget (``sample.max_accounts`` in the
model config, or ``churnml train --sample-accounts N``), training runs on a sample of accounts
drawn here, before any feature is built:

- the population is every account with at least one labeled observation (the others give no
  training row);
- strata: whether the account **ever had the event** over its labeled observations (the
  outcome's label, :func:`churnml.features.labels.observation_grid`) crossed with a **size
  band** (equal-count bands of the account's highest MRR at an as_of date, ``sample.size_bands``);
- allocation is proportional (largest remainder, at least one account per stratum), so every
  stratum is sampled at the same rate up to the rounding of one account: the sample keeps the
  book's event rate and size mix and its rows need no weights (with equal rates the weights
  would all be equal). The per-stratum rates are logged to show it;
- inside a stratum accounts are drawn without replacement, seeded (``evaluation.seed``);
- an account is kept or left out whole (all its rows in every table), so the time split, the
  account-grouped folds and the point-in-time features are those of a smaller book; the
  sampled book keeps the full book's ``data_end`` and observed start, so the as_of dates and
  the split are the full book's.

Effect on the evaluation: the test metrics are measured on the sampled accounts of the test
window, so they are unbiased for the book but noisier. The run logs the ROC AUC interval's
width measured on the sample and the width expected without sampling: the account bootstrap's
width shrinks as one over the square root of the number of accounts, so the full-book width is
estimated as ``width x sqrt(sampling rate)`` (:func:`full_book_width`).

Example::

    from churnml.models.sampling import draw_sample
    sample = draw_sample(book, config, 20_000)
    sample.book, sample.strata, sample.sentence()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class AccountSample:
    """A drawn sample: ``book`` (the sampled book), ``strata`` (one row per stratum: ``event``,
    ``size_band``, ``mrr_low``, ``mrr_high``, ``accounts``, ``sampled``, ``rate``), the
    population and sample sizes, the seed."""

    book: Any
    strata: pd.DataFrame
    accounts_total: int
    accounts_sampled: int
    seed: int
    target: str
    account_ids: np.ndarray = field(repr=False, default_factory=lambda: np.array([], dtype=object))

    @property
    def rate(self) -> float:
        return self.accounts_sampled / max(self.accounts_total, 1)

    def describe(self) -> dict[str, Any]:
        """Flat figures for MLflow and ``fit_details`` (rates per stratum included)."""
        out: dict[str, Any] = {"sample_accounts": self.accounts_sampled,
                               "sample_accounts_total": self.accounts_total,
                               "sample_rate": self.rate, "sample_seed": self.seed,
                               "sample_strata": len(self.strata)}
        for event, band, rate in zip(self.strata["event"].to_numpy(), self.strata["size_band"].to_numpy(),
                                     self.strata["rate"].to_numpy(dtype="float64")):
            out[f"sample_rate_{'event' if event else 'no_event'}_band{int(band)}"] = float(rate)
        return out

    def sentence(self) -> str:
        rates = self.strata["rate"]
        return (f"trained on a stratified sample of {self.accounts_sampled:,} of the book's "
                f"{self.accounts_total:,} accounts with labeled observations ({self.rate:.1%}, seed "
                f"{self.seed}); strata: ever had the {self.target} event or not x "
                f"{self.strata['size_band'].nunique()} MRR size bands, {len(self.strata)} strata "
                f"sampled at {rates.min():.2%} to {rates.max():.2%} (proportional allocation, so "
                f"rows are not weighted); test metrics are measured on the sampled accounts")


def account_strata(book, config, size_bands: int) -> pd.DataFrame:
    """One row per account with a labeled observation: ``account_id``, ``event`` (the
    outcome's label was 1 at some labeled as_of date), ``peak_mrr`` (highest MRR in force at
    an as_of date) and ``size_band`` (0 = smallest; equal-count bands of ``peak_mrr``)."""
    from churnml.features.labels import observation_grid
    from churnml.models.dataset import labeled_as_of_dates

    dates = labeled_as_of_dates(book, config)
    grid = observation_grid(book, dates, config.horizon_days,
                            expansion_min_share=config.expansion_min_share)
    grid = grid[grid["labeled"]]
    per_account = grid.groupby("account_id", sort=True).agg(
        event=(config.target, "max"), peak_mrr=("mrr", "max"))
    frame = per_account.reset_index()
    frame["account_id"] = frame["account_id"].astype(str)
    frame["event"] = frame["event"].fillna(0).to_numpy() > 0
    bands = max(1, min(int(size_bands), len(frame)))
    # equal-count bands on the rank (ties broken by account order, so bands never collapse)
    rank = frame["peak_mrr"].rank(method="first").to_numpy() - 1
    frame["size_band"] = (rank * bands // max(len(frame), 1)).astype(int)
    return frame


def allocate(counts: np.ndarray, n: int) -> np.ndarray:
    """Proportional allocation of ``n`` draws to strata of ``counts`` accounts: largest
    remainder, at least one per non-empty stratum, never more than the stratum holds."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    n = int(min(max(n, 0), total))
    exact = counts * n / max(total, 1)
    take = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - take), kind="stable")
    take[order[: n - int(take.sum())]] += 1
    short = (take == 0) & (counts > 0)
    if short.any() and n >= int((counts > 0).sum()):
        for i in np.flatnonzero(short):  # one per stratum, taken from the largest stratum
            take[i] = 1
            take[int(np.argmax(take))] -= 1
    return np.minimum(take, counts)


def draw_accounts(strata: pd.DataFrame, n: int, seed: int) -> tuple[np.ndarray, pd.DataFrame]:
    """The sampled account ids and the per-stratum table (see :class:`AccountSample`)."""
    keys = strata[["event", "size_band"]]
    groups = keys.groupby(["event", "size_band"], sort=True)
    table = groups.size().rename("accounts").reset_index()
    table["sampled"] = allocate(table["accounts"].to_numpy(), n)
    mrr = strata.groupby(["event", "size_band"], sort=True)["peak_mrr"].agg(["min", "max"]).reset_index()
    table["mrr_low"], table["mrr_high"] = mrr["min"].to_numpy(), mrr["max"].to_numpy()
    # seeded random order of the accounts, then the first `sampled` of each stratum
    rng = np.random.default_rng(seed)
    key = rng.permutation(len(strata))
    within = (pd.Series(key, index=strata.index).groupby([strata["event"], strata["size_band"]])
              .rank(method="first").to_numpy() - 1)
    quota = table.set_index(["event", "size_band"])["sampled"]
    limit = quota.reindex(pd.MultiIndex.from_frame(keys)).to_numpy()
    chosen = strata["account_id"].to_numpy()[within < limit]
    table["rate"] = table["sampled"] / table["accounts"]
    columns = ["event", "size_band", "mrr_low", "mrr_high", "accounts", "sampled", "rate"]
    return np.sort(chosen), table[columns]


def sample_book(book, account_ids) -> Any:
    """``book`` restricted to ``account_ids`` in every table with an ``account_id`` column,
    keeping the full book's ``data_end`` and observed start (``Book.meta``)."""
    from churnml.data.tables import Book
    from churnml.models.dataset import observed_start

    keep = pd.Index(np.asarray(account_ids).astype(str))
    tables = {}
    for name, frame in book.tables.items():
        if "account_id" in frame.columns:
            tables[name] = frame[frame["account_id"].astype(str).isin(keep)].reset_index(drop=True)
        else:
            tables[name] = frame
    meta = {**getattr(book, "meta", {}), "data_end": book.data_end,
            "observed_start": observed_start(book)}
    return Book(tables=tables, source=getattr(book, "source", None), meta=meta)


def draw_sample(book, config, max_accounts: int, size_bands: int | None = None,
                seed: int | None = None) -> AccountSample | None:
    """The stratified sample of at most ``max_accounts`` accounts (module docstring), or None
    when the book has no more accounts with labeled observations than that."""
    bands = int(size_bands if size_bands is not None else config.sample_size_bands)
    seed = int(config.seed if seed is None else seed)
    strata = account_strata(book, config, bands)
    if len(strata) <= max_accounts:
        return None
    chosen, table = draw_accounts(strata, max_accounts, seed)
    return AccountSample(sample_book(book, chosen), table, len(strata), len(chosen), seed,
                         config.target, chosen)


def full_book_width(width: float, rate: float) -> float:
    """The ROC AUC interval's width expected without sampling: the account bootstrap's width
    scales as 1 / sqrt(accounts), and the full book has 1 / ``rate`` times the accounts."""
    return float(width) * float(np.sqrt(rate))


def record_sample(result, sample: AccountSample) -> None:
    """State the sample in ``result`` (a ``TrainingResult``): metrics ``sample_*`` (size, rate,
    rate per stratum) and the ROC AUC interval width measured on the sample and estimated for
    the full book; ``fit_details["sample"]`` (the sentence the model card shows) and
    ``fit_details["sampling"]`` (the strata table); a note; ``model.info["sample"]``."""
    metrics = result.metrics
    figures = sample.describe()
    low, high = metrics.get("test_roc_auc_ci_low"), metrics.get("test_roc_auc_ci_high")
    text = sample.sentence()
    if low is not None and high is not None and np.isfinite(low) and np.isfinite(high):
        width = float(high - low)
        full = full_book_width(width, sample.rate)
        figures["test_roc_auc_ci_width"] = width
        figures["test_roc_auc_ci_width_full_book_estimate"] = full
        text += (f"; test ROC AUC 95% interval width {width:.3f} on the sample, about {full:.3f} "
                 f"expected without sampling (width x sqrt(sampling rate): the account bootstrap's "
                 f"width scales as 1/sqrt(accounts))")
    metrics.update({k: float(v) for k, v in figures.items() if isinstance(v, (int, float))})
    result.fit_details["sample"] = text
    result.fit_details["sampling"] = {**figures, "strata": sample.strata.to_dict(orient="records")}
    result.notes.append(text)
    for model in {id(m): m for m in (result.model, result.protocol_model) if m is not None}.values():
        model.info["sample"] = text
