"""LightGBM's fit time under OpenMP's wait policies, on synthetic rows (session 5 of
``benchmarks/README.md``, "Training").

60 rounds of the project's LightGBM parameters on 400,000 rows x 60 normal features; prints the
policy, threads, wall and CPU seconds and the 1-minute load. The policy must be set before the
OpenMP runtime loads, so run one process per setting::

    OMP_WAIT_POLICY=ACTIVE  python benchmarks/omp_wait_policy.py 2
    OMP_WAIT_POLICY=PASSIVE python benchmarks/omp_wait_policy.py 2
    python benchmarks/omp_wait_policy.py 1
    python benchmarks/omp_wait_policy.py 2 churnml   # `import churnml` first: its default (passive)
"""

from __future__ import annotations

import os
import sys
import time

if sys.argv[2:] == ["churnml"]:
    import churnml  # noqa: F401  (sets OMP_WAIT_POLICY=PASSIVE unless set)

import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402


def main(threads: int) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400_000, 60))
    y = (rng.random(400_000) < 1 / (1 + np.exp(-X[:, 0]))).astype(float)
    params = dict(objective="binary", learning_rate=0.05, num_leaves=31, max_depth=6,
                  min_child_samples=50, feature_fraction=0.8, bagging_fraction=0.8, bagging_freq=1,
                  seed=7, deterministic=True, num_threads=threads, verbose=-1)
    data = lgb.Dataset(X, y, params=params).construct()
    wall, cpu = time.perf_counter(), time.process_time()
    lgb.train(params, data, num_boost_round=60)
    print(os.environ.get("OMP_WAIT_POLICY", "default"), threads,
          f"wall {time.perf_counter() - wall:.1f}s cpu {time.process_time() - cpu:.1f}s",
          f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
