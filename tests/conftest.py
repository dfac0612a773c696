"""Shared fixtures for the whole team: one small simulated book per test session.

``sim_tables`` is the :class:`churnml.data.simulator.SimulatedBook` (``.tables`` in the data
contract, ``.truth`` the hidden truth); ``sim_dir`` is the same book written with
``write_book`` (``<table>.parquet`` and ``_truth/``) to a session temporary folder.
"""

from __future__ import annotations

import pytest

SIM_ACCOUNTS = 300
SIM_MONTHS = 18
SIM_SEED = 7


@pytest.fixture(scope="session")
def sim_tables():
    from churnml.data.simulator import simulate

    return simulate(n_accounts=SIM_ACCOUNTS, months=SIM_MONTHS, seed=SIM_SEED)


@pytest.fixture(scope="session")
def sim_dir(sim_tables, tmp_path_factory):
    from churnml.data.simulator import write_book

    out = tmp_path_factory.mktemp("sim_book")
    write_book(sim_tables, out)
    return out
