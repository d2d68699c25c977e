"""The page, not just the kernel: JupyterLab in headless Chromium runs a notebook through a real
click on Run → Run All Cells, and the DOM must show the `%%agent` widget (header, answer streaming
in before the call completes, cost footer), the `%workflow` DAG going live to all-done, and the
dashboard's Plotly charts. Screenshots land in tests/e2e/artifacts/ for a human to look at.

The kernels run on the simulator with a fixed 3 s per call, so streaming is slow enough for the
browser to sample. The expected numbers (model, tokens, cost) come from the metrics log the kernel
wrote, not from constants.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
ARTIFACTS = HERE / "artifacts"

WORKFLOW = "code-quality"
CELLS = [
    "%load_ext claudeforce_nb",
    "%%agent python-expert --no-cache\n"
    "Write a Python function that checks whether a string is a palindrome, ignoring case and spaces.",
    'source = "def add(a, b):\\n    return a + b\\n"\n'
    f"%workflow {WORKFLOW} code=$source",
    "import claudeforce_nb as cf\n"
    "cf.dashboard(cf.demo.synthetic_metrics(2000, seed=7))",
]
DOCS_IMG = REPO / "docs" / "img" / "agent-widget.png"
VIEWPORT = {"width": 1280, "height": 1000}

# One look at the page: what the agent widget, the DAG widget and the charts show right now.
# `.widget-vbox.cf-…` selects the live ipywidgets (not an HTML fallback of the same content).
PROBE = """() => {
  const last = (sel) => { const all = document.querySelectorAll(sel); return all.length ? all[all.length - 1] : null; };
  const text = (root, sel) => { const el = root && root.querySelector(sel); return el ? el.innerText.trim() : null; };
  const agent = last('.jp-OutputArea .widget-vbox.cf-result');
  const wf = last('.jp-OutputArea .widget-vbox.cf-workflow');
  const nodes = wf ? [...wf.querySelectorAll('svg.cf-dag g.cf-node')].map(g => [g.dataset.step, g.dataset.state]) : [];
  const charts = [...document.querySelectorAll('.jp-OutputArea .widget-vbox.cf-dashboard [class*="cf-chart-"]')]
    .map(c => [[...c.classList].find(k => k.startsWith('cf-chart-')).slice(9),
               !!c.querySelector('.js-plotly-plot svg.main-svg .trace')]);
  const errors = [...document.querySelectorAll(
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"],'
      + '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')].map(e => e.innerText.trim());
  return {
    agent: agent ? {
      header: text(agent, '.cf-header'),
      badges: [...agent.querySelectorAll('.cf-header .cf-badge')].map(b => b.innerText.trim()),
      answer: text(agent, '.cf-answer'),
      footer: text(agent, '.cf-footer'),
    } : null,
    workflow: wf ? {summary: wf.innerText.split('\\n')[0], nodes: nodes} : null,
    charts: Object.fromEntries(charts),
    prompts: [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(e => e.innerText.trim()),
    errors: errors,
  };
}"""


@dataclass
class Run:
    """What the browser saw while the notebook ran, phase by phase."""

    started: bool = False
    stream_samples: list[int] = field(default_factory=list)  # answer length while the header said streaming
    agent: dict[str, Any] | None = None  # the finished agent widget
    workflow_samples: list[list[list[str]]] = field(default_factory=list)  # node states while running
    workflow: dict[str, Any] | None = None  # the finished DAG widget
    charts: dict[str, bool] = field(default_factory=dict)  # dashboard chart name -> a Plotly SVG is drawn
    errors: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    screenshots: dict[str, Path] = field(default_factory=dict)


def _wait(page: Any, until: Callable[[dict[str, Any]], bool], timeout_s: float,
          on_state: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any] | None:
    """Probe the page every ~0.1 s until `until(state)`; the last state, or None on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = page.evaluate(PROBE)
        if on_state is not None:
            on_state(state)
        if until(state):
            return state
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)


