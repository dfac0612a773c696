"""churnml.api.batching.MicroBatcher: each caller gets exactly its own results while concurrent
callers share ``score`` calls; calls are whole and in arrival order within ``max_items``; an
error reaches only the call that caused it; cancelled callers are skipped; big batches run off
the event loop. Plain ``asyncio.run`` (no pytest-asyncio)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnml.api.batching import MicroBatcher

WAIT_S = 5.0  # upper bound for anything a test waits on (never reached when the code works)


def scored(item):
    """What the recording score functions below return for ``item``."""
    return ("scored", item)


class Recorder:
    """A ``score`` function: records each batch and the thread it ran on, returns
    ``scored(item)`` per item. With ``hold=True`` the first call blocks (it must then run in a
    worker thread, so use ``inline_max=0``) until :meth:`release`, so that more calls arrive
    while a batch runs."""

    def __init__(self, hold: bool = False, fail_on=None) -> None:
        self.batches: list[list] = []
        self.threads: list[int] = []
        self.hold = hold
        self.fail_on = fail_on
        self.started = threading.Event()
        self._release = threading.Event()

    def __call__(self, items):
        first = not self.batches
        self.batches.append(list(items))
        self.threads.append(threading.get_ident())
        if first and self.hold:
            self.started.set()
            assert self._release.wait(WAIT_S), "the held batch was never released"
        if self.fail_on is not None:
            bad = [item for item in items if self.fail_on(item)]
            if bad:
                raise ValueError(f"cannot score {bad[0]!r}")
        return [scored(item) for item in items]

    def release(self) -> None:
        self._release.set()


async def until(condition) -> None:
    """Let the loop run until ``condition()`` holds (fails after WAIT_S)."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.001)


def run(coro):
    """``asyncio.run`` with a time limit: a caller the batcher forgets fails, never hangs."""
    return asyncio.run(asyncio.wait_for(coro, WAIT_S))


async def turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def hold_first_batch(batcher: MicroBatcher, recorder: Recorder, items=("held",)):
    """Start a call whose batch blocks in ``score`` (worker thread) until released."""
    task = asyncio.create_task(batcher(list(items)))
    await until(recorder.started.is_set)
    return task


# --- one caller ------------------------------------------------------------------------------

def test_a_single_call_gets_score_of_its_items_in_order():
    recorder = Recorder()
    batcher = MicroBatcher(recorder)
    items = ["c", "a", "b", "a"]
    assert run(batcher(items)) == [scored(x) for x in items]
    assert recorder.batches == [items]
    assert (batcher.stats.calls, batcher.stats.items, batcher.stats.batches,
            batcher.stats.largest_batch) == (1, 4, 1, 4)


def test_an_empty_call_returns_an_empty_list_without_scoring():
    recorder = Recorder()
    batcher = MicroBatcher(recorder)
    assert run(batcher([])) == []
    assert recorder.batches == []
    assert batcher.stats.calls == 0 and batcher.stats.batches == 0


def test_sequential_calls_are_scored_one_at_a_time():
    recorder = Recorder()
    batcher = MicroBatcher(recorder)

    async def main():
        return [await batcher([i, i + 100]) for i in range(3)]

    assert run(main()) == [[scored(i), scored(i + 100)] for i in range(3)]
    assert recorder.batches == [[0, 100], [1, 101], [2, 102]]


def test_max_items_below_one_is_refused():
    with pytest.raises(ValueError, match="max_items must be >= 1, got 0"):
        MicroBatcher(Recorder(), max_items=0)
    with pytest.raises(ValueError, match="max_items must be >= 1"):
        MicroBatcher(Recorder(), max_items=-3)


# --- concurrent callers share score calls ----------------------------------------------------

def test_concurrent_calls_share_one_score_call_and_each_gets_its_own_results():
    calls_seen = []

    def score(items):
        calls_seen.append(list(items))
        return [(item.upper(), len(items)) for item in items]

    batcher = MicroBatcher(score)
    calls = [[f"c{i}-{j}" for j in range(1 + i % 3)] for i in range(20)]

    async def main():
        return await asyncio.gather(*(batcher(items) for items in calls))

    results = run(main())
    total = sum(len(items) for items in calls)
    # all 20 were waiting when the first batch was taken: one model call for all of them
    assert calls_seen == [[item for items in calls for item in items]]
    for items, got in zip(calls, results):
        assert got == [(item.upper(), total) for item in items]
    stats = batcher.stats
    assert stats.batches == len(calls_seen) < len(calls)
    assert (stats.calls, stats.items, stats.largest_batch) == (20, total, total)


