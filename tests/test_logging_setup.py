"""Logging: structured per-call fields, opt-in output, the key redacted, and the simulator notice
still visible to a user who configured no logging at all."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from claudeforce_nb.core.orchestrator import run_agent
from claudeforce_nb.logging_setup import FIELDS, disable_logging, enable_logging
from claudeforce_nb.simulator import Simulator

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    yield stream
    disable_logging()


def test_each_call_is_logged_with_structured_fields(sim: Simulator, captured: io.StringIO) -> None:
    enable_logging("DEBUG", as_json=True, stream=captured)
    run_agent("python-expert", "Explain generators.")
    records = [json.loads(line) for line in captured.getvalue().splitlines()]
    recorded = [r for r in records if r["message"] == "call recorded"]
    assert len(recorded) == 1
    assert {"agent", "model", "task_hash", "duration_ms", "tokens", "cost", "attempts"} <= set(recorded[0])
    assert recorded[0]["agent"] == "python-expert" and recorded[0]["attempts"] == 1
    assert set(recorded[0]) <= {"timestamp", "level", "logger", "message", *FIELDS}


def test_text_format_shows_fields_as_key_value(sim: Simulator, captured: io.StringIO) -> None:
    enable_logging("INFO", stream=captured)
    sim.enqueue(fault="529", times=3)
    run_agent("python-expert", "Explain generators.", cache=False)
    line = next(x for x in captured.getvalue().splitlines() if "call failed" in x)
    assert "INFO claudeforce_nb: call failed" in line
    assert "agent=python-expert" in line and "error_type=overloaded" in line and "attempts=3" in line


def test_enabling_twice_keeps_one_handler(captured: io.StringIO) -> None:
    enable_logging("INFO", stream=captured)
    enable_logging("WARNING", stream=captured)
    ours = [h for h in logging.getLogger("claudeforce_nb").handlers if isinstance(h, logging.StreamHandler)]
    assert len(ours) == 1
    disable_logging()
    assert logging.getLogger("claudeforce_nb").handlers == []


def test_formatter_redacts_the_api_key(captured: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-MARKER-0123456789")
    enable_logging("INFO", stream=captured)
    logging.getLogger("claudeforce_nb.test").warning("a careless message with %s", "sk-ant-MARKER-0123456789")
    assert "MARKER" not in captured.getvalue()
    assert "<ANTHROPIC_API_KEY redacted>" in captured.getvalue()


def test_simulator_notice_reaches_a_user_who_configured_no_logging(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "CLAUDEFORCE_BACKEND")}
    env.update(PYTHONPATH=str(REPO), CLAUDEFORCE_HOME=str(home), CLAUDEFORCE_SIM_SPEED="0")
    code = "import claudeforce_nb as cf; r = cf.run_agent('python-expert', 'Explain sets.'); print(r.success)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True"
    notices = [line for line in out.stderr.splitlines() if "offline Claude simulator" in line]
    assert len(notices) == 1
    assert "call recorded" not in out.stderr  # debug/info stay quiet by default
