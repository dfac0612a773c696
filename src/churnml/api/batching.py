"""Concurrent ``/predict`` callers share one model call: a micro-batcher for one event loop.

Why not BentoML's ``batchable=True``: its adaptive ("cork") dispatcher decides when to release
a batch from a latency model it fits as it goes, polling every millisecond while a batch runs.
For churnml's scoring (about 1.2 ms per call plus about 0.35 ms per account on a 2-core
machine) it released batches of 2 to 4 accounts with 16 clients waiting (measured,
``benchmarks/README.md``), and its poll competed for the GIL with the scoring thread. :class:`MicroBatcher` batches
"naturally" instead: a call that arrives while no batch runs is scored at once, after letting
the requests the server has already read join it; calls that arrive while a batch runs wait
for it and then go together, up to :data:`~churnml.api.schema.MAX_ACCOUNTS` accounts per
model call. Under no load it adds a few microseconds; under load the batch size follows the
number of callers waiting, with no latency budget to tune.

Small batches are scored on the event loop itself, with no hand-off to a thread (that alone
took the service's sequential p50 from about 8 ms to about 4.4 ms, before the other changes);
batches above ``inline_max`` accounts go to a worker thread, so a 1,000-account call never
stops the loop from answering ``/livez``. One
batch runs at a time. When a batch of several calls fails, each call is scored alone so that
an error reaches only the call that caused it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from churnml.api.schema import MAX_ACCOUNTS

logger = logging.getLogger(__name__)

#: Batches of at most this many accounts are scored on the event loop (about 25 ms at most).
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
    """Counters of a :class:`MicroBatcher`: calls and their items; ``batches`` formed (each
    one shared model call, unless it failed); ``model_calls`` made (batches plus the per-call
    re-scoring after a failed batch); the largest batch; ``isolated_failures`` (failed
    batches of several calls that were re-scored call by call)."""

    calls: int = 0
    items: int = 0
    batches: int = 0
    model_calls: int = 0
    largest_batch: int = 0
    isolated_failures: int = 0


class MicroBatcher:
    """``await batcher(items)`` -> ``score(items)``, sharing ``score`` calls between callers.

    ``score`` takes a list of items and returns one result per item, in order. Calls are never
    split: a batch takes whole calls in arrival order while they fit in ``max_items`` (a call
    larger than that goes alone). Results are returned per call, in the call's order.
    ``on_batch(items, seconds)``, when given, is called after each model call (metrics).
    """

    def __init__(self, score: Callable[[list], Sequence[Any]], *,
                 max_items: int = MAX_ACCOUNTS, inline_max: int = INLINE_MAX_ACCOUNTS,
                 settle_rounds: int = SETTLE_ROUNDS,
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.score = score
        self.max_items = max_items
        self.inline_max = inline_max
        self.settle_rounds = settle_rounds
        self.on_batch = on_batch  # (items, seconds) after each model call: metrics
        self.stats = BatchStats()
        self._pending: list[_Call] = []
        self._task: asyncio.Task | None = None  # the running drain (a reference keeps it alive)

    async def __call__(self, items: Sequence[Any]) -> list[Any]:
        if not items:
            return []
        loop = asyncio.get_running_loop()
        call = _Call(items, loop.create_future())
        self._pending.append(call)
        self.stats.calls += 1
        self.stats.items += call.size
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain())
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
        self.stats.model_calls += 1
        start = time.perf_counter()
        if len(items) <= self.inline_max:
            results = self.score(items)
        else:
            results = await asyncio.to_thread(self.score, items)
        if len(results) != len(items):
            raise RuntimeError(f"score returned {len(results)} results for {len(items)} items")
        if self.on_batch is not None:
            try:
                self.on_batch(len(items), time.perf_counter() - start)
            except Exception:  # noqa: BLE001 - metrics never fail a request
                logger.exception("batch metrics callback failed")
        return results

    async def _drain(self) -> None:
        batch: list[_Call] = []
        try:
            while self._pending:
                await self._settle()
                batch = self._take()
                if not batch:
                    continue
                await self._score_batch(batch)
                batch = []
        except BaseException as exc:  # cancelled or interrupted: answer who is waiting
            for call in batch + self._pending:
                _set(call, exc=RuntimeError(f"the batcher stopped: {exc!r}"))
            self._pending.clear()
            raise
        finally:
            self._task = None

    async def _score_batch(self, batch: list[_Call]) -> None:
        items = [item for call in batch for item in call.items]
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(items))
        try:
            results = await self._run(items)
        except Exception as exc:  # noqa: BLE001 - handed to the callers
            if len(batch) == 1:
                _set(batch[0], exc=exc)
                return
            # several callers: score each alone so the error reaches only its own
            self.stats.isolated_failures += 1
            for call in batch:
                if call.future.done():  # the caller left while the batch ran
                    continue
                try:
                    _set(call, result=list(await self._run(list(call.items))))
                except Exception as own:  # noqa: BLE001
                    _set(call, exc=own)
                await asyncio.sleep(0)  # let the loop answer others (probes) in between
            return
        start = 0
        for call in batch:
            _set(call, result=list(results[start:start + call.size]))
            start += call.size


def _set(call: _Call, result: Any = None, exc: BaseException | None = None) -> None:
    if call.future.done():
        return
    if exc is not None:
        call.future.set_exception(exc)
    else:
        call.future.set_result(result)


_OBSERVER: Callable[[int, float], None] | None = None


def prometheus_batch_observer() -> Callable[[int, float], None]:
    """An ``on_batch`` callback recording Prometheus histograms of the model calls:
    ``churnml_predict_batch_size`` (accounts per call) and ``churnml_predict_batch_seconds``,
    shown at the service's ``/metrics`` beside BentoML's request metrics.

    Made once per process (a registry refuses a second metric of the same name), on first
    use: in a BentoML worker that is after BentoML has set prometheus_client's multiprocess
    directory, so the service must call this when its instance is made, not at import.
    """
    global _OBSERVER
    if _OBSERVER is None:
        from prometheus_client import Histogram

        sizes = Histogram("churnml_predict_batch_size",
                          "Accounts scored per model call of /predict (concurrent requests "
                          "share calls)", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000))
        seconds = Histogram("churnml_predict_batch_seconds",
                            "Seconds per model call of /predict",
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                     1.0, 2.5))

        def observe(items: int, took: float) -> None:
            sizes.observe(items)
            seconds.observe(took)

        _OBSERVER = observe
    return _OBSERVER
