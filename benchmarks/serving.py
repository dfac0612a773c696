"""Benchmark of the prediction service over real HTTP, next to its in-process floor.

Steps (all bounded in count and time; the server binds to 127.0.0.1 only):

1. champion models: ``--home DIR`` (a CHURNML_HOME with champions), or else a book of
   ``--accounts`` simulated accounts trained with the default model configs into a temporary
   home (takes minutes);
2. in-process floor: the service's predict function (pydantic validation + ``score_frame``)
   called directly: ``--sequential`` single-account calls (p50, p99), and for
   ``--floor-seconds`` batches of ``--clients`` accounts (what the batcher can form when that
   many clients wait) and single accounts (throughput, accounts/s);
3. ``churnml serve`` (the default: every outcome's champion, reasons, batching) on a free port;
4. sequential: ``--sequential`` POST /predict with one account each over one keep-alive
   connection (after a warm-up), latency p50 / p99;
5. concurrency: ``--clients`` threads, one keep-alive connection each, one account per request,
   for ``--duration`` seconds: throughput in accounts/s, p50 / p99, errors.

Usage: ``python benchmarks/serving.py --home .churnml`` or ``--accounts 600``. Prints a markdown
table (for benchmarks/README.md) and a JSON line with every figure.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NO_TELEMETRY = {"BENTOML_DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "1"}
os.environ.update(NO_TELEMETRY)
os.environ.setdefault("OMP_NUM_THREADS", "1")  # as the service runs (serving/service.py)


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    a = np.asarray(samples_ms, dtype=float)
    if not len(a):
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "n": 0}
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "n": int(len(a))}


def train_champions(home: Path, accounts: int, months: int, seed: int) -> Path:
    """Simulate a book and train a champion for every outcome of ``churnml.outcomes.OUTCOMES``
    with the default configs into ``home``."""
    from churnml.data.io import validate_frames
    from churnml.data.simulator import simulate, write_book
    from churnml.models.registry import log_training
    from churnml.models.train import train_target
    from churnml.outcomes import OUTCOMES

    sim = simulate(n_accounts=accounts, months=months, seed=seed)
    book_dir = home / "book"
    write_book(sim, book_dir)
    book, _ = validate_frames(sim.tables)
    for target in (o.name for o in OUTCOMES):
        print(f"training {target} on {accounts} accounts ...", file=sys.stderr, flush=True)
        log_training(train_target(book, target), plots=False)
    return book_dir


def feature_records(predictor, book, limit: int) -> list[dict]:
    """Feature records of up to ``limit`` active accounts at the book's last week, as JSON."""
    import pandas as pd

    from churnml.features.build import build_features

    as_of = (book.data_end - pd.Timedelta(days=7)).normalize()
    features = build_features(book, [as_of], catalog=predictor.catalog).head(limit)
    rows = features.astype(object).where(features.notna(), None).to_dict("records")
    records = []
    for row in rows:  # exact floats (json repr), ISO dates, missing values null
        record = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        record["as_of"] = row["as_of"].strftime("%Y-%m-%d")
        records.append(record)
    return json.loads(json.dumps(records))


def in_process_floor(predictor, records, sequential: int, batch: int, seconds: float) -> dict:
    """The same predict function the endpoint runs (validation + score_frame), no HTTP."""
    model = predictor.record_model

    def predict(chunk):
        return predictor.predict_records([model.model_validate(r) for r in chunk])

    for r in records[:5]:
        predict([r])
    latencies = []
    for i in range(sequential):
        start = time.perf_counter()
        predict([records[i % len(records)]])
        latencies.append((time.perf_counter() - start) * 1000)
    out = {"sequential": percentiles(latencies)}
    out["single_accounts_per_s"] = 1000.0 / float(np.mean(latencies))
    done, start, i = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        chunk = [records[(i + k) % len(records)] for k in range(batch)]
        predict(chunk)
        done += batch
        i += batch
    out[f"batch{batch}_accounts_per_s"] = done / (time.perf_counter() - start)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"server on port {port} not ready after {timeout} s")


