"""This week's queue: candidate actions ranked by expected value per owner, sized to the team,
with a deterministic holdout to measure what each play does (``features/playbooks.yaml``:
``capacity``, ``prior_effect``, ``addresses``, ``never_hold_out``, ``holdout_share``).

Two steps, because one is about one account and the other about the whole book:

1. per row (:func:`expected_values`, called by ``score_frame`` for a chunk, a shard or one
   HTTP request): the play's expected value = MRR x probability of the outcome the play
   addresses (x the outcome's typical share: the outcome's revenue column) x the play's
   prior effect, and a sentence saying what the play is expected to save or win;
2. book-wide (:func:`assign_queue`, called by the weekly job and the Spark engine once the
   whole week is scored): per owner, the candidates (every account whose play is not the
   regular cadence) in priority order: new critical signals first (a critical signal is new
   only in the week it rose, decided from the book point in time by
   ``churnml.scoring.compare``: it jumps the queue once, and a first run is no flood), then
   expected value, ties by account_id. The top ``capacity[owner]`` are ``queued``, the rest
   ``watch``. A held-out candidate keeps its place in the order and is marked ``holdout``
   (``queued`` when it would have made the queue) but uses no capacity: the owner still works
   ``capacity`` accounts.

Learned effects (:func:`uplift_values`, before step 2 in the weekly job): a play with an
uplift model (``churnml.models.uplift.UpliftSet``, fitted by the effects step once the play's
holdout meets the ``uplift:`` rules) has its candidates' expected value replaced by MRR x
typical share x the account's estimated effect (``effect_source`` ``uplift``); an account the
model expects not to help is watched, never queued, unless a new critical signal jumps it.

Holdout: per churn-risk decile of the week's candidates (deciles of churn probability, ties
by account_id; unknown probability its own stratum), the eligible candidates (plays without
``never_hold_out``) are ordered by a stable hash of ``account_id|playbook|policy_version``
(blake2b, the same on every machine and in every library version) and the lowest
``share x eligible`` are held out (rounded so the book's total is ``round(share x eligible)``,
:func:`holdout_quota`): the same book and policy give the same holdout, and every decile holds
out the configured share.

Everything is vectorised over the book (pandas sorts and group-wise cumulative counts); the
only per-row Python is the hash and the expected-value sentences.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from churnml.scoring.actions import Playbooks

QUEUED = "queued"
WATCH = "watch"
#: ``effect_source``: the playbook's prior effect, or the play's uplift model
PRIOR = "prior"
UPLIFT = "uplift"
QUEUE_COLUMNS = ("expected_value", "effect_source", "queue_status", "queue_rank",
                 "queue_reason", "holdout", "policy_version")
#: The columns :func:`assign_queue` reads.
INPUT_COLUMNS = ("account_id", "playbook", "owner", "severity", "reason_feature",
                 "expected_value", "churn_probability", "queue_reason")
#: Strata of the holdout: churn-risk deciles, and one for an unknown churn probability.
DECILES = 10

_VERB = {"churn": "save", "expansion": "win", "contraction": "keep"}


def _money(x: float) -> str:
    return f"${x:,.0f}"


def _pct(p: float) -> str:
    return f"{p:.0%}" if p >= 0.01 or p == 0 else "under 1%"


def expected_values(playbook: Sequence[Any], mrr: np.ndarray,
                    probability: Mapping[str, np.ndarray],
                    playbooks: Playbooks) -> tuple[np.ndarray, np.ndarray]:
    """``(expected_value, sentence)`` per row: MRR x probability of the outcome the row's play
    addresses x the outcome's typical share (1.0 for churn) x the play's prior effect, and
    what the play is expected to save or win in words. Null (NaN / None) for the regular
    cadence (no action); NaN with a sentence saying so when the outcome has no model."""
    names = np.asarray(playbook, dtype=object)
    n = len(names)
    mrr = np.asarray(mrr, dtype="float64")
    effect = np.zeros(n)
    p = np.full(n, np.nan)
    share = np.ones(n)
    outcome = np.full(n, None, dtype=object)
    for name, book in playbooks.playbooks.items():  # a loop over plays, not accounts
        at = names == name
        if not at.any() or name == playbooks.no_action_playbook:
            continue
        prob = np.asarray(probability.get(book.addresses, np.full(n, np.nan)), dtype="float64")
        p[at] = prob[at]
        share[at] = playbooks.typical_share.get(book.addresses, 1.0)
        effect[at] = book.prior_effect
        outcome[at] = book.addresses
    ev = mrr * p * share * effect
    text = np.full(n, None, dtype=object)
    for i in np.flatnonzero(outcome != None):  # noqa: E711  (an object array's None)
        o = str(outcome[i])
        verb = _VERB.get(o, "save")
        if np.isnan(ev[i]):
            text[i] = (f"expected value unknown: no {o} model to estimate what the play would "
                       f"{verb}")
            continue
        parts = [f"{o} probability {_pct(p[i])}", f"MRR {_money(mrr[i])}"]
        if share[i] != 1.0:
            parts.append(f"typical {o} {share[i]:.0%}")
        parts.append(f"estimated effect {effect[i]:.0%} (prior)")
        text[i] = f"expected to {verb} {_money(ev[i])} of MRR: " + " x ".join(parts)
    return ev, text


def uplift_values(columns: Any, playbook: Sequence[Any] | np.ndarray,
                  expected_value: np.ndarray, sentence: Sequence[Any] | np.ndarray,
                  uplift: Any, playbooks: Playbooks,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(expected_value, effect_source, sentence)`` with the learned effect in place of the
    prior wherever the row's play has an uplift model (``uplift``: a
    :class:`churnml.models.uplift.UpliftSet`; ``columns``: the week's output columns by name,
    ``mrr`` and the model's features): MRR x the outcome's typical share x the account's
    estimated change in the outcome's probability (signed: positive helps; a negative value
    says working the account is expected to hurt and sends it to the bottom of the order).
    Other rows keep their values, with ``effect_source`` ``prior`` where there is an expected
    value. Book-wide (the weekly job's queue step); vectorised."""
    play = np.asarray(playbook, dtype=object)
    n = len(play)
    ev = np.asarray(expected_value, dtype="float64").copy()
    text = np.asarray(sentence, dtype=object).copy()
    source = np.full(n, PRIOR, dtype=object)
    source[np.isnan(ev)] = None
    if uplift is None or not getattr(uplift, "plays", None) or not n:
        return ev, source, text
    benefit = uplift.benefit(columns, play)
    use = ~np.isnan(benefit) & pd.notna(play) & (play != playbooks.no_action_playbook)
    if not use.any():
        return ev, source, text
    mrr = np.nan_to_num(np.asarray(pd.to_numeric(pd.Series(np.asarray(columns["mrr"],
                                                                     dtype=object)),
                                                 errors="coerce"), dtype="float64"))
    addresses = pd.Series(play).map({k: b.addresses for k, b in playbooks.playbooks.items()})
    share = addresses.map(playbooks.typical_share).fillna(1.0).to_numpy(dtype="float64")
    ev[use] = mrr[use] * share[use] * benefit[use]
    source[use] = UPLIFT
    # the sentences, column-wise
    at = np.flatnonzero(use)
    fitted = pd.Series(play[at]).map(
        {k: (f"uplift model on {p.n_holdout:,} held-out and {p.n_recommended:,} recommended "
             f"accounts through {uplift.fitted_through}") for k, p in uplift.plays.items()}
    ).astype(str)
    outcome = addresses.iloc[at].reset_index(drop=True).astype(str)
    verb = outcome.map(_VERB).fillna("save").astype(str)
    points = pd.Series(np.abs(benefit[at]) * 100).round(1).astype(str)
    helps = benefit[at] >= 0
    direction = np.where((outcome == "expansion").to_numpy(),
                         np.where(helps, " more ", " fewer "),
                         np.where(helps, " fewer ", " more "))
    money = pd.Series(ev[at]).map(_money).astype(str)
    mrr_s = pd.Series(mrr[at]).map(_money).astype(str)
    share_s = np.where(share[at] != 1.0, " x typical " + outcome + " " + pd.Series(
        share[at] * 100).round().astype(int).astype(str) + "%", "")
    text[at] = ("expected to " + verb + " " + money + " of MRR: MRR " + mrr_s + share_s
                + " x estimated effect " + points + " points"
                + pd.Series(direction, dtype=object).astype(str)
                + outcome + " probability (" + fitted + ")").to_numpy(dtype=object)
    return ev, source, text


