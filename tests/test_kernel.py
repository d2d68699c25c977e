"""The magics in a real Jupyter kernel (ipykernel through nbclient), the way a notebook runs them:
an agent cell with -o, a typo'd agent (one-line error, the run goes on), a workflow with a notebook
variable, and the saved notebook passing nbval when run again from scratch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
CELLS = [
    "%load_ext claudeforce_nb",
    'code = "def add(a, b):\\n    return a - b"',
    "%%agent python-expert -o r\nReview this function:\n{{ code }}",
    "print(r.success, r.agent, r.backend)",
    "# NBVAL_RAISES_EXCEPTION\n%agent pyton-expert hello",
    "%workflow code-quality code=$code -o wf",
    "print(wf.success, list(wf.steps))",
]


@pytest.fixture
def kernel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # This venv's kernel spec first, whatever else is installed for the user or the system; its
    # argv[0] "python" is replaced by sys.executable, so the kernel runs this interpreter.
    monkeypatch.setenv("JUPYTER_PATH", str(Path(sys.prefix) / "share" / "jupyter"))
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")


def run_notebook(folder: Path) -> tuple[Any, list[int]]:
    """The executed notebook and the indices of the cells whose execution ended in an error (those
    would stop "Run All")."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    failed: list[int] = []
    client = NotebookClient(nb, kernel_name="python3", timeout=180, allow_errors=True,
                            resources={"metadata": {"path": str(folder)}},
                            on_cell_error=lambda cell, cell_index, execute_reply: failed.append(cell_index))
    client.execute()
    return nb, failed


def data_outputs(cell: Any) -> list[dict[str, Any]]:
    return [o["data"] for o in cell.outputs if o["output_type"] in ("display_data", "execute_result")]


def test_notebook_runs_in_a_kernel_with_one_line_errors_and_passes_nbval(kernel_env: None, tmp_path: Path,
                                                                         home: Path) -> None:
    nb, failed = run_notebook(tmp_path)
    assert failed == [4]  # only the typo; it stops "Run All" like any error, but reads as one line
    agent_cell, check_cell, typo_cell, workflow_cell, wf_check = nb.cells[2:]

    live, final = data_outputs(agent_cell)  # the live widget was blanked by the final bundle
    assert live == {"text/plain": ""}
    assert WIDGET_MIME in final and final["text/plain"].startswith("python-expert · claude-")
    assert "\n\n## Review this function" in final["text/plain"]
    assert "".join(o.get("text", "") for o in check_cell.outputs) == "True python-expert simulated\n"

    (error,) = typo_cell.outputs  # IPython prints a UsageError to stderr, without a traceback
    assert error["output_type"] == "stream" and error["name"] == "stderr"
    assert error["text"].startswith("UsageError: Unknown agent 'pyton-expert'. Did you mean 'python-expert'")
    assert error["text"].count("\n") == 1

    assert data_outputs(workflow_cell)[-1]["text/plain"].startswith("code-quality · ok · 3 steps (3 ok)")
    assert "".join(o.get("text", "") for o in wf_check.outputs) == "True ['lint', 'tests', 'review']\n"
    rows = [json.loads(line) for line in (home / "metrics" / "executions.jsonl").read_text().splitlines()]
    assert sorted(r["step_id"] or r["agent_name"] for r in rows) == ["lint", "python-expert", "review", "tests"]

    # nbval re-runs the saved notebook in a fresh kernel and compares the outputs: the text and
    # HTML forms must be the same run to run (a fresh home, so no answer comes from the cache).
    path = tmp_path / "agent.ipynb"
    nbformat.write(nb, path)
    env = {**os.environ, "CLAUDEFORCE_HOME": str(tmp_path / "second-home")}
    check = subprocess.run([sys.executable, "-m", "pytest", "--nbval", "-p", "no:cacheprovider", "-q", path.name],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-2000:]
    assert f"{len(CELLS)} passed" in check.stdout