def test_calls_arriving_within_a_few_loop_turns_join_the_batch():
    recorder = Recorder()
    batcher = MicroBatcher(recorder)

    async def late(i, delay):
        await turns(delay)
        return await batcher([i])

    async def main():
        return await asyncio.gather(*(late(i, i % 4) for i in range(8)))

    assert run(main()) == [[scored(i)] for i in range(8)]
    assert len(recorder.batches) == 1 and sorted(recorder.batches[0]) == list(range(8))


def test_a_steady_stream_of_calls_does_not_hold_back_the_first_batch():
    # settle_rounds bounds the wait: a call arriving on every loop turn must not starve the batch
    recorder = Recorder()
    batcher = MicroBatcher(recorder, settle_rounds=4)

    async def main():
        tasks = []
        for i in range(40):
            tasks.append(asyncio.create_task(batcher([i])))
            await asyncio.sleep(0)
        return await asyncio.gather(*tasks)

    assert run(main()) == [[scored(i)] for i in range(40)]
    assert len(recorder.batches) > 1
    assert len(recorder.batches[0]) < 40
    assert [item for batch in recorder.batches for item in batch] == list(range(40))


def test_calls_arriving_during_a_batch_go_together_into_the_next_one():
    recorder = Recorder(hold=True)
    batcher = MicroBatcher(recorder, inline_max=0)  # every batch in a worker thread

    async def main():
        first = await hold_first_batch(batcher, recorder)
        later = []
        for i in range(6):
            later.append(asyncio.create_task(batcher([f"b{i}", f"b{i}x"])))
            await asyncio.sleep(0.001)  # they arrive one by one while the first batch runs
        await turns(20)
        assert len(recorder.batches) == 1  # one batch at a time: the others wait
        recorder.release()
        return await first, await asyncio.gather(*later)

    first, later = run(main())
    assert first == [scored("held")]
    assert later == [[scored(f"b{i}"), scored(f"b{i}x")] for i in range(6)]
    assert recorder.batches == [["held"], [x for i in range(6) for x in (f"b{i}", f"b{i}x")]]
    assert batcher.stats.batches == 2 and batcher.stats.largest_batch == 12


def test_max_items_takes_whole_calls_in_arrival_order():
    recorder = Recorder(hold=True)
    batcher = MicroBatcher(recorder, max_items=4, inline_max=0)
    sizes = [2, 2, 1, 3, 7, 1, 1, 4, 5]
    calls = [[f"c{i}.{j}" for j in range(size)] for i, size in enumerate(sizes)]

    async def main():
        first = await hold_first_batch(batcher, recorder)
        tasks = [asyncio.create_task(batcher(items)) for items in calls]
        await turns(5)
        recorder.release()
        await first
        return await asyncio.gather(*tasks)

    results = run(main())
    assert results == [[scored(x) for x in items] for items in calls]

    def joined(*indexes):
        return [x for i in indexes for x in calls[i]]

    # 2+2 | 1+3 | 7 alone (larger than max_items, whole) | 1+1 (the 4 would make 6) | 4 | 5 alone
    assert recorder.batches[1:] == [joined(0, 1), joined(2, 3), joined(4), joined(5, 6),
                                    joined(7), joined(8)]
    assert all(len(batch) <= 4 for batch in recorder.batches if batch not in calls)
    assert batcher.stats.largest_batch == 7


# --- errors ----------------------------------------------------------------------------------

def test_an_error_reaches_only_the_call_that_caused_it():
    recorder = Recorder(fail_on=lambda item: item.startswith("poison"))
    batcher = MicroBatcher(recorder)
    calls = [["a1", "a2"], ["b", "poison-1"], ["c"], ["poison-2"], ["d1", "d2", "d3"]]

    async def main():
        return await asyncio.gather(*(batcher(items) for items in calls),
                                    return_exceptions=True)

    results = run(main())
    assert results[0] == [scored("a1"), scored("a2")]
    assert results[2] == [scored("c")]
    assert results[4] == [scored(x) for x in ("d1", "d2", "d3")]
    # each failing call gets the error of its own items, not the shared batch's
    assert isinstance(results[1], ValueError) and str(results[1]) == "cannot score 'poison-1'"
    assert isinstance(results[3], ValueError) and str(results[3]) == "cannot score 'poison-2'"
    # the shared batch once, then every call alone
    assert recorder.batches == [[x for items in calls for x in items], *calls]
    assert batcher.stats.isolated_failures == 1
    assert batcher.stats.batches == 1


