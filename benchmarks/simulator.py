"""Benchmark: simulate a book and write it; prints wall time, peak memory, rows per table.

    .venv/bin/python benchmarks/simulator.py --accounts 50000 [--months 24] [--out DIR]
    .venv/bin/python benchmarks/simulator.py --accounts 2000 --cs-team

The issue's bar: 50,000 accounts over 24 months in under 3 minutes, under 6 GB.

``--cs-team``: the same book is simulated twice in the same run, without the CS team (the
reference) and with it (``simulate(cs_team=...)``, the defaults of ``churnml simulate
--cs-team``), and the extra time of the team is printed (simulation only, no writing).
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
    ap.add_argument("--cs-team", action="store_true",
                    help="also simulate with the CS team and print its extra time")
    args = ap.parse_args(argv)
    from churnml.data.simulator import monthly_rates, simulate, write_book

    if args.cs_team:
        return _cs_team(args)

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


def _cs_team(args) -> int:
    import os

    from churnml.data.simulator import CsTeam, simulate
    from churnml.scoring.cs_team import CsTeamPolicy

    load = os.getloadavg()
    t0 = time.perf_counter()
    simulate(n_accounts=args.accounts, months=args.months, seed=args.seed)
    t1 = time.perf_counter()
    team = CsTeam(CsTeamPolicy(scale=args.accounts / 2000))
    sim = simulate(n_accounts=args.accounts, months=args.months, seed=args.seed, cs_team=team)
    t2 = time.perf_counter()
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    q = sim.truth["cs_queue"]
    weeks = q["week_start"].nunique()
    print(f"accounts={args.accounts} months={args.months} load_at_start={load[0]:.1f} "
          f"load_at_end={os.getloadavg()[0]:.1f}")
    print(f"  without CS team (reference) {t1 - t0:7.1f}s")
    print(f"  with CS team                {t2 - t1:7.1f}s  extra {t2 - t1 - (t1 - t0):.1f}s "
          f"({(t2 - t1 - (t1 - t0)) / max(weeks, 1):.2f}s per worked week, {weeks} weeks)")
    print(f"  peak_rss={peak_gb:.2f}GB  candidates/week={len(q) / max(weeks, 1):,.0f}  "
          f"actions={len(sim.tables['cs_actions']):,}  capacity {sim.meta['cs_capacity']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