def blake_uniform(account_id: Sequence[Any] | np.ndarray, playbook: Sequence[Any] | np.ndarray,
                  policy_version: str) -> np.ndarray:
    """A number in [0, 1) per row from blake2b of ``account_id|playbook|policy_version``:
    the same on every machine, Python and library version."""
    out = np.empty(len(account_id), dtype="float64")
    for i, (a, p) in enumerate(zip(account_id, playbook)):
        digest = hashlib.blake2b(f"{a}|{p}|{policy_version}".encode("utf-8"),
                                 digest_size=8).digest()
        out[i] = int.from_bytes(digest, "big") / 2.0**64
    return out


def risk_deciles(churn_probability: np.ndarray, account_id: np.ndarray,
                 rows: np.ndarray) -> np.ndarray:
    """Churn-risk decile (0 lowest .. 9 highest) of each of ``rows`` among themselves (ties
    by account_id); :data:`DECILES` (its own stratum) where the probability is unknown."""
    n = len(churn_probability)
    out = np.full(n, DECILES, dtype=np.int64)
    p = np.asarray(churn_probability, dtype="float64")
    known = rows[~np.isnan(p[rows])]
    if len(known):
        order = known[np.lexsort((account_id[known].astype(str), p[known]))]
        out[order] = np.arange(len(order)) * DECILES // len(order)
    return out


