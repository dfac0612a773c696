"""Helpers shared by the benchmark scripts (run as ``python benchmarks/<name>.py``, so this
folder is on ``sys.path``): stderr logging, a wall-time + peak-RSS meter, and a cache of
simulated books so a 50,000-account book is simulated once per (accounts, months, seed) and
simulator version."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Measure:
    """``with Measure() as m: ...``: ``m.seconds`` (wall), ``m.peak`` (peak process RSS, sampled
    every 20 ms) and ``m.growth`` (peak minus the RSS at entry), in bytes."""

    def __enter__(self):
        import psutil

        self._proc = psutil.Process()
        self.rss_before = self._proc.memory_info().rss
        self.peak = self.rss_before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.start = time.perf_counter()
        return self

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)
        self.growth = self.peak - self.rss_before


def simulator_fingerprint() -> str:
    """A short hash of the simulator's source files: a cached book made by another version of
    the simulator is a different book (a stale cache once hid new event types)."""
    import hashlib

    import churnml.data.simulator as simulator

    folder = Path(simulator.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*sim*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:8]


def cached_book(cache: Path, accounts: int, months: int, seed: int) -> Path:
    """The simulated book folder (with its ``_truth``), simulated and written once per
    (accounts, months, seed, simulator version)."""
    folder = cache / f"book-{accounts}x{months}m-seed{seed}-sim{simulator_fingerprint()}"
    if ((folder / "accounts.parquet").exists() and (folder / "usage_events.parquet").exists()
            and (folder / "_truth").is_dir()):
        return folder
    from churnml.data.simulator import simulate, write_book

    log(f"simulating {accounts:,} accounts over {months} months into {folder} (cached)")
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    write_book(simulate(n_accounts=accounts, months=months, seed=seed), folder)
    log(f"  simulated in {time.perf_counter() - t0:.1f} s")
    return folder
