"""`python -m claudeforce_nb run | demo`: answers offline, and bad input is one line on stderr with
exit code 2 — never a traceback."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from claudeforce_nb.__main__ import DEMO_TASKS, main
from claudeforce_nb.config import configure
from claudeforce_nb.simulator import Simulator
from claudeforce_nb.simulator.text import SIMULATED_NOTE


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "claudeforce_nb", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_run_answers_offline_in_a_fresh_process() -> None:
    done = cli("run", "python-expert", "Write a function that reverses a string.")
    assert done.returncode == 0, done.stderr
    assert "```python" in done.stdout and SIMULATED_NOTE in done.stdout
    summary = done.stderr.strip().splitlines()[-1]
    assert "python-expert" in summary and "(simulated)" in summary and " in / " in summary
    assert "No ANTHROPIC_API_KEY found" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (("run", "python-exprt", "Explain decorators."), {}, "Did you mean 'python-expert'"),
        (("run", "python-expert", ""), {}, "empty"),
        (("run", "python-expert", "   "), {}, "empty"),
        (("run", "-m", "claude-sonet-5-5", "python-expert", "Explain decorators."), {},
         "Did you mean 'claude-sonnet-5-5'"),
        (("run", "-m", "gpt-4", "python-expert", "Explain decorators."), {}, "Unknown model 'gpt-4'"),
        (("run", "../agents/python-expert", "Explain decorators."), {}, "Invalid agent name"),
        (("run",), {}, "required"),
        (("fly",), {}, "invalid choice"),
        (("run", "python-expert", "Explain decorators."), {"CLAUDEFORCE_SIM_FAULTS": "429:lots"},
         "CLAUDEFORCE_SIM_FAULTS"),
        (("run", "python-expert", "Explain decorators."), {"CLAUDEFORCE_MAX_TOKENS": "many"}, "max_tokens"),
        (("run", "python-expert", "Explain decorators."), {"CLAUDEFORCE_BACKEND": "anthropic"},
         "ANTHROPIC_API_KEY"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(args: tuple[str, ...], env: dict[str, str],
                                                    expected: str) -> None:
    done = cli(*args, env=env)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert expected in done.stderr
    assert done.stdout == ""


def test_run_in_process_streams_the_answer_once_even_from_the_cache(sim: Simulator,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "python-expert", "Explain decorators."]) == 0
    first = capsys.readouterr()
    assert main(["run", "python-expert", "Explain decorators."]) == 0
    second = capsys.readouterr()
    assert second.out == first.out
    assert second.out.count(SIMULATED_NOTE) == 1
    assert "cached" in second.err and "cached" not in first.err
    assert len(sim.history) == 1


def test_run_no_stream_and_no_cache(sim: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(2):
        assert main(["run", "--no-stream", "--no-cache", "python-expert", "Explain", "decorators."]) == 0
    out = capsys.readouterr().out
    assert out.count(SIMULATED_NOTE) == 2
    assert sim.history[-1]["messages"][0]["content"] == "Explain decorators."
    assert len(sim.history) == 2


def test_run_reads_the_task_from_stdin(sim: Simulator, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("Review:\ndef f(x):\n    return x\n"))
    assert main(["run", "code-reviewer", "-"]) == 0
    assert sim.history[-1]["messages"][0]["content"] == "Review:\ndef f(x):\n    return x\n"
    assert SIMULATED_NOTE in capsys.readouterr().out


def test_api_failure_exits_1_with_the_error(sim: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    configure(max_retries=0)
    sim.enqueue(fault="529")
    assert main(["run", "--no-stream", "python-expert", "Explain decorators."]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "overloaded" in err.lower()


def test_demo_answers_each_task_and_prints_the_table(sim: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert out.count(SIMULATED_NOTE) == len(DEMO_TASKS)
    header = next(line for line in out.splitlines() if line.startswith("agent"))
    assert all(col in header for col in ("model", "backend", "in", "out", "cost", "latency", "cached"))
    table = out.split(header, 1)[1].splitlines()[2:2 + len(DEMO_TASKS)]
    assert [line.split()[0] for line in table] == [agent for agent, _ in DEMO_TASKS]
    assert all("simulated" in line for line in table)
    assert table[-1].rstrip().endswith("yes")  # the repeated task came from the cache
    assert "total cost $" in out
    assert len(sim.history) == len(DEMO_TASKS) - 1
