"""Measured effect of every play (``churnml effects``, the weekly report's "What each play has
done" section): the recommended accounts the team was asked to work against the randomized
holdout, once their outcome is known.

The record is the weekly partitions (schema version 3 on: ``next_best_action.playbook``,
``queue_status``, ``holdout``, ``policy_version``). The unit is an account's first
recommendation of a play under a policy version: the first week the account was in the
queue (``queue_status == "queued"``) for that play, held out or not. The holdout draw of an
(account, play, policy) never changes (``churnml.scoring.queue``), so the unit stays in its
arm every later week; counting it once keeps one account from weighing as many weeks.
Candidates on the watch list are not recommended and are left out: a held-out watch row has
no worked counterpart below the line. Within the queue, the holdout is the hash draw of each
churn-risk decile, so the two arms come from the same part of the priority order.

Per unit, from the book alone:

- **matured**: ``as_of + horizon <= data_end`` (the horizon of the outcome the play addresses,
  ``addresses`` in ``features/playbooks.yaml``; the model configuration's ``horizon_days``).
  Immature units are counted (``n_immature``) and never enter a rate (an unknown outcome is
  not a negative);
- **label**: the outcome the play addresses in ``[as_of, as_of + horizon)``, by the training
  label rules (``churnml.features.labels.observation_grid``);
- **MRR change**: the MRR in force just before ``as_of + horizon`` minus the MRR just before
  ``as_of`` (a churned account: minus its whole MRR);
- **worked**: a ``cs_actions`` row of the account and the play dated in
  ``[as_of, as_of + worked_within_days)``. A held-out account that was worked anyway is
  contamination, counted (``n_holdout_worked``) and left in the holdout arm.

Per play: intention to treat (ITT) compares *recommended and not held out* (worked or not)
with *held out*: the randomized comparison. Per protocol (PP) compares *worked* with *held
out*: labelled as such, it is biased when the team chooses whom to work. The effect is
signed so that positive is good: the fall in the rate of a risk outcome (churn,
contraction), the rise in the rate of expansion, the rise in mean MRR change. Intervals:
``churnml.jobs.effect_stats``. ``nnt``: recommendations per outcome changed (ITT);
``actions_per_save``: actions worked per outcome changed (the ITT effect over the share
worked, Bloom's complier estimate); ``mrr_saved_per_action`` likewise for MRR;
``mrr_saved_to_date``: the ITT MRR effect times the matured recommended accounts.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from churnml.data.tables import Book
from churnml.errors import UsageError
from churnml.features.labels import latest_labeled_as_of, observation_grid
from churnml.jobs import effect_stats as S
from churnml.jobs.layout import SCORES_NAME
from churnml.jobs.partitions import list_partitions, write_bytes_atomic
from churnml.outcomes import get_outcome
from churnml.scoring.schema import uplift_feature_columns

logger = logging.getLogger(__name__)

EFFECTS_DIR = "effects"
#: the pickle earlier churnml versions wrote the uplift models to: never read, removed when
#: the JSON set (``churnml.models.uplift.UPLIFT_NAME``) is written
LEGACY_UPLIFT_NAME = "uplift.pkl"
EFFECTS_NAME = "effects.parquet"
EFFECTS_CSV = "effects.csv"
UNITS_NAME = "units.parquet"
DIMENSIONS_NAME = "dimensions.parquet"
EXPERIMENT = "churnml-effects"
#: a logged action counts as working the recommendation when dated this many days after it
WORKED_WITHIN_DAYS = 14
CONFIDENCE = 0.95
#: the partition columns the record needs (schema version 3 on)
RECORD_COLUMNS = ("account_id", "as_of", "next_best_action", "queue_status", "holdout",
                  "policy_version")

#: columns of the per-unit table (``units.parquet``)
UNIT_COLUMNS = [
    "account_id", "as_of", "playbook", "owner", "reason_feature", "policy_version", "holdout",
    "worked", "outcome", "horizon_days", "matured", "labeled", "label", "mrr_start", "mrr_end",
    "mrr_change",
]

#: columns of ``effects.parquet``, in order
EFFECT_COLUMNS = [
    "playbook", "outcome", "horizon_days", "worked_within_days", "confidence",
    "policy_versions", "first_week", "last_matured_week",
    "n_immature", "n_unlabeled", "n_recommended", "n_holdout", "n_worked", "n_not_worked",
    "n_holdout_worked", "compliance",
    "rate_recommended", "rate_holdout", "rate_worked", "rate_not_worked",
    "effect", "effect_ci_low", "effect_ci_high",
    "effect_pp", "effect_pp_ci_low", "effect_pp_ci_high",
    "mrr_change_recommended", "mrr_change_holdout", "mrr_change_worked",
    "mrr_effect", "mrr_effect_ci_low", "mrr_effect_ci_high",
    "mrr_effect_pp", "mrr_effect_pp_ci_low", "mrr_effect_pp_ci_high",
    "nnt", "actions_per_save", "mrr_saved_per_action", "mrr_saved_to_date",
    "more_cases_to_exclude_zero", "verdict",
]


@dataclass
class EffectsResult:
    table: pd.DataFrame        # one row per playbook (EFFECT_COLUMNS)
    units: pd.DataFrame        # one row per unit (UNIT_COLUMNS)
    weeks_read: int
    weeks_skipped: list[str]   # partitions without the queue's columns (schema < 3)
    has_actions: bool          # the book has a cs_actions table
    #: one row per health dimension of the recommendations' reasons (DIMENSION_COLUMNS)
    dimensions: pd.DataFrame | None = None
    #: the plays whose effect by account is learned (``churnml.models.uplift.UpliftSet``)
    uplift: Any = None


def effects_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / EFFECTS_DIR


def read_recommendations(scores_dir: str | Path) -> tuple[pd.DataFrame, int, list[str]]:
    """The queued rows of every complete partition of ``scores_dir``: ``account_id, as_of,
    playbook, owner, reason_feature, holdout, policy_version``; the number of partitions read
    and the names of those skipped (written before the queue existed)."""
    import pyarrow.parquet as pq

    frames: list[pd.DataFrame] = []
    skipped: list[str] = []
    partitions = list_partitions(scores_dir)
    for _as_of, part in partitions:
        path = part / SCORES_NAME
        names = set(pq.read_schema(path).names)
        if any(c not in names for c in RECORD_COLUMNS):
            skipped.append(part.name)
            continue
        features = _uplift_features(pq.read_schema(path))
        table = pq.read_table(path, columns=[*RECORD_COLUMNS, *features])
        action = table.column("next_best_action").combine_chunks()
        frame = pd.DataFrame({
            "account_id": table.column("account_id").to_numpy(zero_copy_only=False),
            "as_of": table.column("as_of").to_numpy(zero_copy_only=False),
            **{f: action.field(f).to_numpy(zero_copy_only=False)
               for f in ("playbook", "owner", "reason_feature")},
            "queue_status": table.column("queue_status").to_numpy(zero_copy_only=False),
            "holdout": table.column("holdout").to_numpy(zero_copy_only=False),
            "policy_version": table.column("policy_version").to_numpy(zero_copy_only=False),
            **{f: table.column(f).to_numpy(zero_copy_only=False) for f in features},
        })
        frames.append(frame[frame["queue_status"] == "queued"].drop(columns="queue_status"))
    read = len(partitions) - len(skipped)
    columns = ["account_id", "as_of", "playbook", "owner", "reason_feature", "holdout",
               "policy_version"]
    if not frames:
        return pd.DataFrame(columns=columns), read, skipped
    out = pd.concat(frames, ignore_index=True)
    out = out[columns + [c for c in out.columns if c not in columns]]
    out["account_id"] = out["account_id"].astype(str)
    out["as_of"] = pd.to_datetime(out["as_of"]).astype("datetime64[ns]")
    bad = out["holdout"].isna() | out["playbook"].isna()
    if bad.any():
        examples = out.loc[bad, ["account_id", "as_of"]].head(3).astype(str).values.tolist()
        raise UsageError(
            f"scores: {int(bad.sum()):,} queued rows have no holdout flag or no "
            f"next_best_action.playbook (columns 'holdout', 'next_best_action'); examples "
            f"(account_id, as_of): {examples}. The weekly job writes both for every queued row: "
            "rescore those weeks with churnml score.")
    out["holdout"] = out["holdout"].astype(bool)
    return out, read, skipped


def _uplift_features(schema: Any) -> list[str]:
    """The uplift features (``churnml.scoring.schema.UPLIFT_FEATURES``) a partition holds:
    its dimensions are the float64 ``health_*`` columns it was written with."""
    import pyarrow as pa

    dims = [n[len("health_"):] for n in schema.names
            if n.startswith("health_") and n != "health_score"
            and schema.field(n).type == pa.float64()]
    return [c for c in uplift_feature_columns(dims) if c in schema.names]


def uplift_units(units: pd.DataFrame, unit_rows: pd.DataFrame) -> pd.DataFrame:
    """The randomized units an uplift model learns from: the per-unit table with the output
    columns of the unit's week (``units``: :func:`first_recommendations` rows), ``treated``
    = recommended and not held out (intention to treat) and ``label`` only where matured."""
    features = [c for c in units.columns if c not in unit_rows.columns]
    keys = ["account_id", "playbook", "as_of"]
    out = unit_rows.merge(units[keys + features].drop_duplicates(keys), on=keys, how="left")
    out["treated"] = ~out["holdout"].astype(bool)
    out["label"] = out["label"].where(out["matured"].astype(bool) & out["labeled"].astype(bool))
    return out


def fit_uplift(units: pd.DataFrame, unit_rows: pd.DataFrame, playbooks: Any,
               seed: int = 0) -> Any:
    """The plays' uplift models (``churnml.models.uplift.fit_uplift_set``) under the
    ``uplift:`` rules of ``playbooks.yaml``; plays with ``never_hold_out`` have no holdout
    and never qualify."""
    from churnml.models.uplift import fit_uplift_set
    from churnml.outcomes import OUTCOMES

    rows = uplift_units(units, unit_rows) if len(unit_rows) else unit_rows.assign(
        treated=pd.Series(dtype=bool))
    features = [c for c in units.columns if c not in unit_rows.columns]
    return fit_uplift_set(rows, features, getattr(playbooks, "uplift_rules", {}),
                          risk_outcomes=[o.name for o in OUTCOMES if o.is_risk], seed=seed)


def load_uplift(out_dir: str | Path) -> Any:
    """The uplift models the last ``churnml effects`` or weekly run fitted into
    ``OUT/effects/uplift.json`` (``churnml.models.uplift.UpliftSet.from_dict``: JSON and
    LightGBM text models, no pickle). ``None`` (the prior is used) when there is none, when it
    has no play, or when it is of an older format (a warning is logged; so is an old
    ``uplift.pkl``, which is never read). A file that cannot be read as a set (not JSON, a
    missing field, a damaged booster, a newer format) is a ``UsageError`` naming the file."""
    from churnml.models.uplift import UPLIFT_FORMAT, UPLIFT_NAME, UpliftSet

    folder = effects_dir(out_dir)
    path = folder / UPLIFT_NAME
    if not path.is_file():
        if (folder / LEGACY_UPLIFT_NAME).is_file():
            logger.warning("%s is the old pickle format of the uplift models and is not "
                           "loaded (a pickle runs code when read); the queue uses the priors "
                           "until the next effects or weekly run writes %s",
                           folder / LEGACY_UPLIFT_NAME, UPLIFT_NAME)
        return None
    fix = ("(churnml writes it atomically, so it was changed by hand or damaged: delete it "
           "or run `churnml effects` to fit it again)")
    try:
        data = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{path}: the uplift models cannot be read: {exc} {fix}") from exc
    version = data.get("format") if isinstance(data, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version < UPLIFT_FORMAT:
        logger.warning("%s is of uplift format %d (this churnml reads %d) and is ignored: "
                       "the queue uses the priors until the next effects or weekly run",
                       path, version, UPLIFT_FORMAT)
        return None
    try:
        fitted = UpliftSet.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise UsageError(f"{path}: not a valid uplift set: {what} {fix}") from exc
    return fitted if fitted.plays else None


def usable_uplift(uplift: Any, out_dir: str | Path, as_of) -> Any:
    """``uplift``, or with ``"saved"`` the set the last effects run saved under ``out_dir``;
    None unless it has plays and saw no outcome on or after ``as_of`` (a backfill of an
    earlier week uses the priors: point in time)."""
    if isinstance(uplift, str) and uplift == "saved":
        uplift = load_uplift(out_dir)
    if uplift is None or not uplift.usable_on(as_of):
        return None
    return uplift


def first_recommendations(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (account, play, policy version): the first week it was queued."""
    return (rows.sort_values(["as_of", "account_id", "playbook"], kind="stable")
            .drop_duplicates(["account_id", "playbook", "policy_version"], keep="first")
            .reset_index(drop=True))


