"""Security: the API key is never written anywhere (files, logs, reprs, outputs), names resolve
only inside library folders, YAML cannot run code, prompt and answer text are stored only on
opt-in, and the simulator server listens on loopback only."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import claudeforce_nb as cf
from claudeforce_nb import client as cf_client
from claudeforce_nb import errors
from claudeforce_nb.core.orchestrator import arun_agent, run_agent
from claudeforce_nb.definitions import library
from claudeforce_nb.simulator import Simulator
from claudeforce_nb.simulator.server import SimulatorServer

CODE = "def mean(xs):\n    return sum(xs) / len(xs)\n"


class KeyRecordingSimulator(Simulator):
    """The simulator, remembering which API keys reached it (so a test can prove the real key path
    was used)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.keys_seen: set[str] = set()

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        auth = headers.get("authorization", "")
        self.keys_seen.add(headers.get("x-api-key") or auth.removeprefix("Bearer ").strip())
        return super().handle(method, path, headers, body)


@pytest.fixture
def marker_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = f"sk-ant-MARKER-{uuid.uuid4()}"
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    return key


@pytest.fixture
def loopback_server() -> Iterator[tuple[SimulatorServer, KeyRecordingSimulator]]:
    sim = KeyRecordingSimulator(speed=0, seed=5)
    server = SimulatorServer(sim).start()
    try:
        yield server, sim
    finally:
        server.shutdown()
        server.server_close()
        cf_client.reset_clients()


def _exercise(home: Path) -> list[str]:
    """Calls of every kind; returns the text a notebook would show for them (reprs, HTML)."""
    shown: list[Any] = []
    r1 = run_agent("python-expert", "Write a function that reverses a string.")
    r2 = run_agent("python-expert", "Write a function that reverses a string.")  # cache hit
    r3 = run_agent("code-reviewer", f"Review:\n{CODE}", stream=True, on_text=lambda _t: None)
    r4 = asyncio.run(arun_agent("test-engineer", f"Test:\n{CODE}", model="haiku"))
    shown += [r1, r2, r3, r4]
    wf = pytest.importorskip("claudeforce_nb.core.workflow")
    shown.append(wf.run_workflow("code-quality", {"code": CODE}))
    items = [f"Explain list item {i}." for i in range(6)]
    try:
        from claudeforce_nb.core.batch import map_agent
    except ImportError:
        async def gather() -> list[cf.AgentResult]:
            return await asyncio.gather(*(arun_agent("python-expert", t) for t in items))

        shown += asyncio.run(gather())
    else:
        shown += map_agent("python-expert", items, concurrency=4)
    shown += [cf.status(), cf.get_settings()]
    texts = []
    for obj in shown:
        texts += [repr(obj), str(obj)]
        if hasattr(obj, "_repr_html_"):
            texts.append(obj._repr_html_())
    texts.append(cf.metrics().to_json(date_format="iso"))
    return texts


def _assert_nowhere(key: str, home: Path, texts: list[str], records: list[logging.LogRecord]) -> None:
    needle = key.split("MARKER-", 1)[1]  # the unique part, so a partial leak is caught too
    files = [p for p in home.rglob("*") if p.is_file()]
    assert files, "nothing was written: the scan would prove nothing"
    for path in files:
        assert needle.encode() not in path.read_bytes(), f"the API key was written to {path}"
    for text in texts:
        assert needle not in text
    for record in records:
        assert needle not in record.getMessage()
        assert needle not in json.dumps(record.__dict__, default=str), f"key in log record {record.name}"