def holdout_quota(stratum: np.ndarray, share: float) -> np.ndarray:
    """Holdouts per stratum (indexed by stratum number): ``share`` of each stratum's rows,
    rounded so the total is ``round(share x rows)`` (largest remainders first, ties to the
    lower stratum): each stratum holds out the floor or the ceiling of its share, and a
    small book still holds some out."""
    size = np.bincount(stratum, minlength=DECILES + 1).astype("float64")
    exact = share * size
    quota = np.floor(exact).astype(np.int64)
    left = int(np.floor(share * size.sum() + 0.5)) - int(quota.sum())
    if left > 0:
        order = np.lexsort((np.arange(len(size)), -(exact - quota)))
        quota[order[:left]] += 1
    return quota


def assign_queue(inputs: pd.DataFrame, playbooks: Playbooks) -> pd.DataFrame:
    """This week's queue for a whole book: ``queue_status``, ``queue_rank``, ``holdout`` and
    ``queue_reason`` per row of ``inputs`` (same index), from the columns of
    :data:`INPUT_COLUMNS` (``queue_reason``: the row's sentence of :func:`expected_values`).
    See the module's docstring for the rules."""
    frame = inputs.reset_index(drop=True)
    n = len(frame)
    account = frame["account_id"].astype(str).to_numpy(dtype=object)
    play = frame["playbook"].astype(object).to_numpy()
    owner = frame["owner"].astype(object).to_numpy()
    ev = pd.to_numeric(frame["expected_value"], errors="coerce").to_numpy(dtype="float64")
    churn_p = pd.to_numeric(frame["churn_probability"], errors="coerce").to_numpy("float64")
    base = frame["queue_reason"].astype(object).to_numpy()
    # an uplift model that expects working the account not to help (effect <= 0): never
    # queued, whatever capacity is left (a sleeping dog, or a lost cause)
    no_help = ((frame["effect_source"].astype(object).to_numpy() == UPLIFT) & ~(ev > 0)
               if "effect_source" in frame else np.zeros(n, dtype=bool))
    critical_features = {s.feature for s in playbooks.critical_signals}
    candidate = pd.notna(play) & (play != playbooks.no_action_playbook)
    jump = (candidate & (frame["severity"].astype(object).to_numpy() == "critical")
            & frame["reason_feature"].isin(critical_features).to_numpy())

    # the holdout, per churn-risk decile of the candidates
    holdout = np.zeros(n, dtype=bool)
    never = {name for name, b in playbooks.playbooks.items() if b.never_hold_out}
    eligible = candidate & ~pd.Series(play).isin(never).to_numpy()
    share = playbooks.holdout_share
    if share > 0 and eligible.any():
        stratum = risk_deciles(churn_p, account, np.flatnonzero(candidate))
        rows = np.flatnonzero(eligible)
        draw = pd.DataFrame({
            "stratum": stratum[rows],
            "u": blake_uniform(account[rows], play[rows], playbooks.policy_version),
            "account_id": account[rows], "row": rows,
        }).sort_values(["stratum", "u", "account_id"], kind="stable")
        position = draw.groupby("stratum", sort=False).cumcount().to_numpy()
        quota = holdout_quota(draw["stratum"].to_numpy(), share)
        held = position < quota[draw["stratum"].to_numpy()]
        holdout[draw["row"].to_numpy()[held]] = True

    # the priority order per owner: new critical signals, expected value, account_id
    rank = np.full(n, -1, dtype=np.int64)
    worked_before = np.zeros(n, dtype=np.int64)
    cand = np.flatnonzero(candidate)
    if len(cand):
        order = pd.DataFrame({
            "owner": owner[cand].astype(str), "jump": ~jump[cand],
            "ev": np.where(np.isnan(ev[cand]), np.inf, -ev[cand]),
            "account_id": account[cand], "row": cand,
            "worked": ~holdout[cand],
        }).sort_values(["owner", "jump", "ev", "account_id"], kind="stable")
        by_owner = order.groupby("owner", sort=False)
        rows = order["row"].to_numpy()
        rank[rows] = by_owner.cumcount().to_numpy() + 1
        worked = order["worked"].to_numpy().astype(np.int64)
        worked_before[rows] = by_owner["worked"].cumsum().to_numpy().astype(np.int64) - worked
    capacity = pd.Series(owner).map(playbooks.capacity).fillna(0).to_numpy(dtype=np.int64)
    known = (~np.isnan(ev) & ~no_help) | jump
    queued = candidate & (worked_before < capacity) & known
    status = np.full(n, None, dtype=object)
    status[candidate] = WATCH
    status[queued] = QUEUED

    # the sentences, column-wise like the decisions above
    who = pd.Series(owner, dtype=object).astype(str) + "'s queue"
    rank_s = pd.Series(rank).astype(str)
    slot_s = pd.Series(worked_before + 1).astype(str) + " of " + pd.Series(capacity).astype(str)
    heads = np.select(
        [holdout & queued, holdout, queued & jump, queued, no_help & ~jump, ~known],
        [("held out to measure the play (policy " + playbooks.policy_version + "): recommended "
          "but not worked this week (would be in " + who + ", #" + rank_s + ")").to_numpy(),
         ("held out to measure the play (policy " + playbooks.policy_version + "): recommended "
          "but not worked this week (below the line of " + who + ", #" + rank_s + ")"
          ).to_numpy(),
         ("new critical signal this week: jumps " + who + " (#" + slot_s + ")").to_numpy(),
         ("#" + slot_s + " in " + who + " this week").to_numpy(),
         np.full(n, "watch: the uplift model expects working it not to help", dtype=object),
         np.full(n, "watch: not ranked", dtype=object)],
        default=("watch: " + who + " of " + pd.Series(capacity).astype(str)
                 + " is full this week (priority #" + rank_s + ")").to_numpy(),
    ).astype(object)
    tail = pd.Series(base, dtype=object)
    has_tail = (tail.notna() & (tail.astype(str) != "")).to_numpy()
    reason = np.where(has_tail, heads + "; " + tail.fillna("").astype(str).to_numpy(),
                      heads).astype(object)
    reason[~candidate] = None
    queue_rank = pd.array(rank, dtype="Int32")
    queue_rank[~candidate] = pd.NA
    held = pd.array(holdout, dtype="boolean")
    held[~candidate] = pd.NA
    return pd.DataFrame({"queue_status": status, "queue_rank": queue_rank, "holdout": held,
                         "queue_reason": reason}, index=inputs.index)


