"""``import churnml`` makes OpenMP threads sleep when idle (``OMP_WAIT_POLICY=PASSIVE``), before
any OpenMP runtime loads, and keeps a value the user set (docs/operations.md)."""

from __future__ import annotations

import os
import subprocess
import sys


def _policy_after_import(env: dict) -> str:
    code = ("import os, churnml, lightgbm, sklearn.linear_model; "
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    return out.stdout.strip()


def test_import_sets_a_passive_wait_policy_unless_the_user_set_one():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert _policy_after_import(env) == "PASSIVE"
    assert _policy_after_import({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"


def test_lightgbm_is_not_loaded_before_churnml_sets_the_policy():
    """Nothing churnml imports at package import time loads an OpenMP runtime first."""
    code = "import sys, churnml; print('lightgbm' in sys.modules, 'sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=True)
    assert out.stdout.split() == ["False", "False"]