def _mrr_before(mrr_changes: pd.DataFrame, account_id: np.ndarray,
                when: np.ndarray) -> np.ndarray:
    """The MRR in force just before ``when`` for each (account, when) (0 with no earlier row):
    one ``merge_asof``, no per-account loop."""
    query = pd.DataFrame({"account_id": account_id.astype(str),
                          "when": pd.to_datetime(when).astype("datetime64[ns]"),
                          "i": np.arange(len(account_id))}).sort_values("when", kind="stable")
    history = mrr_changes[["account_id", "effective_date", "mrr"]].copy()
    history["account_id"] = history["account_id"].astype(str)
    history["effective_date"] = pd.to_datetime(history["effective_date"]).astype("datetime64[ns]")
    history = history.sort_values("effective_date", kind="stable")
    joined = pd.merge_asof(query, history, left_on="when", right_on="effective_date",
                           by="account_id", allow_exact_matches=False, direction="backward")
    out = np.zeros(len(account_id))
    out[joined["i"].to_numpy()] = joined["mrr"].fillna(0.0).to_numpy(dtype="float64")
    return out


def _worked(units: pd.DataFrame, actions: pd.DataFrame | None, within_days: int) -> np.ndarray:
    """Per unit: a cs_actions row of its account and play dated in ``[as_of, as_of + within)``."""
    if actions is None or not len(actions) or not len(units):
        return np.zeros(len(units), dtype=bool)
    acts = actions[["account_id", "playbook", "date"]].copy()
    acts["account_id"] = acts["account_id"].astype(str)
    acts["playbook"] = acts["playbook"].astype(str)
    date = pd.to_datetime(acts["date"])
    if getattr(date.dt, "tz", None) is not None:
        date = date.dt.tz_convert("UTC").dt.tz_localize(None)
    acts["date"] = date.astype("datetime64[ns]")
    keyed = units[["account_id", "playbook", "as_of"]].assign(i=np.arange(len(units)))
    joined = keyed.merge(acts, on=["account_id", "playbook"], how="inner")
    hit = ((joined["date"] >= joined["as_of"])
           & (joined["date"] < joined["as_of"] + pd.Timedelta(days=int(within_days))))
    out = np.zeros(len(units), dtype=bool)
    out[joined.loc[hit, "i"].to_numpy()] = True
    return out


