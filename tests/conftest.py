"""Shared fixtures: every test runs offline, in its own CLAUDEFORCE_HOME and working directory,
against the simulator through the real anthropic SDK (no patched SDK objects)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from claudeforce_nb import client as cf_client
from claudeforce_nb.config import reset_settings
from claudeforce_nb.core.resilience import reset_breakers
from claudeforce_nb.simulator import Simulator, use_simulator

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A clean world per test: no key, simulator backend, no sleeps, fixed seed, own home."""
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    import os

    for var in list(os.environ):
        if var.startswith("CLAUDEFORCE_"):
            monkeypatch.delenv(var, raising=False)
    home = tmp_path / "cfhome"
    monkeypatch.setenv("CLAUDEFORCE_HOME", str(home))
    monkeypatch.setenv("CLAUDEFORCE_SIM_SPEED", "0")
    monkeypatch.setenv("CLAUDEFORCE_SIM_SEED", "1234")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    reset_settings()
    cf_client.reset_clients()
    reset_breakers()  # a circuit opened by one test's scripted faults must not refuse the next test's calls
    yield home
    reset_settings()
    cf_client.reset_clients()
    logging.getLogger("claudeforce_nb").handlers.clear()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A fresh simulator (no latency, seeded) that tests can script with `sim.enqueue(...)`."""
    simulator = Simulator(speed=0.0, seed=1234)
    with use_simulator(simulator):
        cf_client.reset_clients()
        yield simulator
    cf_client.reset_clients()


@pytest.fixture
def home(isolated: Path) -> Path:
    return isolated
