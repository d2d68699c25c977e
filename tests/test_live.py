"""One tiny real call to Claude, only when ANTHROPIC_API_KEY is set (opt-in; costs a fraction of
a cent). The key is read at import time because the autouse fixture hides it from every test."""

from __future__ import annotations

import os

import pytest

from claudeforce_nb.core.orchestrator import run_agent

LIVE_KEY = os.environ.get("ANTHROPIC_API_KEY")

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not LIVE_KEY, reason="set ANTHROPIC_API_KEY to run the live test"),
]


def test_one_tiny_real_call(monkeypatch: pytest.MonkeyPatch) -> None:
    assert LIVE_KEY is not None
    monkeypatch.setenv("ANTHROPIC_API_KEY", LIVE_KEY)
    monkeypatch.setenv("CLAUDEFORCE_BACKEND", "anthropic")
    r = run_agent("python-expert", "Reply with the single word: pong", model="haiku", max_tokens=16, cache=False)
    assert r.success, r.error
    assert r.backend == "anthropic" and r.text.strip()
    assert r.input_tokens > 0 and r.output_tokens > 0
    assert r.cost_usd is not None and r.cost_usd > 0
    assert r.request_id