def unit_outcomes(units: pd.DataFrame, book: Book, *, addresses: Mapping[str, str],
                  horizons: Mapping[str, int], worked_within_days: int) -> pd.DataFrame:
    """The per-unit table (:data:`UNIT_COLUMNS`): worked, matured, label and MRR change.
    ``addresses``: play -> the outcome it addresses (churn when the play is unknown);
    ``horizons``: outcome -> horizon in days."""
    out = units.copy().reset_index(drop=True)
    out["outcome"] = out["playbook"].astype(str).map(dict(addresses)).fillna("churn")
    out["horizon_days"] = out["outcome"].map(dict(horizons)).astype("int64")
    out["worked"] = _worked(out, book["cs_actions"] if book.has("cs_actions") else None,
                            worked_within_days)
    n = len(out)
    matured = np.zeros(n, dtype=bool)
    labeled = np.zeros(n, dtype=bool)
    label = np.full(n, np.nan)
    mrr_start = np.full(n, np.nan)
    mrr_end = np.full(n, np.nan)
    as_of = out["as_of"].to_numpy(dtype="datetime64[ns]")
    ids = out["account_id"].astype(str).to_numpy(dtype=object)
    pairs = out[["outcome", "horizon_days"]].drop_duplicates().itertuples(index=False)
    for outcome, horizon in pairs:  # a loop over outcomes, not accounts
        days = int(horizon)
        at = ((out["outcome"] == outcome) & (out["horizon_days"] == days)).to_numpy()
        ripe = at & (as_of <= np.datetime64(latest_labeled_as_of(book, days)))
        matured |= ripe
        idx = np.flatnonzero(ripe)
        if not len(idx):
            continue
        grid = observation_grid(book, pd.DatetimeIndex(np.unique(as_of[idx])), days)
        grid = grid.loc[grid["labeled"], ["account_id", "as_of", str(outcome)]]
        grid = grid.assign(account_id=grid["account_id"].astype(str),
                           as_of=pd.to_datetime(grid["as_of"]).astype("datetime64[ns]"))
        joined = pd.DataFrame({"account_id": ids[idx], "as_of": as_of[idx]}).merge(
            grid, on=["account_id", "as_of"], how="left")
        values = joined[str(outcome)].to_numpy(dtype="float64")
        label[idx] = values
        labeled[idx] = ~np.isnan(values)
        mrr_start[idx] = _mrr_before(book.mrr_changes, ids[idx], as_of[idx])
        mrr_end[idx] = _mrr_before(book.mrr_changes, ids[idx],
                                   as_of[idx] + np.timedelta64(days, "D"))
    out["matured"] = matured
    out["labeled"] = labeled
    out["label"] = label
    out["mrr_start"] = mrr_start
    out["mrr_end"] = mrr_end
    out["mrr_change"] = out["mrr_end"] - out["mrr_start"]
    return out[UNIT_COLUMNS]


