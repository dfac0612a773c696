"""Concurrent ``/predict`` callers share one model call: a micro-batcher for one event loop.

Why not BentoML's ``batchable=True``: its adaptive ("cork") dispatcher decides when to release
a batch from a latency model it fits as it goes, polling every millisecond while a batch runs.
For churnml's scoring (a fixed cost of about 1 ms per call plus about 0.1 ms per account) it
released batches of 2 to 4 accounts with 16 clients waiting (measured, ``benchmarks/README.md``),
and its poll competed for the GIL with the scoring thread. :class:`MicroBatcher` batches
"naturally" instead: a call that arrives while no batch runs is scored at once, after letting
the requests the server has already read join it; calls that arrive while a batch runs wait
for it and then go together, up to :data:`~churnml.api.schema.MAX_ACCOUNTS` accounts per
model call. Under no load it adds a few microseconds; under load the batch size follows the
number of callers waiting, with no latency budget to tune.

Small batches are scored on the event loop itself (no thread hand-off, which on a busy 2-core
machine cost more than scoring one account); batches above ``inline_max`` accounts go to a
worker thread, so a 1,000-account call never stops the loop from answering ``/livez``. One
batch runs at a time. When a batch of several calls fails, each call is scored alone so that
an error reaches only the call that caused it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from churnml.api.schema import MAX_ACCOUNTS

#: Batches of at most this many accounts are scored on the event loop (about 5 ms at most).
INLINE_MAX_ACCOUNTS = 64
#: Loop turns to wait, at most, for requests already read to join a batch before it starts.
SETTLE_ROUNDS = 16


@dataclass
class _Call:
    items: Sequence[Any]
    future: asyncio.Future
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.items)


@dataclass
class BatchStats:
    """Counters of a :class:`MicroBatcher` (calls, accounts, model calls, largest batch)."""

    calls: int = 0
    items: int = 0
    batches: int = 0
    largest_batch: int = 0
    isolated_failures: int = 0


class MicroBatcher:
    """``await batcher(items)`` -> ``score(items)``, sharing ``score`` calls between callers.

    ``score`` takes a list of items and returns one result per item, in order. Calls are never
    split: a batch takes whole calls in arrival order while they fit in ``max_items`` (a call
    larger than that goes alone). Results are returned per call, in the call's order.
    """

    def __init__(self, score: Callable[[list], Sequence[Any]], *,
                 max_items: int = MAX_ACCOUNTS, inline_max: int = INLINE_MAX_ACCOUNTS,
                 settle_rounds: int = SETTLE_ROUNDS) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.score = score
        self.max_items = max_items
        self.inline_max = inline_max
        self.settle_rounds = settle_rounds
        self.stats = BatchStats()
        self._pending: list[_Call] = []
        self._draining = False

    async def __call__(self, items: Sequence[Any]) -> list[Any]:
        if not items:
            return []
        loop = asyncio.get_running_loop()
        call = _Call(items, loop.create_future())
        self._pending.append(call)
        self.stats.calls += 1
        self.stats.items += call.size
        if not self._draining:
            self._draining = True
            loop.create_task(self._drain())
        return await call.future

    async def _settle(self) -> None:
        """Yield to the loop until no more calls join (requests already read reach us)."""
        quiet = 0
        for _ in range(self.settle_rounds):
            before = len(self._pending)
            await asyncio.sleep(0)
            quiet = quiet + 1 if len(self._pending) == before else 0
            if quiet >= 2:
                return

    def _take(self) -> list[_Call]:
        """Whole calls in arrival order while they fit in ``max_items`` (at least one)."""
        batch: list[_Call] = []
        total = 0
        while self._pending:
            call = self._pending[0]
            if call.future.done():  # the caller gave up (timeout, disconnect)
                self._pending.pop(0)
                continue
            if batch and total + call.size > self.max_items:
                break
            batch.append(self._pending.pop(0))
            total += call.size
        return batch

    async def _run(self, items: list) -> Sequence[Any]:
        if len(items) <= self.inline_max:
            return self.score(items)
        return await asyncio.to_thread(self.score, items)

    async def _drain(self) -> None:
        try:
            while self._pending:
                await self._settle()
                batch = self._take()
                if not batch:
                    continue
                items = [item for call in batch for item in call.items]
                self.stats.batches += 1
                self.stats.largest_batch = max(self.stats.largest_batch, len(items))
                try:
                    results = await self._run(items)
                    if len(results) != len(items):
                        raise RuntimeError(f"score returned {len(results)} results for "
                                           f"{len(items)} items")
                except Exception as exc:  # noqa: BLE001 - handed to the callers
                    if len(batch) == 1:
                        _set(batch[0], exc=exc)
                        continue
                    # several callers: score each alone so the error reaches only its own
                    self.stats.isolated_failures += 1
                    for call in batch:
                        try:
                            _set(call, result=list(await self._run(list(call.items))))
                        except Exception as own:  # noqa: BLE001
                            _set(call, exc=own)
                    continue
                start = 0
                for call in batch:
                    _set(call, result=list(results[start:start + call.size]))
                    start += call.size
        finally:
            self._draining = False
            if self._pending:  # a call joined as the loop ended: start again
                self._draining = True
                asyncio.get_running_loop().create_task(self._drain())


def _set(call: _Call, result: Any = None, exc: BaseException | None = None) -> None:
    if call.future.done():
        return
    if exc is not None:
        call.future.set_exception(exc)
    else:
        call.future.set_result(result)