def test_marker_key_is_written_nowhere_with_simulated_backend(marker_key: str, home: Path, sim: Simulator,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("CLAUDEFORCE_BACKEND", "simulated")
    caplog.set_level(logging.DEBUG)
    texts = _exercise(home)
    assert len(sim.history) >= 10
    assert cf.metrics()["backend"].astype(str).unique().tolist() == ["simulated"]
    _assert_nowhere(marker_key, home, texts, caplog.records)


def test_marker_key_is_written_nowhere_with_anthropic_backend(marker_key: str, home: Path,
                                                              loopback_server: tuple[SimulatorServer,
                                                                                     KeyRecordingSimulator],
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    server, sim = loopback_server
    monkeypatch.setenv("CLAUDEFORCE_BACKEND", "anthropic")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    cf_client.reset_clients()
    caplog.set_level(logging.DEBUG)
    texts = _exercise(home)
    assert sim.keys_seen == {marker_key}  # the real key path was exercised, over HTTP
    assert cf.metrics()["backend"].astype(str).unique().tolist() == ["anthropic"]
    _assert_nowhere(marker_key, home, texts, caplog.records)


def test_magic_outputs_and_widget_state_never_show_the_key(marker_key: str, home: Path, sim: Simulator,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("claudeforce_nb.notebook.magics")
    from IPython.testing.globalipapp import start_ipython
    from IPython.utils.capture import capture_output
    from ipywidgets.widgets.widget import _instances

    monkeypatch.setenv("CLAUDEFORCE_BACKEND", "simulated")
    shell = start_ipython() or __import__("IPython").get_ipython()
    shell.run_line_magic("load_ext", "claudeforce_nb")
    shown: list[str] = []
    for widgets in (False, True):  # plain outputs, then the widget views
        shell.run_line_magic("config", f"AgentMagics.widgets = {widgets}")
        with capture_output() as captured:
            shell.run_cell_magic("agent", "python-expert -o answer", "Write a function that adds two numbers.")
            shell.run_line_magic("workflow", 'code-quality code="x = 1" -o flow')
            shell.run_line_magic("agents", "status")
        shown += [captured.stdout, captured.stderr, repr(shell.user_ns["answer"]), repr(shell.user_ns["flow"])]
        for output in captured.outputs:
            shown += [json.dumps(output.data, default=str), json.dumps(output.metadata, default=str)]
    states = [json.dumps(w.get_state(), default=str) for w in list(_instances.values())]
    assert states, "the widget views were not exercised"
    assert len(sim.history) >= 2
    _assert_nowhere(marker_key, home, shown + states, [])


# --------------------------------------------------------------------------------------------
# Names resolve only inside library folders


@pytest.mark.parametrize("name", ["../etc/passwd", "/etc/passwd", "agents/python-expert", "Python-Expert",
                                  "python_expert", "python-expert.md", "..", "", "a b", "python-expert\n"])
def test_names_outside_a_z0_9_hyphen_are_refused(name: str, sim: Simulator) -> None:
    with pytest.raises(errors.InvalidNameError, match="use lowercase letters, digits and hyphens"):
        run_agent(name, "hello")
    with pytest.raises(errors.InvalidNameError):
        library().skill(name)
    with pytest.raises(errors.InvalidNameError):
        library().workflow(name)
    assert sim.request_count == 0


def test_skill_names_passed_to_run_agent_are_checked(sim: Simulator) -> None:
    with pytest.raises(errors.InvalidNameError):
        run_agent("python-expert", "hello", skills=["../../etc/passwd"])
    assert sim.request_count == 0


AGENT_FILE = """---
name: {name}
description: An agent that lives somewhere else.
domains: [python]
skills: []
---
You answer questions.
"""


def test_symlink_out_of_the_agents_folder_is_not_followed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sneaky.md").write_text(AGENT_FILE.format(name="sneaky"))
    agents = Path("agents")
    agents.mkdir()
    (agents / "sneaky.md").symlink_to(outside / "sneaky.md")
    (agents / "local.md").write_text(AGENT_FILE.format(name="local"))
    (agents / "alias.md").symlink_to(Path("local.md"))  # a link that stays inside is fine
    (outside / "alias.md").write_text("unused")
    with caplog.at_level(logging.WARNING, logger="claudeforce_nb"):
        names = library().agent_names()
    assert "local" in names
    assert "sneaky" not in names
    with pytest.raises(errors.UnknownNameError):
        library().agent("sneaky")
    assert any("symlink to a file outside" in r.getMessage() for r in caplog.records)


def test_yaml_tags_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    Path("agents").mkdir()
    Path("workflows").mkdir()
    Path("agents/tagged.md").write_text(
        "---\nname: tagged\n"
        f'description: !!python/object/apply:os.system ["touch {marker}"]\n'
        "domains: [python]\nskills: []\n---\nbody\n")
    Path("workflows/tagged-flow.yaml").write_text(
        f'name: tagged-flow\ndescription: x\ninputs: !!python/object/apply:os.system ["touch {marker}"]\n'
        "steps:\n  - id: a\n    agent: python-expert\n    task: hi\n")
    lib = library()
    with pytest.raises(errors.DefinitionError, match="YAML tags are not allowed"):
        lib.agent("tagged")
    with pytest.raises(errors.DefinitionError, match="YAML tags are not allowed"):
        lib.workflow("tagged-flow")
    assert not marker.exists()
    assert "python-expert" in lib.agent_names()  # one bad file leaves the rest usable


# --------------------------------------------------------------------------------------------
# Prompt and answer text only on opt-in


PROMPT_MARK = "zebra-quasar-7781"


def _metrics_rows(home: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (home / "metrics" / "executions.jsonl").read_text().splitlines()]


def test_prompt_and_answer_text_not_stored_by_default(home: Path, sim: Simulator,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="claudeforce_nb")
    sim.enqueue(text="ANSWER-okapi-4412")
    r = run_agent("python-expert", f"Explain {PROMPT_MARK} please.", cache=False)
    assert r.text == "ANSWER-okapi-4412"
    row = _metrics_rows(home)[0]
    assert "task" not in row and "response" not in row
    for path in (p for p in home.rglob("*") if p.is_file()):
        data = path.read_bytes()
        assert PROMPT_MARK.encode() not in data and b"okapi-4412" not in data, path
    ours = [r for r in caplog.records if r.name.startswith("claudeforce_nb")]
    assert ours, "the orchestrator logs each call"
    for record in ours:
        flat = record.getMessage() + json.dumps(record.__dict__, default=str)
        assert PROMPT_MARK not in flat and "okapi-4412" not in flat


def test_prompt_and_answer_text_stored_when_opted_in(home: Path, sim: Simulator) -> None:
    cf.configure(record_text=True)
    sim.enqueue(text="ANSWER-okapi-4412")
    run_agent("python-expert", f"Explain {PROMPT_MARK} please.", cache=False)
    row = _metrics_rows(home)[0]
    assert row["task"] == f"Explain {PROMPT_MARK} please."
    assert row["response"] == "ANSWER-okapi-4412"
    df = cf.metrics()
    assert df["task"].iloc[0] == f"Explain {PROMPT_MARK} please."


def test_response_cache_keeps_answers_but_not_prompts(home: Path, sim: Simulator) -> None:
    sim.enqueue(text="ANSWER-okapi-4412")  # the simulated answer would otherwise quote the task
    run_agent("python-expert", f"Explain {PROMPT_MARK} please.")
    assert run_agent("python-expert", f"Explain {PROMPT_MARK} please.").cached
    stored = b"".join(p.read_bytes() for p in (home / "cache").rglob("*") if p.is_file())
    assert b"ANSWER-okapi-4412" in stored  # the scan looks where the answer is
    assert PROMPT_MARK.encode() not in stored


# --------------------------------------------------------------------------------------------
# The simulator server


def test_simulator_server_listens_on_loopback_only() -> None:
    server = SimulatorServer(Simulator(speed=0))
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        assert server.url == f"http://127.0.0.1:{port}"
    finally:
        server.server_close()


def test_files_written_are_private_to_the_user(home: Path, sim: Simulator) -> None:
    run_agent("python-expert", "Explain dicts.")
    log_file = home / "metrics" / "executions.jsonl"
    assert os.stat(log_file).st_mode & 0o077 == 0