def _shot(page: Any, run: Run, name: str, output_of: str | None = None) -> None:
    """A viewport screenshot, and with `output_of` also a crop to the output area of that element's
    cell. The notebook panel scrolls, so a crop taller than the window is taken in a window made
    tall enough to hold it."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if output_of is not None:
        output = page.locator(".jp-CodeCell", has=page.locator(output_of)).last.locator(".jp-Cell-outputWrapper")
        box = output.bounding_box()
        if box is not None and box["height"] > VIEWPORT["height"] - 250:
            page.set_viewport_size({"width": VIEWPORT["width"], "height": min(int(box["height"]) + 300, 4000)})
        output.scroll_into_view_if_needed()
        path = ARTIFACTS / f"{name}-output.png"
        output.screenshot(path=str(path))
        run.screenshots[f"{name}-output"] = path
        page.set_viewport_size(VIEWPORT)
        output.scroll_into_view_if_needed()
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    run.screenshots[name] = path


def _widget_shot(page: Any, run: Run, selector: str, name: str, width: int) -> None:
    """The widget alone, laid out in a window `width` wide (the README's picture stays small)."""
    page.set_viewport_size({"width": width, "height": VIEWPORT["height"]})
    widget = page.locator(selector).last
    widget.scroll_into_view_if_needed()
    run.screenshots[name] = ARTIFACTS / f"{name}.png"
    widget.screenshot(path=str(run.screenshots[name]))
    page.set_viewport_size(VIEWPORT)


def _agent_done(s: dict[str, Any]) -> bool:
    a = s["agent"]
    return bool(a and a["footer"] and "streaming" not in a["badges"])


def _workflow_done(s: dict[str, Any]) -> bool:
    wf = s["workflow"]
    return bool(wf and wf["nodes"] and all(state in ("done", "failed", "cancelled", "skipped")
                                           for _, state in wf["nodes"]))


@pytest.fixture(scope="module")
def page(lab: Any, browser: Any) -> Iterator[Any]:
    """The test notebook open in JupyterLab with its kernel idle."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, lab.root / "e2e.ipynb")
    page = browser.new_page()
    page.goto(lab.notebook_url("e2e.ipynb"))
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook", timeout=60_000)
    # The execution indicator says "idle" before any kernel exists; the status bar names the kernel.
    page.wait_for_function(
        "() => /ipykernel\\)? \\| Idle/.test(document.querySelector('.jp-StatusBar-Widget')?.innerText || '')",
        timeout=60_000)
    # Fold the file browser away so the screenshots show the notebook, not the sidebar.
    page.keyboard.press("Control+b")
    page.wait_for_selector("#jp-left-stack", state="hidden", timeout=10_000)
    yield page
    page.close()


@pytest.fixture(scope="module")
def run(page: Any, lab: Any) -> Run:
    """Click Run → Run All Cells, then watch each phase; a phase that never completes is left empty
    (with a screenshot) so each test below reports its own failure."""
    r = Run()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in [*ARTIFACTS.glob("*.png"), ARTIFACTS / "run.json"]:  # no stale picture from an earlier run
        old.unlink(missing_ok=True)
    t0 = time.monotonic()
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    r.started = _wait(page, lambda s: any(p not in ("[ ]:", "") for p in s["prompts"]), 20) is not None
    if not r.started:
        _shot(page, r, "00-not-started")
        return r

    def sample_stream(s: dict[str, Any]) -> None:
        a = s["agent"]
        if a and "streaming" in a["badges"] and a["answer"] and not a["answer"].startswith("waiting for"):
            r.stream_samples.append(len(a["answer"]))
            # A picture blocks sampling for a moment: take one once enough growth has been seen.
            if len(set(r.stream_samples)) == 5 and "01-agent-streaming" not in r.screenshots:
                r.screenshots["01-agent-streaming"] = ARTIFACTS / "01-agent-streaming.png"
                page.locator(".jp-OutputArea .widget-vbox.cf-result").last.screenshot(
                    path=str(r.screenshots["01-agent-streaming"]))

    done = _wait(page, _agent_done, 60, sample_stream)
    r.seconds["agent"] = time.monotonic() - t0
    if done is not None:
        r.agent = done["agent"]

    # The workflow cell starts the moment the agent cell ends: watch it at once (pictures of the
    # finished agent widget wait, or the steps' running phase could be missed).
    def sample_dag(s: dict[str, Any]) -> None:
        if s["workflow"]:
            r.workflow_samples.append(s["workflow"]["nodes"])
            running = sum(state == "running" for _, state in s["workflow"]["nodes"])
            if running >= 2 and "03-workflow-running" not in r.screenshots:
                r.screenshots["03-workflow-running"] = ARTIFACTS / "03-workflow-running.png"
                page.locator(".jp-OutputArea .widget-vbox.cf-workflow").last.screenshot(
                    path=str(r.screenshots["03-workflow-running"]))

    done = _wait(page, _workflow_done, 60, sample_dag)
    r.seconds["workflow"] = time.monotonic() - t0
    if done is not None:
        r.workflow = done["workflow"]

    done = _wait(page, lambda s: bool(s["charts"]) and all(s["charts"].values())
                 and s["prompts"][-1] not in ("[*]:", "[ ]:"), 60)
    r.seconds["dashboard"] = time.monotonic() - t0
    if done is not None:
        page.wait_for_timeout(500)  # let Plotly finish laying out before the picture
    r.charts = page.evaluate(PROBE)["charts"]

    if r.agent is not None:
        _shot(page, r, "02-after-agent", output_of=".widget-vbox.cf-result")
        _widget_shot(page, r, ".jp-OutputArea .widget-vbox.cf-result", "agent-widget", 960)
    if r.workflow is not None:
        _shot(page, r, "03-after-workflow", output_of=".widget-vbox.cf-workflow")
    if r.charts:
        _shot(page, r, "04-after-dashboard", output_of=".widget-vbox.cf-dashboard")
    r.errors = page.evaluate(PROBE)["errors"]
    if r.agent is not None and os.environ.get("CLAUDEFORCE_E2E_UPDATE_DOCS") == "1":
        DOCS_IMG.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(r.screenshots["agent-widget"], DOCS_IMG)
    (ARTIFACTS / "run.json").write_text(json.dumps({k: v for k, v in r.__dict__.items() if k != "screenshots"},
                                                   indent=1, default=str))
    return r


def _metrics(lab: Any) -> list[dict[str, Any]]:
    path = lab.home / "metrics" / "executions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _agent_row(lab: Any) -> dict[str, Any]:
    rows = [r for r in _metrics(lab) if r["agent_name"] == "python-expert" and not r.get("workflow_id")]
    assert len(rows) == 1, f"expected one metrics row for the %%agent cell, found {len(rows)}"
    return rows[0]


def test_run_all_click_starts_the_kernel_on_every_cell(run: Run) -> None:
    assert run.started, "clicking Run → Run All Cells executed nothing (see artifacts/00-not-started.png)"


def test_agent_header_shows_agent_model_and_simulated_badge(run: Run, lab: Any) -> None:
    assert run.agent is not None, "the %%agent widget never finished (no footer within 60 s)"
    row = _agent_row(lab)
    header = run.agent["header"]
    assert "python-expert" in header
    assert row["model"] in header, f"header {header!r} does not name the model {row['model']!r} that answered"
    assert "simulated" in run.agent["badges"]


def test_agent_answer_streams_into_the_page_before_the_call_completes(run: Run) -> None:
    assert run.agent is not None, "the %%agent widget never finished"
    final = len(run.agent["answer"])
    # The last chunk can be on screen a moment before the header drops its "streaming" badge.
    partial = [n for n in run.stream_samples if n < final]
    assert max(run.stream_samples, default=0) <= final, f"streamed {run.stream_samples}, longer than the final {final}"
    assert len(set(partial)) >= 3, f"saw {len(set(partial))} distinct partial answers while streaming: {partial}"
    assert partial[-1] > partial[0], f"the streamed answer did not grow: {partial}"


def test_agent_footer_shows_tokens_and_cost_of_the_call(run: Run, lab: Any) -> None:
    assert run.agent is not None and run.agent["footer"], "the %%agent widget has no footer"
    footer, row = run.agent["footer"], _agent_row(lab)
    tokens = re.search(r"([\d,]+) in / ([\d,]+) out tokens", footer)
    assert tokens, f"no token counts in footer {footer!r}"
    assert (int(tokens[1].replace(",", "")), int(tokens[2].replace(",", ""))) == (
        row["input_tokens"], row["output_tokens"])
    assert f"${row['estimated_cost']:.6f}" in footer, f"footer {footer!r} lacks the cost {row['estimated_cost']}"


def test_workflow_dag_goes_live_and_reaches_all_done(run: Run) -> None:
    from claudeforce_nb.definitions import library

    steps = [s.id for s in library().workflow(WORKFLOW).steps]
    assert run.workflow is not None, f"the %workflow DAG never finished; last states seen: {run.workflow_samples[-1:]}"
    assert [step for step, _ in run.workflow["nodes"]] == steps
    assert {state for _, state in run.workflow["nodes"]} == {"done"}, run.workflow["nodes"]
    assert f"{len(steps)} done" in run.workflow["summary"], run.workflow["summary"]
    running = [[step for step, state in nodes if state == "running"] for nodes in run.workflow_samples]
    assert any(running), "the DAG never showed a step as running: it did not update live"
    assert any(len(r) >= 2 for r in running), f"independent steps never ran at the same time: {running}"


def test_dashboard_draws_every_chart_with_plotly(run: Run) -> None:
    import claudeforce_nb as cf

    expected = set(cf.dashboard(cf.demo.synthetic_metrics(200, seed=7)).figures)
    assert run.charts, "no dashboard widget with charts rendered from cf.dashboard(...)"
    assert set(run.charts) == expected
    assert all(run.charts.values()), f"charts without a drawn Plotly SVG: {[k for k, v in run.charts.items() if not v]}"


def test_notebook_shows_no_errors(run: Run) -> None:
    assert not [e for e in run.errors if re.search(r"Error|Traceback|Exception", e)], run.errors