def test_a_failing_call_alone_gets_its_error_and_the_batcher_goes_on():
    recorder = Recorder(fail_on=lambda item: item == "poison")
    batcher = MicroBatcher(recorder)

    async def main():
        with pytest.raises(ValueError, match="cannot score 'poison'"):
            await batcher(["ok", "poison"])
        return await batcher(["next"])

    assert run(main()) == [scored("next")]
    assert recorder.batches == [["ok", "poison"], ["next"]]  # no re-scoring of a lone call
    assert batcher.stats.isolated_failures == 0


def test_errors_of_big_batches_run_in_threads_are_isolated_too():
    recorder = Recorder(fail_on=lambda item: item == "poison")
    batcher = MicroBatcher(recorder, inline_max=0)
    calls = [["a"], ["poison"], ["b"]]

    async def main():
        return await asyncio.gather(*(batcher(items) for items in calls),
                                    return_exceptions=True)

    results = run(main())
    assert results[0] == [scored("a")] and results[2] == [scored("b")]
    assert isinstance(results[1], ValueError)
    assert batcher.stats.isolated_failures == 1


def test_a_wrong_number_of_results_is_a_runtime_error():
    batcher = MicroBatcher(lambda items: [scored(x) for x in items[:-1]])

    async def main():
        with pytest.raises(RuntimeError, match="score returned 1 results for 2 items"):
            await batcher(["a", "b"])
        return await batcher(["c", "d"])  # the batcher goes on after the error

    with pytest.raises(RuntimeError, match="score returned 1 results for 2 items"):
        run(main())


def test_a_wrong_number_of_results_is_a_runtime_error_for_concurrent_callers_too():
    batcher = MicroBatcher(lambda items: [scored(x) for x in items[:-1]])

    async def main():
        return await asyncio.gather(batcher(["c"]), batcher(["d", "e"]),
                                    return_exceptions=True)

    together = run(main())
    assert [type(r) for r in together] == [RuntimeError, RuntimeError], together
    assert "score returned 0 results for 1 items" in str(together[0])
    assert "score returned 1 results for 2 items" in str(together[1])


def test_a_count_mismatch_only_in_the_shared_batch_is_repaired_by_scoring_alone():
    # a score that merges duplicate items: right alone, one result short for two callers
    # sending the same item together
    seen = []

    def dedup_score(items):
        seen.append(list(items))
        return [scored(x) for x in dict.fromkeys(items)]

    batcher = MicroBatcher(dedup_score)

    async def main():
        return await asyncio.gather(batcher(["same"]), batcher(["same"]))

    assert run(main()) == [[scored("same")], [scored("same")]]
    assert seen == [["same", "same"], ["same"], ["same"]]
    assert batcher.stats.isolated_failures == 1


# --- cancelled callers -----------------------------------------------------------------------

def test_a_caller_that_gave_up_before_its_batch_is_skipped():
    recorder = Recorder(hold=True)
    batcher = MicroBatcher(recorder, inline_max=0)

    async def main():
        first = await hold_first_batch(batcher, recorder)
        keep1 = asyncio.create_task(batcher(["k1"]))
        timed_out = asyncio.create_task(asyncio.wait_for(batcher(["gone1"]), timeout=0.01))
        cancelled = asyncio.create_task(batcher(["gone2"]))
        keep2 = asyncio.create_task(batcher(["k2"]))
        with pytest.raises(asyncio.TimeoutError):
            await timed_out
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        recorder.release()
        return await first, await keep1, await keep2

    assert run(main()) == ([scored("held")], [scored("k1")], [scored("k2")])
    assert recorder.batches == [["held"], ["k1", "k2"]]  # the given-up calls never scored
    assert batcher.stats.calls == 5 and batcher.stats.batches == 2


def test_a_caller_cancelled_while_its_batch_runs_does_not_break_the_others():
    recorder = Recorder(hold=True)
    batcher = MicroBatcher(recorder, inline_max=0)

    async def main():
        gone = asyncio.create_task(batcher(["y"]))  # first: its result is set first
        keep = asyncio.create_task(batcher(["x"]))
        await until(recorder.started.is_set)  # both calls are in the running batch
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        recorder.release()
        return await keep, await batcher(["z"])

    assert run(main()) == ([scored("x")], [scored("z")])
    assert recorder.batches == [["y", "x"], ["z"]]


