"""Benchmark: simulate a book and write it; prints wall time, peak memory, rows per table.

    .venv/bin/python benchmarks/simulator.py --accounts 50000 [--months 24] [--out DIR]

The issue's bar: 50,000 accounts over 24 months in under 3 minutes, under 6 GB.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--accounts", type=int, default=50_000)
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=None, help="folder to write to (default: a temp folder)")
    args = ap.parse_args(argv)
    from churnml.data.simulator import monthly_rates, simulate, write_book

    t0 = time.perf_counter()
    sim = simulate(n_accounts=args.accounts, months=args.months, seed=args.seed)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        counts = write_book(sim, args.out or tmp)
    t2 = time.perf_counter()
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    rates = monthly_rates(sim.tables["mrr_changes"], start=sim.meta["start"]).mean(numeric_only=True)
    print(f"accounts={args.accounts} months={args.months} simulate={t1 - t0:.1f}s "
          f"write={t2 - t1:.1f}s total={t2 - t0:.1f}s peak_rss={peak_gb:.2f}GB")
    for name, n in counts.items():
        print(f"  {name:<14} {n:>12,}")
    print(f"  truth state_weekly rows {len(sim.truth['state_weekly']):,}")
    print(f"monthly logo churn {rates['churn_rate']:.4f}  expansion {rates['expansion_rate']:.4f}"
          f"  contraction {rates['contraction_rate']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
