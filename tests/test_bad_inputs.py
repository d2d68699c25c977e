"""Every bad input in the README table "When something is wrong" gives exactly the one-line
message the table shows. `…` in a message stands for a part that varies (paths, amounts, names).
The README is checked too, so the table and the code cannot drift apart."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import claudeforce_nb as cf
from claudeforce_nb import errors
from claudeforce_nb.definitions import library, render_template
from claudeforce_nb.simulator import Simulator

REPO = Path(__file__).resolve().parent.parent

MESSAGES = {
    "unknown agent": "Unknown agent 'pyhton-expert'. Did you mean 'python-expert' or 'refactoring-expert'?",
    "unknown skill": "Unknown skill 'pytest-pattern'. Did you mean 'pytest-patterns' or 'prompt-patterns'?",
    "unknown workflow": "Unknown workflow 'code-qualty'. Did you mean 'code-quality'?",
    "typo'd flag": "UsageError: unrecognized arguments: --no-cahce",
    "missing variable": "UsageError: Template variable '{{ sourc }}' is not defined. Did you mean 'source'? "
                        "Available: …",
    "empty cell": "UsageError: The task is empty: write the task in the cell below %%agent python-expert.",
    "invalid model": "Unknown model 'gpt-4'. Known models: claude-haiku-5-5, claude-sonnet-5-5, claude-opus-5-5 "
                     "(or haiku/sonnet/opus); add others with a pricing file.",
    "malformed front matter": "The agent 'broken' could not be loaded: agents/broken.md:1: front matter is not "
                              "closed: add a '---' line after the fields. Fix it; `python -m claudeforce_nb "
                              "validate` lists all problems.",
    "cyclic workflow": "Invalid workflow 'loop': <dict>: step 'a': cycle: a -> b -> a (remove one of these "
                       "dependencies)",
    "budget too small": "estimated $… > budget $0.0001; raise --budget (budget_usd=) or use engine=batches "
                        "(half price).",
    "missing key": "Backend 'anthropic' needs an API key but ANTHROPIC_API_KEY is not set. Set ANTHROPIC_API_KEY, "
                   "or use CLAUDEFORCE_BACKEND=simulated to work offline.",
    "corrupt cache file": "Response cache … was unreadable; moved it to … and started a new one.",
    "corrupt metrics line": "Skipped 1 torn or corrupt line(s) in … (the rest loaded).",
    "circuit open": "claude-sonnet-5-5 failed 5 times in a row; pausing calls for 30 s. Try another model with "
                    "-m haiku or wait.",
}


def matches(template: str, actual: str) -> bool:
    pattern = ".+?".join(re.escape(part) for part in template.split("…"))
    return re.fullmatch(pattern, actual, flags=re.DOTALL) is not None


def assert_message(row: str, actual: str) -> None:
    assert "\n" not in actual.strip(), f"{row}: not one line: {actual!r}"
    assert matches(MESSAGES[row], actual.strip()), f"{row}: got {actual!r}"


@pytest.fixture
def shell(sim: Simulator) -> Iterator[object]:
    """An IPython shell with the extension loaded; the names a test adds are removed after."""
    pytest.importorskip("claudeforce_nb.notebook.magics")
    from IPython.testing.globalipapp import start_ipython

    ip = start_ipython() or __import__("IPython").get_ipython()
    before = set(ip.user_ns)
    ip.run_line_magic("load_ext", "claudeforce_nb")
    yield ip
    ip.run_line_magic("unload_ext", "claudeforce_nb")
    ip.config.pop("AgentMagics", None)
    for name in set(ip.user_ns) - before:
        del ip.user_ns[name]


def cell_error(ip: object, source: str) -> str:
    """The single line a user reads when `source` fails as a notebook cell."""
    from IPython.utils.capture import capture_output

    with capture_output() as cap:
        ip.run_cell(source)  # type: ignore[attr-defined]
    text = (cap.stderr + cap.stdout).strip()
    assert "Traceback" not in text, text
    return text


def test_unknown_agent(sim: Simulator) -> None:
    with pytest.raises(errors.UnknownNameError) as exc:
        cf.run_agent("pyhton-expert", "Write a CSV reader.")
    assert_message("unknown agent", str(exc.value))


def test_unknown_agent_in_a_cell(shell: object) -> None:
    assert_message("unknown agent", cell_error(shell, "%%agent pyhton-expert\nWrite a CSV reader.")
                   .removeprefix("UsageError: "))


def test_unknown_skill(sim: Simulator) -> None:
    with pytest.raises(errors.UnknownNameError) as exc:
        cf.run_agent("python-expert", "Write a CSV reader.", skills=["pytest-pattern"])
    assert_message("unknown skill", str(exc.value))
    assert sim.request_count == 0


def test_unknown_workflow(sim: Simulator) -> None:
    with pytest.raises(errors.UnknownNameError) as exc:
        cf.run_workflow("code-qualty", {"code": "x = 1"})
    assert_message("unknown workflow", str(exc.value))


def test_typod_flag(shell: object) -> None:
    assert_message("typo'd flag", cell_error(shell, "%%agent python-expert --no-cahce\nWrite a CSV reader."))


def test_missing_variable(shell: object) -> None:
    shell.user_ns["source"] = "def f(): pass"  # type: ignore[attr-defined]
    assert_message("missing variable", cell_error(shell, "%%agent python-expert\nReview {{ sourc }}"))


def test_missing_variable_in_a_template() -> None:
    with pytest.raises(errors.TemplateError, match=re.escape("Template variable '{{ inputs.cod }}' is not defined. "
                                                             "Did you mean 'inputs.code'?")):
        render_template("Review {{ inputs.cod }}", {"inputs": {"code": "x = 1"}})


def test_empty_cell(shell: object) -> None:
    assert_message("empty cell", cell_error(shell, "%%agent python-expert\n   \n"))


def test_invalid_model(sim: Simulator) -> None:
    with pytest.raises(errors.InvalidModelError) as exc:
        cf.run_agent("python-expert", "Write a CSV reader.", model="gpt-4")
    assert_message("invalid model", str(exc.value))


def test_malformed_front_matter() -> None:
    Path("agents").mkdir()
    Path("agents/broken.md").write_text("---\nname: broken\ndescription: the closing line is missing\n")
    with pytest.raises(errors.DefinitionError) as exc:
        library().agent("broken")
    assert_message("malformed front matter", str(exc.value))
    assert "python-expert" in library().agent_names()  # the rest of the library still loads


def test_cyclic_workflow() -> None:
    loop = {"name": "loop", "steps": [
        {"id": "a", "agent": "python-expert", "task": "x", "depends_on": ["b"]},
        {"id": "b", "agent": "python-expert", "task": "y", "depends_on": ["a"]},
    ]}
    with pytest.raises(errors.WorkflowError) as exc:
        library().workflow_from_dict(loop)
    assert_message("cyclic workflow", str(exc.value))
    with pytest.raises(errors.WorkflowError):
        cf.run_workflow(loop)


def test_budget_too_small(sim: Simulator, home: Path) -> None:
    with pytest.raises(errors.BudgetError) as exc:
        cf.map_agent("python-expert", [f"Explain item {i}." for i in range(20)], budget_usd=0.0001)
    assert_message("budget too small", str(exc.value))
    assert not sim.history  # no message was sent (counting tokens for the estimate is free)
    assert not (home / "metrics" / "executions.jsonl").exists()


def test_missing_key_with_anthropic_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDEFORCE_BACKEND", "anthropic")
    with pytest.raises(errors.ConfigError) as exc:
        cf.run_agent("python-expert", "Write a CSV reader.")
    assert_message("missing key", str(exc.value))


def test_corrupt_cache_file(sim: Simulator, home: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = home / "cache" / "responses.sqlite3"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"not a database " * 500)
    with caplog.at_level(logging.WARNING, logger="claudeforce_nb"):
        first = cf.run_agent("python-expert", "Write a CSV reader.")
    warnings = [r.getMessage() for r in caplog.records if r.name == "claudeforce_nb.cache"]
    assert len(warnings) == 1
    assert_message("corrupt cache file", warnings[0])
    assert first.success
    assert cf.run_agent("python-expert", "Write a CSV reader.").cached  # a fresh cache works
    assert list(cache.parent.glob("responses.sqlite3.corrupt-*"))  # the bad file was kept aside


def test_corrupt_metrics_line(sim: Simulator, home: Path, caplog: pytest.LogCaptureFixture) -> None:
    cf.run_agent("python-expert", "Write a CSV reader.")
    with (home / "metrics" / "executions.jsonl").open("a") as fh:
        fh.write("{this is not json\n")
    cf.run_agent("python-expert", "Write a JSON reader.")
    with caplog.at_level(logging.WARNING, logger="claudeforce_nb"):
        df = cf.metrics()
    assert len(df) == 2 and df.attrs["skipped_lines"] == 1
    warnings = [r.getMessage() for r in caplog.records if r.name == "claudeforce_nb.metrics"]
    assert len(warnings) == 1
    assert_message("corrupt metrics line", warnings[0])


def test_circuit_open(sim: Simulator, home: Path) -> None:
    cf.configure(max_retries=0)
    sim.enqueue(fault="529", times=5)
    for i in range(5):
        cf.run_agent("python-expert", f"Explain closures, take {i}.", model="sonnet", cache=False)
    refused = cf.run_agent("python-expert", "Explain closures.", model="sonnet", cache=False)
    assert refused.error_type == "circuit_open"
    assert_message("circuit open", refused.error or "")


def test_readme_table_shows_every_message() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert "## When something is wrong" in text
    section = text.split("## When something is wrong", 1)[1].split("\n## ", 1)[0]
    for row, message in MESSAGES.items():
        assert f"`` {message.removeprefix('UsageError: ')} ``" in section, f"README row missing: {row}"
