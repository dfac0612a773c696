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
    (accounts, months, seed, simulator version).

    A missing book is simulated in a child process: the simulator's memory (5 GiB at 50,000
    accounts) would otherwise stay held by the benchmark's own process, and its peak RSS and
    times would measure the simulation too (a session-9 training run: 9.0 GiB and 543 s on a
    cache miss against 7.74 GiB and 491 s on the cached book)."""
    import subprocess

    folder = cache / f"book-{accounts}x{months}m-seed{seed}-sim{simulator_fingerprint()}"
    if _complete(folder):
        return folder
    log(f"simulating {accounts:,} accounts over {months} months into {folder} (cached; in a "
        "child process)")
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    code = ("import sys; from churnml.data.simulator import simulate, write_book; "
            "write_book(simulate(n_accounts=int(sys.argv[1]), months=int(sys.argv[2]), "
            "seed=int(sys.argv[3])), sys.argv[4])")
    subprocess.run([sys.executable, "-c", code, str(accounts), str(months), str(seed),
                    str(folder)], check=True)
    if not _complete(folder):
        raise RuntimeError(f"the simulation wrote an incomplete book: {folder}")
    log(f"  simulated in {time.perf_counter() - t0:.1f} s")
    return folder


def _complete(folder: Path) -> bool:
    return ((folder / "accounts.parquet").exists() and (folder / "usage_events.parquet").exists()
            and (folder / "_truth").is_dir())


def book_arguments(parser, accounts: int) -> None:
    """The arguments of a benchmark that scores a cached simulated book with champions trained
    on a smaller one: ``--accounts`` (default ``accounts``), ``--months``, ``--seed``,
    ``--train-accounts``, ``--chunk-size`` and ``--cache``."""
    import argparse
    import tempfile

    assert isinstance(parser, argparse.ArgumentParser)
    parser.add_argument("--accounts", type=int, default=accounts)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--train-accounts", type=int, default=3_000)
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "churnml-bench")


def ensure_champions(home: Path, cache: Path, accounts: int, months: int, seed: int,
                     outcomes=None, **overrides) -> None:
    """A champion per outcome of ``outcomes`` (default: every outcome of
    ``churnml.outcomes.OUTCOMES``) in ``home``'s own registry (``MLFLOW_TRACKING_URI`` is
    dropped), trained once on the cached ``accounts`` book of seed ``seed + 1`` with the default
    configuration and ``overrides`` (e.g. fewer bootstrap resamples: the same trees, a faster
    report). An outcome that already has a champion there is skipped."""
    import os

    os.environ["CHURNML_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from churnml.models import registry
    from churnml.outcomes import OUTCOMES

    names = [o.name for o in OUTCOMES] if outcomes is None else list(outcomes)
    missing = [name for name in names if registry.champion_version(name) is None]
    if not missing:
        return
    from churnml.models.config import load_config
    from churnml.models.train import train_target

    book = cached_book(cache, accounts, months, seed + 1)
    for target in missing:
        log(f"training the {target} champion on {accounts:,} accounts (once, kept in {home})")
        t0 = time.perf_counter()
        config = load_config(target).with_overrides(**overrides) if overrides else None
        registry.log_training(train_target(book, target, config), plots=False)
        log(f"  trained in {time.perf_counter() - t0:.1f} s")


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages, rounded (the machine is shared: say how busy)."""
    import os

    one, five, fifteen = (round(x, 2) for x in os.getloadavg())
    return one, five, fifteen


def print_results(lines: list[str], figures: dict) -> None:
    """The markdown ``lines`` for benchmarks/README.md with the load average at start and end
    (``figures["load_average"]``, ``figures["load_average_end"]``) last, then one JSON line with
    every figure."""
    import json

    lines = [*lines, f"load average (1/5/15 min) at start {figures['load_average']}, "
                     f"at end {figures['load_average_end']}"]
    print("\n".join(lines))
    print(json.dumps(figures))
