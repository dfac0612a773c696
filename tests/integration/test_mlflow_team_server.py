"""A team MLflow server on PostgreSQL: train, promote, score and serve against it.

A real ``mlflow server`` (its own process on 127.0.0.1) keeps runs and the model registry in a
throw-away PostgreSQL cluster (the session fixture ``postgres``, tests/support/postgres.py) and
proxies artifacts to ``--artifacts-destination`` (clients upload and download through the
server over HTTP and never need that folder). Every churnml command is a separate process with
``MLFLOW_TRACKING_URI=http://127.0.0.1:<port>`` and a ``CHURNML_HOME`` of its own, which must
stay without any MLflow store: the explicit tracking URI wins (docs/operations.md, "A team
MLflow server").

- ``churnml train`` x3 (churn twice, expansion once) registers versions on the server;
- ``churnml promote`` moves the churn champion to the version that is not champion;
- ``churnml score`` scores with exactly that version;
- ``churnml serve`` (a real ``bentoml serve``) loads the champions from the server and
  ``/predict`` gives the weekly job's numbers to 1e-9;
- the database password (given to the server as ``PGPASSWORD``, never in a URL or argv) is in
  no output, no server log and no MLflow param or tag.

Needs the PostgreSQL server binaries (package ``postgresql``) and psycopg (the ``team-server``
extra): a missing one fails with its name, never a skip.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
NO_TELEMETRY = {"BENTOML_DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "1"}
TOLERANCE = 1e-9
# small, fast models: the store under them is what is tested
QUICK = {("lightgbm", "num_boost_round"): 30, ("lightgbm", "early_stopping_rounds"): 10,
         ("evaluation", "bootstrap_resamples"): 10, ("split", "backtest_folds"): 1,
         ("split", "min_positives"): 2, ("observations", "cadence_days"): 14,
         ("refit", "enabled"): False, ("calibration", "method"): "sigmoid"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _quick_config(target: str, folder: Path, seed: int) -> Path:
    data = yaml.safe_load((ROOT / "models" / f"{target}.yaml").read_text())
    for (section, key), value in QUICK.items():
        data[section][key] = value
    data["lightgbm"]["params"]["seed"] = seed
    path = folder / f"{target}-{seed}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _stop(proc: subprocess.Popen) -> str:
    """SIGTERM the process group this test started, SIGKILL after 30 s; its output."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        out = proc.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out = proc.communicate()[0]
    return out.decode(errors="replace") if isinstance(out, bytes) else (out or "")


def _wait_http(url: str, proc: subprocess.Popen, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            pytest.fail(f"{url}: the server exited with code {proc.returncode}\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} not ready after {timeout:.0f} s")


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory):
    """``mlflow server`` on PostgreSQL with proxied artifacts; yields (url, password, log)."""
    try:
        import psycopg  # noqa: F401  the SQLAlchemy dialect postgresql+psycopg
    except ImportError as exc:  # pragma: no cover - fail with the package name, never skip
        pytest.fail(f"the MLflow server on PostgreSQL needs psycopg: pip install "
                    f"'churnml[team-server]' ({exc})")
    folder = tmp_path_factory.mktemp("mlflow_server")
    postgres.create_database("mlflow")
    port = _free_port()
    log = folder / "server.log"
    # the URL carries no password: libpq reads it from PGPASSWORD (or ~/.pgpass), so it is in
    # no command line (`ps`) and no log line
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("PG", "MLFLOW_"))},
           **NO_TELEMETRY,
           "MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg://{postgres.user}@{postgres.host}:"
                                       f"{postgres.port}/mlflow",
           "PGPASSWORD": postgres.password}
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
               str(port), "--workers", "1",
               "--artifacts-destination", (folder / "artifacts").as_uri()]
    with open(log, "wb") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True, cwd=folder)
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", server, timeout=120, log=log)
        yield f"http://127.0.0.1:{port}", postgres.password, log, folder / "artifacts"
    finally:
        _stop(server)