def server_metadata(port: int) -> dict:
    """The server's ``GET /metadata``: the outcomes it serves (and those without a model)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metadata")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        return {"status": response.status}
    meta = json.loads(body)
    return {"models": {k: v.get("version") for k, v in meta.get("models", {}).items()},
            "outcomes_without_model": meta.get("outcomes_without_model", [])}


def post_one(conn: http.client.HTTPConnection, body: bytes) -> int:
    conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    return response.status


def http_sequential(port: int, bodies: list[bytes], calls: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for body in bodies[:20]:  # warm-up
        post_one(conn, body)
    latencies, errors = [], 0
    for i in range(calls):
        start = time.perf_counter()
        status = post_one(conn, bodies[i % len(bodies)])
        latencies.append((time.perf_counter() - start) * 1000)
        errors += status != 200
    conn.close()
    return {**percentiles(latencies), "errors": errors}


def batch_counts(port: int) -> tuple[float, float] | None:
    """(accounts, model calls) of /predict so far, from the service's /metrics
    (``churnml_predict_batch_size`` sum and count, all workers); None without metrics."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        text = response.read().decode()
        conn.close()
    except (OSError, http.client.HTTPException):
        return None
    if response.status != 200:
        return None
    found = {}
    for line in text.splitlines():
        for part in ("sum", "count"):
            if line.startswith(f"churnml_predict_batch_size_{part} "):
                found[part] = float(line.split()[-1])
    return (found["sum"], found["count"]) if len(found) == 2 else None