def test_only_cancelled_callers_pending_leaves_the_batcher_usable():
    recorder = Recorder(hold=True)
    batcher = MicroBatcher(recorder, inline_max=0)

    async def main():
        first = await hold_first_batch(batcher, recorder)
        gone = [asyncio.create_task(batcher([f"g{i}"])) for i in range(3)]
        await turns(3)
        for task in gone:
            task.cancel()
        await asyncio.gather(*gone, return_exceptions=True)
        recorder.release()
        await first
        await turns(20)  # the drain finds nothing to score and stops
        return await batcher(["after"])

    assert run(main()) == [scored("after")]
    assert recorder.batches == [["held"], ["after"]]


# --- where batches run -----------------------------------------------------------------------

def test_big_batches_run_in_a_worker_thread_and_small_ones_on_the_loop():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, inline_max=2)

    async def main():
        loop_thread = threading.get_ident()
        assert await batcher([1, 2]) == [scored(1), scored(2)]
        assert await batcher([1, 2, 3]) == [scored(x) for x in (1, 2, 3)]
        assert await batcher([4]) == [scored(4)]
        return loop_thread

    loop_thread = run(main())
    assert recorder.batches == [[1, 2], [1, 2, 3], [4]]
    on_loop = [thread == loop_thread for thread in recorder.threads]
    assert on_loop == [True, False, True]


def test_the_loop_keeps_running_while_a_big_batch_is_scored():
    recorder = Recorder(hold=True)
    batcher = MicroBatcher(recorder, inline_max=0)

    async def main():
        first = await hold_first_batch(batcher, recorder)
        ticks = 0
        for _ in range(10):  # the loop is free: other coroutines run while score blocks
            await asyncio.sleep(0.001)
            ticks += 1
        assert not first.done()
        recorder.release()
        return ticks, await first

    assert run(main()) == (10, [scored("held")])


# --- property: whatever the arrivals, each caller gets its own results ----------------------

@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5), min_size=1, max_size=30),
    delays=st.lists(st.integers(0, 12), min_size=30, max_size=30),
    max_items=st.integers(1, 10),
    inline_max=st.sampled_from([0, 3, 64]),
)
def test_every_caller_gets_exactly_its_own_results(sizes, delays, max_items, inline_max):
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_items=max_items, inline_max=inline_max)
    calls = [[(i, j) for j in range(size)] for i, size in enumerate(sizes)]
    arrivals: list[int] = []

    async def caller(i):
        await turns(delays[i])
        arrivals.append(i)  # no await between this and the batcher queuing the call
        return await batcher(calls[i])

    async def main():
        return await asyncio.gather(*(caller(i) for i in range(len(calls))))

    results = run(main())
    assert results == [[scored(x) for x in items] for items in calls]
    # first in, first scored: the batches, end to end, are the calls in arrival order
    assert [x for batch in recorder.batches for x in batch] == \
        [x for i in arrivals for x in calls[i]]
    for batch in recorder.batches:
        callers = list(dict.fromkeys(i for i, _ in batch))
        assert batch == [x for i in callers for x in calls[i]]  # whole calls only
        assert len(batch) <= max_items or len(callers) == 1
    stats = batcher.stats
    assert stats.batches == len(recorder.batches)
    assert (stats.calls, stats.items) == (len(calls), sum(sizes))
    assert stats.largest_batch == max(len(batch) for batch in recorder.batches)
    assert stats.isolated_failures == 0


def test_model_calls_count_the_per_call_rescoring_after_a_failed_batch():
    recorder = Recorder(fail_on=lambda item: item == "poison")
    batcher = MicroBatcher(recorder)

    async def main():
        return await asyncio.gather(batcher(["a"]), batcher(["poison"]), batcher(["b"]),
                                    return_exceptions=True)

    results = run(main())
    assert results[0] == [scored("a")] and results[2] == [scored("b")]
    assert isinstance(results[1], ValueError)
    # one shared batch that failed, then each of the three calls alone
    assert batcher.stats.batches == 1
    assert batcher.stats.model_calls == 4 == len(recorder.batches)


def test_a_stopped_batcher_answers_every_waiting_caller_and_starts_afresh():
    recorder = Recorder(hold=True)
    batcher = MicroBatcher(recorder, inline_max=0)

    async def main():
        held = await hold_first_batch(batcher, recorder)
        waiting = asyncio.create_task(batcher(["next"]))
        await turns(3)
        batcher._task.cancel()  # the drain stops (shutdown, an interrupt) mid-batch
        outcomes = await asyncio.gather(held, waiting, return_exceptions=True)
        recorder.release()
        again = await batcher(["later"])  # a new call starts a new drain
        return outcomes, again

    (held, waiting), again = run(main())
    for outcome in (held, waiting):
        assert isinstance(outcome, RuntimeError) and "stopped" in str(outcome)
    assert again == [scored("later")]