def inputs_of_frame(scores: pd.DataFrame) -> pd.DataFrame:
    """The :data:`INPUT_COLUMNS` (and ``effect_source`` when there) of a ``score_frame``
    output frame."""
    actions = pd.DataFrame.from_records(
        [a if isinstance(a, dict) else {} for a in scores["next_best_action"]],
        columns=["playbook", "owner", "severity", "reason_feature"], index=scores.index)
    extra = [c for c in ("effect_source",) if c in scores]
    return pd.concat([scores[["account_id"]], actions,
                      scores[["expected_value", "churn_probability", "queue_reason", *extra]]],
                     axis=1)


def queue_frame(scores: pd.DataFrame, playbooks: Playbooks, uplift: Any = None) -> pd.DataFrame:
    """``scores`` (a whole week of ``score_frame`` rows) with this week's queue filled in;
    with ``uplift`` (an ``UpliftSet``) its plays' expected values first (:func:`uplift_values`)."""
    out = scores.copy()
    if uplift is not None:
        play = inputs_of_frame(out)["playbook"].to_numpy(dtype=object)
        ev, source, text = uplift_values(out, play, out["expected_value"].to_numpy("float64"),
                                         out["queue_reason"].astype(object).to_numpy(),
                                         uplift, playbooks)
        out["expected_value"] = ev
        out["effect_source"] = pd.Series(source, index=out.index, dtype="str")
        out["queue_reason"] = pd.Series(text, index=out.index, dtype=object)
    queue = assign_queue(inputs_of_frame(out), playbooks)
    for column in queue.columns:
        out[column] = queue[column]
    return out


