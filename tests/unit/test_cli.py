"""The command line frame: every command is registered, has --help, and exit codes follow DESIGN.md."""

from __future__ import annotations

import subprocess
import sys

import pytest

from churnml import cli

DESIGN_COMMANDS = [
    "simulate", "validate", "features", "health", "train", "promote", "score",
    "calibrate-health", "monitor", "effects", "serve", "demo", "ui",
]


def test_every_command_of_the_design_is_registered_in_order():
    assert [name for name, _ in cli.COMMANDS] == DESIGN_COMMANDS


@pytest.mark.parametrize("command", DESIGN_COMMANDS)
def test_every_command_has_help(command, capsys):
    assert cli.main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage" in out and command in out


def test_usage_errors_exit_2(capsys):
    assert cli.main(["no-such-command"]) == 2
    assert cli.main(["validate"]) == 2  # --data is required
    assert "--data" in capsys.readouterr().err


def test_churnml_errors_are_messages_with_exit_2_not_tracebacks(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert cli.main(["validate", "--data", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err


def test_bad_date_is_a_usage_error(tmp_path, capsys):
    code = cli.main(["features", "--data", str(tmp_path), "--as-of", "16/11/2026",
                     "--out", str(tmp_path / "f.parquet")])
    assert code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_help_does_not_import_heavy_libraries():
    """`churnml --help` must stay fast: MLflow, BentoML, LightGBM and Spark load only when used."""
    code = (
        "import sys; from churnml.cli import main; main(['--help']); "
        "heavy = [m for m in ('mlflow', 'bentoml', 'lightgbm', 'pyspark', 'shap') if m in sys.modules]; "
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in out.stdout, out.stdout[-500:] + out.stderr[-2000:]