def http_concurrent(port: int, bodies: list[bytes], clients: int, seconds: float) -> dict:
    deadline = time.perf_counter() + seconds
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    statuses: dict[int, int] = {}

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = k
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                status = post_one(conn, bodies[i % len(bodies)])
            except (OSError, http.client.HTTPException):
                status = -1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            latencies[k].append((time.perf_counter() - start) * 1000)
            errors[k] += status != 200
            if status != 200:
                statuses[status] = statuses.get(status, 0) + 1
            i += clients
        conn.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    elapsed = time.perf_counter() - start
    flat = [x for per in latencies for x in per]
    ok = len(flat) - sum(errors)
    return {**percentiles(flat), "errors": int(sum(errors)), "error_statuses": statuses,
            "requests": len(flat),
            "accounts_per_s": ok / elapsed, "seconds": elapsed}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, help="CHURNML_HOME with champion models")
    parser.add_argument("--book", type=Path, help="data folder for the feature records "
                        "(default: <home>/book, or the simulated book)")
    parser.add_argument("--accounts", type=int, default=600,
                        help="simulated accounts when training (no --home)")
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sequential", type=int, default=500)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--floor-seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=None,
                        help="server workers (default: churnml serve's, one per CPU)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the server, e.g. CHURNML_SERVE_METRICS=0 "
                             "(repeatable; README's settings table)")
    args = parser.parse_args(argv)
    server_env = {}
    for setting in args.server_env:
        name, sep, value = setting.partition("=")
        if not sep or not name:
            parser.error(f"--server-env wants NAME=VALUE, got {setting!r}")
        server_env[name] = value

    load_at_start = os.getloadavg()  # the machine may be shared: say how busy it was
    temp = None
    if args.home is None:
        temp = tempfile.TemporaryDirectory(prefix="churnml-bench-")
        home = Path(temp.name)
        os.environ["CHURNML_HOME"] = str(home)
        book_dir = train_champions(home, args.accounts, args.months, args.seed)
    else:
        home = args.home.resolve()
        os.environ["CHURNML_HOME"] = str(home)
        book_dir = args.book or home / "book"

    from churnml.api.predictor import load_predictor
    from churnml.data.io import load_book

    predictor = load_predictor()
    served = {name: {"version": str(m.version), "trees": int(m.booster.num_trees()),
                     "features": len(m.feature_names)}
              for name, m in predictor.models.items()}
    print(f"champions: {served}", file=sys.stderr, flush=True)
    book, _ = load_book(book_dir)
    records = feature_records(predictor, book, limit=200)
    bodies = [json.dumps({"accounts": [r]}).encode() for r in records]
    # the floor runs in a process holding what the server holds (the models), not the book:
    # its millions of objects would make every garbage collection of the floor slower
    del book
    gc.collect()
    print(f"{len(records)} accounts; in-process floor ...", file=sys.stderr, flush=True)
    floor = in_process_floor(predictor, records, args.sequential, args.clients,
                             args.floor_seconds)

    port = free_port()
    env = {**os.environ, "CHURNML_HOME": str(home)}
    env.pop("CHURNML_API_KEY", None)
    env.update(server_env)
    from churnml.config import serve_workers

    # what the server will start (--workers, else the setting, else one per CPU)
    workers = (args.workers or int(server_env.get("CHURNML_SERVE_WORKERS", 0))
               or serve_workers())
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("churnml")), "serve", "--host", "127.0.0.1",
         "--port", str(port),
         *(["--workers", str(args.workers)] if args.workers else [])],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        ready_s = wait_ready(port, timeout=120)
        served_http = server_metadata(port)
        print(f"server ready in {ready_s:.1f} s, serving {served_http}; sequential ...",
              file=sys.stderr, flush=True)
        sequential = http_sequential(port, bodies, args.sequential)
        print("concurrent ...", file=sys.stderr, flush=True)
        before = batch_counts(port)
        concurrent = http_concurrent(port, bodies, args.clients, args.duration)
        after = batch_counts(port)
        if before and after and after[1] > before[1]:  # accounts per model call, this phase
            concurrent["mean_batch_size"] = (after[0] - before[0]) / (after[1] - before[1])
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the process group started above
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        if temp is not None:
            temp.cleanup()

    batch_key = f"batch{args.clients}_accounts_per_s"
    result = {"floor": floor, "http_sequential": sequential, "http_concurrent": concurrent,
              "server_ready_s": ready_s, "cpus": os.cpu_count(),
              "load_average_start": load_at_start,
              "load_average": os.getloadavg(), "workers": workers,
              "server_env": args.server_env, "models": served, "server_models": served_http}
    goals = {
        "sequential p50 < 5 ms": sequential["p50_ms"] < 5,
        "sequential p99 < 15 ms": sequential["p99_ms"] < 15,
        "concurrent zero errors": concurrent["errors"] == 0,
        "concurrent p99 < 100 ms": concurrent["p99_ms"] < 100,
        "throughput >= half the batched floor":
            concurrent["accounts_per_s"] >= 0.5 * floor[batch_key],
    }
    result["goals"] = goals
    print("| measure | in-process floor | HTTP (`churnml serve`) |")
    print("|---|---|---|")
    print(f"| single account, p50 | {floor['sequential']['p50_ms']:.2f} ms | "
          f"{sequential['p50_ms']:.2f} ms |")
    print(f"| single account, p99 | {floor['sequential']['p99_ms']:.2f} ms | "
          f"{sequential['p99_ms']:.2f} ms |")
    print(f"| {args.clients} clients, throughput | {floor[batch_key]:.0f} accounts/s "
          f"(batches of {args.clients}); {floor['single_accounts_per_s']:.0f} accounts/s "
          f"(one at a time) | {concurrent['accounts_per_s']:.0f} accounts/s |")
    print(f"| {args.clients} clients, p50 / p99 | - | {concurrent['p50_ms']:.1f} / "
          f"{concurrent['p99_ms']:.1f} ms |")
    print(f"| {args.clients} clients, errors | - | {concurrent['errors']} of "
          f"{concurrent['requests']} |")
    print(f"- models: " + ", ".join(f"{k} {v['trees']} trees (v{v['version']})"
                                    for k, v in served.items())
          + (f"; outcomes without a model: {served_http['outcomes_without_model']}"
             if served_http.get("outcomes_without_model") else ""))
    for goal, met in goals.items():
        print(f"- {goal}: {'met' if met else 'NOT met'}")
    if "mean_batch_size" in concurrent:
        print(f"- {workers} worker(s); mean batch under concurrency "
              f"{concurrent['mean_batch_size']:.1f} accounts per model call")
    else:
        print(f"- {workers} worker(s)")
    print(f"- load average (1/5/15 min) at start {', '.join(f'{x:.1f}' for x in load_at_start)}, "
          f"at end {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