def _money(x: float) -> str:
    return "-" if not np.isfinite(x) else (f"-${-x:,.0f}" if x < 0 else f"${x:,.0f}")


def play_effect(rows: pd.DataFrame, *, is_risk: bool, confidence: float, seed: int,
                never_held_out: bool = False) -> dict[str, Any]:
    """The figures of one play from its units (:data:`UNIT_COLUMNS`): see the module."""
    counted = rows[rows["matured"] & rows["labeled"]]
    hold = counted[counted["holdout"]]
    rec = counted[~counted["holdout"]]
    worked = rec[rec["worked"]]
    not_worked = rec[~rec["worked"]]
    sign = -1.0 if is_risk else 1.0

    def rate(frame: pd.DataFrame) -> float:
        return float(frame["label"].mean()) if len(frame) else float("nan")

    def signed(a: pd.DataFrame, b: pd.DataFrame) -> tuple[float, float, float]:
        d, low, high = S.newcombe(a["label"].sum(), len(a), b["label"].sum(), len(b),
                                  confidence)
        return (sign * d, low, high) if sign > 0 else (-d, -high, -low)

    effect, low, high = signed(rec, hold)
    effect_pp, pp_low, pp_high = signed(worked, hold)
    mrr = S.bootstrap_mean_difference(rec["mrr_change"].to_numpy(), hold["mrr_change"].to_numpy(),
                                      seed=seed, confidence=confidence)
    mrr_pp = S.bootstrap_mean_difference(worked["mrr_change"].to_numpy(),
                                         hold["mrr_change"].to_numpy(), seed=seed + 1,
                                         confidence=confidence)
    compliance = len(worked) / len(rec) if len(rec) else float("nan")
    nnt = S.number_needed_to_treat(effect)
    per_action = mrr[0] / compliance if compliance and np.isfinite(compliance) else float("nan")
    more = S.cases_to_exclude_zero(rate(rec), len(rec), rate(hold), len(hold), confidence)
    if never_held_out and not len(hold):
        verdict = "not measured: the play is never held out (never_hold_out)"
    elif not len(counted):
        verdict = "no matured recommendation yet"
    elif not len(hold) or not len(rec):
        verdict = "not measured yet: no matured " + ("held-out" if not len(hold) else
                                                     "recommended") + " account"
    elif low > 0 or high < 0:
        name = str(rows["outcome"].iloc[0])
        way = "lower" if (effect > 0) == is_risk else "higher"
        verdict = (f"{'helps' if low > 0 else 'hurts'}: {name} rate {abs(effect) * 100:.1f} "
                   f"points {way} when recommended (ITT; interval excludes 0)")
    elif np.isfinite(more):
        verdict = f"not shown yet: about {more:,.0f} more matured cases at the current effect"
    else:
        verdict = "no difference seen: no number of cases would separate the arms at this effect"
    return {
        "policy_versions": ",".join(sorted(rows["policy_version"].astype(str).unique())),
        "first_week": rows["as_of"].min(),
        "last_matured_week": counted["as_of"].max() if len(counted) else pd.NaT,
        "n_immature": int((~rows["matured"]).sum()),
        "n_unlabeled": int((rows["matured"] & ~rows["labeled"]).sum()),
        "n_recommended": len(rec), "n_holdout": len(hold), "n_worked": len(worked),
        "n_not_worked": len(not_worked), "n_holdout_worked": int(hold["worked"].sum()),
        "compliance": compliance,
        "rate_recommended": rate(rec), "rate_holdout": rate(hold), "rate_worked": rate(worked),
        "rate_not_worked": rate(not_worked),
        "effect": effect, "effect_ci_low": low, "effect_ci_high": high,
        "effect_pp": effect_pp, "effect_pp_ci_low": pp_low, "effect_pp_ci_high": pp_high,
        "mrr_change_recommended": float(rec["mrr_change"].mean()) if len(rec) else np.nan,
        "mrr_change_holdout": float(hold["mrr_change"].mean()) if len(hold) else np.nan,
        "mrr_change_worked": float(worked["mrr_change"].mean()) if len(worked) else np.nan,
        "mrr_effect": mrr[0], "mrr_effect_ci_low": mrr[1], "mrr_effect_ci_high": mrr[2],
        "mrr_effect_pp": mrr_pp[0], "mrr_effect_pp_ci_low": mrr_pp[1],
        "mrr_effect_pp_ci_high": mrr_pp[2],
        "nnt": nnt, "actions_per_save": nnt * compliance if np.isfinite(nnt) else nnt,
        "mrr_saved_per_action": per_action,
        "mrr_saved_to_date": mrr[0] * len(rec) if len(rec) else float("nan"),
        "more_cases_to_exclude_zero": more, "verdict": verdict,
    }


