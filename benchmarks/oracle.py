"""Benchmark of the simulator's oracle (``oracle_probability``), the largest part of training's
evaluation on a simulated book, against a baseline version of the code in the same run.

Observations shaped like a test window: every account of the cached book at 13 weekly as_of
dates (Mondays from 27 to 15 weeks before the book's end), or a seeded sample of ``--rows`` of
them. Each measurement runs in its own child process (loading the truth is not timed), in
this order, ``--repeat`` times, so all see the same load:

- ``baseline``: the code under ``--baseline-src`` (for example a checkout of main), if given;
- ``now, one thread``: this code with the random numbers drawn in the computing thread
  (``simulator._PrefetchedDraws`` replaced by a synchronous stand-in), the shortcuts alone;
- ``now``: this code as it runs in ``churnml train``.

Prints wall and CPU seconds per run, the load average, and whether every run gave the same
probabilities bit for bit (NaN in the same places).

Usage::

    python benchmarks/oracle.py --accounts 10000 --rows 20000 --baseline-src /path/to/main/src
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import cached_book  # benchmarks/ is on sys.path when run as a script

import numpy as np  # noqa: E402


def observations(book: Path, rows: int | None, seed: int = 0):
    import pandas as pd

    accounts = pd.read_parquet(book / "accounts.parquet", columns=["account_id"])["account_id"]
    weeks = pd.read_parquet(book / "_truth" / "state_weekly.parquet", columns=["week_start"])["week_start"]
    end = pd.Timestamp(weeks.max())
    dates = [end - pd.Timedelta(days=7 * w) for w in range(15, 28)]
    dates = [d - pd.Timedelta(days=d.day_of_week) for d in dates]
    obs = pd.DataFrame({"account_id": np.tile(accounts.to_numpy(), len(dates)),
                        "as_of": np.repeat(np.array(dates, dtype="datetime64[ns]"), len(accounts))})
    if rows and rows < len(obs):
        obs = obs.sample(rows, random_state=seed).reset_index(drop=True)
    return obs


class _SynchronousDraws:
    """Stand-in for ``simulator._PrefetchedDraws`` drawing in the calling thread."""

    def __init__(self, n, n_weeks, rng, rng_x):
        self._args = (n, rng, rng_x)

    def __enter__(self):
        return self

    def next(self):
        from churnml.data import _sim_model as m

        n, rng, rng_x = self._args
        return m.event_draws(n, rng), m.advance_draws(n, rng, rng_x)

    def __exit__(self, *exc):
        return None


def measure(args) -> None:
    from churnml.data import simulator

    if args.one_thread:
        simulator._PrefetchedDraws = _SynchronousDraws
    truth = simulator._load_truth(args.book)
    obs = observations(Path(args.book), args.rows)
    wall, cpu = time.perf_counter(), time.process_time()
    p = simulator.oracle_probability(truth, obs, args.horizon, args.target)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    np.save(args.out + ".npy", p)
    Path(args.out + ".json").write_text(json.dumps({
        "wall_s": wall, "cpu_s": cpu, "rows": len(obs), "defined": int(np.isfinite(p).sum()),
        "load": os.getloadavg()[0]}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=10000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rows", type=int, default=20000, help="sample of the observations (0: all)")
    parser.add_argument("--target", default="churn")
    parser.add_argument("--horizon", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="the src folder of the code to compare with (run with PYTHONPATH)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "churnml-bench")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--one-thread", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--book", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        measure(args)
        return 0

    book = cached_book(args.cache, args.accounts, args.months, args.seed)
    here = str(Path(__file__).resolve().parents[1] / "src")
    sides = ([("baseline", str(args.baseline_src.resolve()), False)] if args.baseline_src else [])
    sides += [("now, one thread", here, True), ("now", here, False)]
    results: dict[str, list[dict]] = {name: [] for name, _, _ in sides}
    first: np.ndarray | None = None
    identical = True
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            for name, src, one_thread in sides:
                out = f"{tmp}/{len(results[name])}-{name.replace(' ', '_').replace(',', '')}"
                cmd = [sys.executable, __file__, "--measure", "--book", str(book), "--out", out,
                       "--rows", str(args.rows), "--target", args.target, "--horizon", str(args.horizon)]
                if one_thread:
                    cmd.append("--one-thread")
                env = {**os.environ, "PYTHONPATH": src}
                subprocess.run(cmd, env=env, check=True)
                figures = json.loads(Path(out + ".json").read_text())
                p = np.load(out + ".npy")
                if first is None:
                    first = p
                same = bool(np.array_equal(first, p, equal_nan=True))
                identical &= same
                figures["identical"] = same
                results[name].append(figures)
                print(f"run {r + 1} {name}: {figures['wall_s']:.1f} s wall, {figures['cpu_s']:.1f} s CPU, "
                      f"load {figures['load']:.1f}, same probabilities: {same}", file=sys.stderr, flush=True)
    print(f"\noracle_probability, {args.target}, {args.horizon} days, book {book.name}, "
          f"{results[sides[0][0]][0]['rows']:,} observations ({results[sides[0][0]][0]['defined']:,} defined), "
          f"64 paths; best of {args.repeat}\n")
    print("| code | wall s (best) | CPU s (best) | load at the runs |")
    print("|---|---:|---:|---|")
    for name, runs in results.items():
        loads = ", ".join(f"{x['load']:.1f}" for x in runs)
        print(f"| {name} | {min(x['wall_s'] for x in runs):.1f} | {min(x['cpu_s'] for x in runs):.1f} | {loads} |")
    print(f"\nprobabilities identical bit for bit across every run: {identical}")
    print(json.dumps({"results": results, "identical": identical}))
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