def inputs_of_arrow(table: Any) -> pd.DataFrame:
    """The :data:`INPUT_COLUMNS` of an Arrow table of output rows (read column-wise)."""
    action = table.column("next_best_action").combine_chunks()
    data = {"account_id": table.column("account_id").to_numpy()}
    for field in ("playbook", "owner", "severity", "reason_feature"):
        data[field] = action.field(field).to_numpy(zero_copy_only=False)
    for column in ("expected_value", "churn_probability", "queue_reason", "effect_source"):
        if column in table.column_names:
            data[column] = table.column(column).to_numpy(zero_copy_only=False)
    return pd.DataFrame(data)


def queue_columns(inputs: pd.DataFrame, columns: Mapping[str, Any], playbooks: Playbooks,
                  uplift: Any = None) -> tuple[pd.DataFrame, list[str]]:
    """This week's queue for a whole book from its :data:`INPUT_COLUMNS` (``inputs``, one row
    per account, any order) and, with ``uplift`` (an ``UpliftSet``), the columns its models
    read (``columns``: name -> values in ``inputs``' order; its plays' expected values first,
    :func:`uplift_values`): ``(frame, written)``, the frame holding ``queue_status``,
    ``queue_rank``, ``queue_reason``, ``holdout``, ``expected_value`` and ``effect_source``
    per row of ``inputs``, ``written`` the columns that replace the output's (the queue's,
    and with uplift the two it changes). Shared by :func:`queue_tables` (the local engine)
    and the Spark engine's queue task."""
    inputs = inputs.copy()
    written = ["queue_status", "queue_rank", "queue_reason", "holdout"]
    if uplift is not None and getattr(uplift, "plays", None):
        ev, source, text = uplift_values(columns, inputs["playbook"].to_numpy(dtype=object),
                                         inputs["expected_value"].to_numpy(dtype="float64"),
                                         inputs["queue_reason"].to_numpy(dtype=object),
                                         uplift, playbooks)
        inputs["expected_value"] = ev
        inputs["effect_source"] = source
        inputs["queue_reason"] = text
        written += ["expected_value", "effect_source"]
    queue = assign_queue(inputs, playbooks)
    for column in ("expected_value", "effect_source"):
        queue[column] = inputs[column].to_numpy() if column in inputs else None
    return queue, written


def uplift_inputs(uplift: Any) -> list[str]:
    """The output columns an ``UpliftSet``'s models read (none without one)."""
    if uplift is None or not getattr(uplift, "plays", None):
        return []
    return list(dict.fromkeys([*uplift.features, "mrr"]))


def queue_tables(tables: Sequence[Any], playbooks: Playbooks, uplift: Any = None) -> list[Any]:
    """Arrow tables holding a whole week's output rows (in any split) with this week's queue
    filled in: the queue is decided over all of them at once (:func:`queue_columns`); with
    ``uplift`` (an ``UpliftSet``) its plays' expected values first (:func:`uplift_values`)."""
    import pyarrow as pa

    tables = list(tables)
    if not tables:
        return tables
    whole = pa.concat_tables(tables)
    columns = {c: whole.column(c).to_numpy(zero_copy_only=False)
               for c in uplift_inputs(uplift) if c in whole.column_names}
    queue, written = queue_columns(inputs_of_arrow(whole), columns, playbooks, uplift)
    out = []
    start = 0
    for table in tables:
        part = queue.iloc[start:start + table.num_rows]
        start += table.num_rows
        for column in written:
            at = table.schema.get_field_index(column)
            field = table.schema.field(at)
            values = pa.array(part[column].astype(object).where(part[column].notna(), None)
                              .tolist(), type=field.type)
            table = table.set_column(at, field, values)
        out.append(table)
    return out


__all__ = ["DECILES", "INPUT_COLUMNS", "PRIOR", "QUEUED", "QUEUE_COLUMNS", "UPLIFT", "WATCH",
           "uplift_values",
           "assign_queue", "blake_uniform", "expected_values", "inputs_of_arrow",
           "inputs_of_frame", "queue_columns", "queue_frame", "queue_tables", "risk_deciles",
           "uplift_inputs"]