def effects_table(units: pd.DataFrame, playbooks: Any, *, worked_within_days: int,
                  confidence: float, seed: int) -> pd.DataFrame:
    """One row per play recommended at least once (:data:`EFFECT_COLUMNS`), plays in name
    order. ``playbooks``: the parsed ``features/playbooks.yaml`` (``never_hold_out``)."""
    rows = []
    books = getattr(playbooks, "playbooks", {})
    for i, (play, group) in enumerate(sorted(units.groupby("playbook"), key=lambda t: str(t[0]))):
        outcome = get_outcome(str(group["outcome"].iloc[0]))
        book = books.get(str(play))
        figures = play_effect(group, is_risk=outcome.is_risk, confidence=confidence,
                              seed=seed + 7919 * i,
                              never_held_out=bool(getattr(book, "never_hold_out", False)))
        rows.append({"playbook": str(play), "outcome": outcome.name,
                     "horizon_days": int(group["horizon_days"].iloc[0]),
                     "worked_within_days": int(worked_within_days), "confidence": confidence,
                     **figures})
    table = pd.DataFrame(rows, columns=EFFECT_COLUMNS)
    for column in ("first_week", "last_matured_week"):
        table[column] = pd.to_datetime(table[column]).astype("datetime64[ns]")
    return table