def _churnml(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300):
    proc = subprocess.run([sys.executable, "-m", "churnml.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def test_train_promote_score_serve_against_a_team_server(mlflow_server, postgres, sim_dir,
                                                         tmp_path):
    from churnml.data.io import load_book
    from churnml.features.build import build_features
    from churnml.features.labels import latest_scoring_date

    url, password, server_log, artifacts = mlflow_server
    home = tmp_path / "home"  # must stay free of any MLflow store
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PG")}, **NO_TELEMETRY,
           "MLFLOW_TRACKING_URI": url, "CHURNML_HOME": str(home), "COLUMNS": "200",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                       os.environ.get("PYTHONPATH")]))}
    env.pop("CHURNML_API_KEY", None)
    outputs = []

    def run(*args: str) -> str:
        code, output = _churnml(list(args), env, cwd=tmp_path)
        outputs.append(output)
        assert code == 0, f"churnml {' '.join(args)} exited {code}:\n{output[-3000:]}"
        return output

    for target, seed in (("churn", 1), ("churn", 2), ("expansion", 1)):
        run("train", "--data", str(sim_dir), "--target", target, "--no-plots",
            "--config", str(_quick_config(target, tmp_path, seed)))

    # the registry lives in PostgreSQL, the artifacts behind the server's proxy
    names = postgres.psql("SELECT name FROM registered_models ORDER BY name", dbname="mlflow")
    assert names.split() == ["churnml-churn", "churnml-expansion"]
    versions = postgres.psql("SELECT version FROM model_versions WHERE name = 'churnml-churn' "
                             "ORDER BY version", dbname="mlflow")
    assert versions.split() == ["1", "2"]
    assert list(artifacts.rglob("MLmodel")), "no model artifacts behind the server"

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=url, registry_uri=url)
    champion = client.get_model_version_by_alias("churnml-churn", "champion").version
    other = "1" if champion == "2" else "2"
    run("promote", "--target", "churn", "--version", other)
    assert client.get_model_version_by_alias("churnml-churn", "champion").version == other

    book, _ = load_book(sim_dir)
    as_of = latest_scoring_date(book)
    out = tmp_path / "scores"
    run("score", "--data", str(sim_dir), "--as-of", f"{as_of:%Y-%m-%d}", "--out", str(out))
    scores = pd.read_parquet(out / f"as_of={as_of:%Y-%m-%d}" / "scores.parquet")
    assert scores["churn_model_version"].eq(other).all()
    assert scores["expansion_model_version"].eq("1").all()
    weekly = client.search_runs([client.get_experiment_by_name("churnml-weekly").experiment_id])
    assert len(weekly) == 1 and weekly[0].data.params["as_of"] == f"{as_of:%Y-%m-%d}"

    # churnml serve: a real bentoml serve, models loaded from the team server
    features = build_features(book, [as_of])
    features = features[features["account_id"].isin(scores["account_id"].head(3))]
    records = [{k: (v.isoformat()[:10] if isinstance(v, pd.Timestamp)
                    else v.item() if hasattr(v, "item") else v) for k, v in r.items()}
               for r in features.astype(object).where(features.notna(), None)
               .to_dict("records")]  # as a caller sends them: exact floats, missing as null
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "churnml.cli", "serve", "--host",
                               "127.0.0.1", "--port", str(port), "--workers", "1"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True, cwd=tmp_path)
    try:
        _wait_http(f"http://127.0.0.1:{port}/readyz", server, timeout=120)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict", data=json.dumps({"accounts": records}).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            rows = json.loads(response.read())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metadata", timeout=30) as r:
            metadata = json.loads(r.read())
    finally:
        outputs.append(_stop(server))
    assert metadata["models"]["churn"]["version"] == other
    want = scores.set_index("account_id")
    assert len(rows) == 3
    for row in rows:
        assert row["churn_model_version"] == other
        for column in ("churn_probability", "expansion_probability"):
            assert abs(row[column] - want.loc[row["account_id"], column]) <= TOLERANCE, column

    # the explicit MLFLOW_TRACKING_URI won: nothing of MLflow under CHURNML_HOME
    assert not list(home.rglob("mlflow.db")) and not list(home.rglob("mlartifacts"))
    # the database password is never logged nor recorded
    assert password not in "\n".join(outputs)
    assert password not in server_log.read_text(errors="replace")
    for experiment in client.search_experiments():
        for r in client.search_runs([experiment.experiment_id]):
            assert password not in json.dumps([r.data.params, r.data.tags])
