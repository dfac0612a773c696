"""How many service workers ``churnml serve`` starts by default (churnml.config)."""

from __future__ import annotations

import os

import pytest

from churnml import config
from churnml.errors import ConfigError


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "max 100000\n"}, None),                       # v2, no limit
    ({"cpu.max": "200000 100000\n"}, 2.0),                     # v2, 2 CPUs
    ({"cpu.max": "150000 100000\n"}, 1.5),                     # v2, 1.5 CPUs
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1, none
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3.0),
    ({"cpu.max": "garbage\n"}, None),                           # unreadable: no limit assumed
    ({}, None),                                                 # no cgroup files at all
])
def test_cgroup_quota_is_read_from_v2_and_v1_files(tmp_path, files, expected):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert config._cgroup_cpu_quota(tmp_path) == expected


def test_usable_cpus_is_the_affinity_lowered_to_the_quota_rounded_up(tmp_path):
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU -> 1
    assert config.usable_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert config.usable_cpus(tmp_path) == _affinity()
    (tmp_path / "cpu.max").write_text(f"{(_affinity() + 5) * 100000} 100000\n")
    assert config.usable_cpus(tmp_path) == _affinity()  # a quota above the cores changes nothing


def test_serve_workers_default_setting_and_bad_values(monkeypatch):
    monkeypatch.delenv("CHURNML_SERVE_WORKERS", raising=False)
    monkeypatch.setattr(config, "usable_cpus", lambda: 64)
    assert config.serve_workers() == config.MAX_DEFAULT_WORKERS  # capped
    monkeypatch.setattr(config, "usable_cpus", lambda: 2)
    assert config.serve_workers() == 2
    monkeypatch.setenv("CHURNML_SERVE_WORKERS", "3")
    assert config.serve_workers() == 3
    for bad in ("two", "0", "-1"):
        monkeypatch.setenv("CHURNML_SERVE_WORKERS", bad)
        with pytest.raises(ConfigError, match="CHURNML_SERVE_WORKERS"):
            config.serve_workers()