#: columns of ``dimensions.parquet``, in order
DIMENSION_COLUMNS = [
    "dimension", "plays", "n_immature", "n_recommended", "n_holdout", "n_worked",
    "rate_recommended", "rate_holdout", "rate_worked", "effect", "effect_ci_low",
    "effect_ci_high", "effect_pp", "mrr_effect", "mrr_saved_to_date",
    "more_cases_to_exclude_zero", "verdict",
]


def dimension_of_features(catalog: Any = None) -> dict[str, str]:
    """feature -> its health dimension (the feature catalog's ``health_dimension``)."""
    if catalog is None:
        from churnml.features.catalog import load_catalog

        catalog = load_catalog()
    return {spec.name: spec.health_dimension for spec in catalog.specs}


def dimension_effects(units: pd.DataFrame, dimension_of: Mapping[str, str], *,
                      confidence: float = CONFIDENCE, seed: int = 0) -> pd.DataFrame:
    """Which health dimension's alerts led to saves (descriptive, ``calibrate-health`` and the
    report): the churn plays' units (:data:`UNIT_COLUMNS`) grouped by the health dimension
    of the feature behind the recommendation (``next_best_action.reason_feature``; ``other``
    when it has none), each with the same ITT and PP figures as a play. Plays are pooled
    within a dimension, so a dimension's figure mixes what its plays did."""
    churn = units[units["outcome"] == "churn"]
    if not len(churn):
        return pd.DataFrame(columns=DIMENSION_COLUMNS)
    dims = churn["reason_feature"].map(dict(dimension_of)).fillna("other")
    rows = []
    for i, (dim, group) in enumerate(sorted(churn.groupby(dims), key=lambda t: str(t[0]))):
        f = play_effect(group, is_risk=True, confidence=confidence, seed=seed + 104729 * i)
        rows.append({"dimension": str(dim),
                     "plays": ",".join(sorted(group["playbook"].astype(str).unique())),
                     **{k: f[k] for k in DIMENSION_COLUMNS if k in f}})
    return pd.DataFrame(rows, columns=DIMENSION_COLUMNS)


