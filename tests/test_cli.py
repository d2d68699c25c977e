"""`python -m claudeforce_nb run | demo`: answers offline, and bad input is one line on stderr with
exit code 2 — never a traceback. `demo` runs the quickstart notebook headless and writes it and two
dashboards as HTML, or the terminal tour where the notebook is not installed."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from claudeforce_nb import demo
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


def test_demo_text_answers_each_task_and_prints_the_table(sim: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--text"]) == 0
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


def test_demo_without_the_notebook_says_so_and_runs_the_terminal_tour(sim: Simulator, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(demo, "find_notebook", lambda name=demo.QUICKSTART: None)  # a wheel install
    assert main(["demo"]) == 0
    out, err = capsys.readouterr()
    assert "01-quickstart.ipynb is not installed with the package" in err and "terminal tour" in err
    assert out.count(SIMULATED_NOTE) == len(DEMO_TASKS) and "total cost $" in out


def test_demo_with_a_missing_notebook_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = cli("demo", "--notebook", str(tmp_path / "nope.ipynb"), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"error: No notebook at {tmp_path / 'nope.ipynb'}. Check the path " \
                                  "(the repository has notebooks/01-quickstart.ipynb)."
    assert not (tmp_path / "out").exists()


def test_notebook_env_passes_no_key_and_no_setting_to_the_kernel(tmp_path: Path) -> None:
    env = demo.notebook_env(tmp_path, {"PATH": "/bin", "ANTHROPIC_API_KEY": "sk-ant-x", "ANTHROPIC_BASE_URL": "http://h",
                                       "CLAUDEFORCE_BACKEND": "anthropic", "CLAUDEFORCE_HOME": "/elsewhere"})
    assert env["CLAUDEFORCE_HOME"] == str(tmp_path) and env["PATH"] == "/bin"
    assert sorted(k for k in env if k.startswith(("ANTHROPIC_", "CLAUDEFORCE_"))) == ["CLAUDEFORCE_HOME"]


@pytest.mark.slow
def test_a_cell_failing_without_the_raises_exception_tag_stops_the_run(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("1 / 0"),
                nbformat.v4.new_code_cell("print('never')")]
    nb.cells[1].metadata["tags"] = ["raises-exception"]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    run = demo.execute_notebook(path, tmp_path / "home")
    assert (run.cells, run.expected_errors) == (3, 1)
    assert run.notebook.cells[2].outputs[0]["text"] == "never\n"
    nb.cells[1].metadata["tags"] = []
    nbformat.write(nb, path)
    failed = r"^nb.ipynb: code cell 2 of 3 failed: ZeroDivisionError: division by zero$"
    with pytest.raises(demo.NotebookFailed, match=failed):
        demo.execute_notebook(path, tmp_path / "home")


@pytest.mark.slow
def test_demo_runs_the_quickstart_offline_and_writes_the_pages(tmp_path: Path) -> None:
    out = tmp_path / "out"
    marker = "sk-ant-api03-demo-marker-0123456789"
    # a key and backend=anthropic in the caller's environment: the notebook must still run on the simulator
    done = cli("demo", "--out", str(out), env={"ANTHROPIC_API_KEY": marker, "CLAUDEFORCE_BACKEND": "anthropic"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["dashboard-synthetic.html", "dashboard.html", "quickstart.html"]
    page = (out / "quickstart.html").read_text()
    assert page.count('class="cf-result"') >= 5 and "simulated</span>" in page
    assert re.search(r"UsageError: Unknown agent (&#39;|')pyhton-expert", page)
    assert "widget-view+json" not in page  # widgets shown by their saved HTML: readable without Jupyter
    for name in ("dashboard.html", "dashboard-synthetic.html"):
        html = (out / name).read_text()
        assert "claudeforce_nb dashboard" in html and "Plotly.newPlot" in html
    assert all(marker not in p.read_text() for p in out.iterdir()) and marker not in done.stdout + done.stderr

    # the summary: one table row per call, and a total line that adds them up
    text = done.stdout
    assert "1 error shown on purpose" in text
    rows = [line.split() for line in text.splitlines() if re.match(r"\s+[a-z-]+\s+claude-", line)]
    calls, total = re.search(r"(\d+) calls · \$([\d.]+)", text).groups()  # type: ignore[union-attr]
    assert len(rows) == int(calls) > 0
    assert abs(sum(float(r[5].lstrip("$")) for r in rows) - float(total)) < 1e-4
    assert f"dashboard of these {calls} calls" in text and str(out / "quickstart.html") in text