def _check(worked_within_days: int, confidence: float) -> None:
    if not isinstance(worked_within_days, (int, np.integer)) or worked_within_days < 1:
        raise UsageError("The 'worked_within_days' parameter must be a positive integer. "
                         f"Got {worked_within_days!r}.")
    if not 0.5 <= float(confidence) < 1.0:
        raise UsageError(f"The 'confidence' parameter must be in [0.5, 1). Got {confidence!r}.")


def measure(scores_dir: str | Path, book: Book, *, playbooks: Any = None,
            horizons: Mapping[str, int] | None = None,
            worked_within_days: int = WORKED_WITHIN_DAYS, confidence: float = CONFIDENCE,
            seed: int = 0, dimension_of: Mapping[str, str] | None = None) -> EffectsResult:
    """Every play's measured effect from the weekly partitions of ``scores_dir`` (the record of
    what was recommended and held out) and the book (outcomes, ``cs_actions``).
    ``horizons``: outcome -> horizon days (default: each outcome's model configuration);
    ``dimension_of``: feature -> health dimension (default: the feature catalog's)."""
    from churnml.scoring.actions import load_playbooks

    _check(worked_within_days, confidence)
    if not Path(scores_dir).is_dir():
        raise UsageError(f"--scores must be the output folder of churnml score. "
                         f"Got {str(scores_dir)!r}.")
    playbooks = playbooks if playbooks is not None else load_playbooks()
    queued, read, skipped = read_recommendations(scores_dir)
    units = first_recommendations(queued)
    addresses = {name: b.addresses for name, b in playbooks.playbooks.items()}

    def horizon(outcome: str) -> int:
        if horizons and outcome in horizons:
            return int(horizons[outcome])
        from churnml.models.config import load_config

        return int(load_config(outcome).horizon_days)

    needed = {addresses.get(str(p), "churn") for p in units["playbook"].unique()}
    unit_rows = unit_outcomes(units, book, addresses=addresses,
                              horizons={o: horizon(o) for o in needed},
                              worked_within_days=worked_within_days) if len(units) else \
        pd.DataFrame(columns=UNIT_COLUMNS)
    table = effects_table(unit_rows, playbooks, worked_within_days=worked_within_days,
                          confidence=confidence, seed=seed)
    dims = dimension_effects(unit_rows, dimension_of if dimension_of is not None
                             else dimension_of_features(), confidence=confidence, seed=seed)
    uplift = fit_uplift(units, unit_rows, playbooks, seed=seed)
    return EffectsResult(table=table, units=unit_rows, weeks_read=read, weeks_skipped=skipped,
                         has_actions=book.has("cs_actions"), dimensions=dims, uplift=uplift)


def write_effects(result: EffectsResult, out_dir: str | Path) -> Path:
    """``OUT/effects/effects.parquet`` (and ``effects.csv``, ``units.parquet``), atomically;
    returns the parquet's path."""
    folder = effects_dir(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    import io

    frames = [(result.table, EFFECTS_NAME), (result.units, UNITS_NAME)]
    if result.dimensions is not None:
        frames.append((result.dimensions, DIMENSIONS_NAME))
    for frame, name in frames:
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        write_bytes_atomic(folder / name, buf.getvalue())
    write_bytes_atomic(folder / EFFECTS_CSV, result.table.to_csv(index=False).encode("utf-8"))
    if result.uplift is not None:  # an empty set too: the next week then uses the prior
        from churnml.models.uplift import UPLIFT_NAME

        write_bytes_atomic(folder / UPLIFT_NAME, json.dumps(
            result.uplift.to_dict(), allow_nan=False, sort_keys=True).encode("utf-8"))
        (folder / LEGACY_UPLIFT_NAME).unlink(missing_ok=True)
    return folder / EFFECTS_NAME


def read_effects(out_dir: str | Path, name: str = EFFECTS_NAME) -> pd.DataFrame | None:
    """``OUT/effects/<name>`` (default ``effects.parquet``) of an output folder, None when
    there is none."""
    path = effects_dir(out_dir) / name
    return pd.read_parquet(path) if path.is_file() else None


def _metric_key(play: str, name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_./ -]", "_", f"{play}.{name}")


def mlflow_figures(table: pd.DataFrame) -> dict[str, float]:
    """The figures logged to MLflow: per play, the ITT effect and its interval, the PP
    effect, the MRR effect, NNT, MRR saved, the arms' sizes; and the total MRR saved."""
    out: dict[str, float] = {}
    keys = ("n_recommended", "n_holdout", "n_worked", "compliance", "rate_recommended",
            "rate_holdout", "effect", "effect_ci_low", "effect_ci_high", "effect_pp",
            "mrr_effect", "mrr_effect_ci_low", "mrr_effect_ci_high", "nnt",
            "mrr_saved_per_action", "mrr_saved_to_date", "more_cases_to_exclude_zero")
    for _, row in table.iterrows():  # one row per play
        for key in keys:
            value = float(row[key])
            if np.isfinite(value):
                out[_metric_key(str(row["playbook"]), key)] = value
    saved = table["mrr_saved_to_date"].to_numpy(dtype="float64") if len(table) else np.array([])
    out["mrr_saved_to_date"] = float(np.nansum(saved))
    return out


def log_run(result: EffectsResult, out_dir: str | Path, params: Mapping[str, Any],
            log: Callable[..., str] | None = None) -> str:
    """One MLflow run in :data:`EXPERIMENT` with :func:`mlflow_figures` and the effects
    folder as artifacts; returns the run id."""
    if log is None:
        from churnml.models.registry import log_job_run

        log = log_job_run
    return log(EXPERIMENT, params=dict(params), metrics=mlflow_figures(result.table),
               artifacts={"effects": effects_dir(out_dir)},
               tags={"churnml.job": "effects"}, run_name="effects")


__all__ = ["CONFIDENCE", "DIMENSIONS_NAME", "DIMENSION_COLUMNS", "dimension_effects",
           "dimension_of_features", "EFFECTS_DIR", "EFFECTS_NAME", "EFFECT_COLUMNS", "EXPERIMENT",
           "EffectsResult", "UNIT_COLUMNS", "WORKED_WITHIN_DAYS", "effects_table",
           "first_recommendations", "fit_uplift", "load_uplift", "log_run", "measure",
           "mlflow_figures", "play_effect", "uplift_units", "usable_uplift",
           "read_effects", "read_recommendations", "unit_outcomes", "write_effects"]
