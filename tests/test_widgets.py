"""The live views: the result widget (streamed Markdown, header, footer, insert-as-cell buttons,
failed and cancelled states), the stable outputs nbval compares, the DAG widget fed from another
thread, and the safe Markdown renderer they share."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from IPython import get_ipython
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.testing.globalipapp import start_ipython
from IPython.utils.capture import CapturedIO, capture_output
from ipywidgets.widgets.widget import _instances
from test_magics import interrupt_when_sent, rows

from claudeforce_nb import client as cf_client
from claudeforce_nb.core.workflow_result import StepEvent
from claudeforce_nb.definitions import library
from claudeforce_nb.notebook.dag_widget import DagView, dag_layers
from claudeforce_nb.notebook.widgets import WIDGET_MIME, ResultWidget
from claudeforce_nb.render import code_blocks, header_html, markdown_html, result_text
from claudeforce_nb.simulator import Simulator, use_simulator

ANSWER = """## Plan

Use **pathlib** and `glob`; see [docs](https://docs.python.org/3/library/pathlib.html).

- first
- second <b>not bold</b>

```python
from pathlib import Path
print(list(Path(".").glob("*.py")))
```

```bash
ls *.py
```
"""

@pytest.fixture
def ip(sim: Simulator) -> Iterator[InteractiveShell]:
    """The test shell with the extension loaded and widgets switched on (no kernel here)."""
    shell = start_ipython() or get_ipython()  # the second call returns None: the shell is global
    before = set(shell.user_ns)
    shell.run_line_magic("load_ext", "claudeforce_nb")
    shell.run_line_magic("config", "AgentMagics.widgets = True")
    yield shell
    shell.run_line_magic("unload_ext", "claudeforce_nb")
    shell.config.pop("AgentMagics", None)
    for name in set(shell.user_ns) - before:
        del shell.user_ns[name]
    shell.rl_next_input = None


def widget_of(output: Any) -> Any:
    return _instances[output.data[WIDGET_MIME]["model_id"]]


def run_cell_magic(shell: InteractiveShell, line: str, cell: str) -> CapturedIO:
    with capture_output() as cap:
        shell.run_cell_magic("agent", line, cell)
    return cap


# --- the result widget ---------------------------------------------------------------------------

def test_widget_is_replaced_by_a_stable_final_bundle(ip: InteractiveShell, sim: Simulator) -> None:
    cap = run_cell_magic(ip, "python-expert -o r", "Explain context managers.")
    r = ip.user_ns["r"]
    live, final = cap.outputs[0], cap.outputs[-1]
    # live: the widget alone (empty text, so nbval sees the same before and after Jupyter's update)
    assert live.data["text/plain"] == "" and WIDGET_MIME in live.data
    assert cap.outputs[1].data == {"text/plain": ""}  # the blanking update of the live display
    assert widget_of(final) is widget_of(live)
    assert final.data["text/plain"] == result_text(r)
    assert final.data["text/plain"].startswith(r.summary_line() + "\n\n## Explain context managers")
    assert " ms" not in final.data["text/html"] and "TTFT" not in final.data["text/html"]
    assert len(cap.outputs) == 3


def test_widget_shows_header_answer_and_footer(ip: InteractiveShell, sim: Simulator) -> None:
    sim.enqueue(text=ANSWER)
    cap = run_cell_magic(ip, "python-expert -o r", "List the Python files.")
    r = ip.user_ns["r"]
    header, answer, actions, footer = widget_of(cap.outputs[-1]).children
    assert "<b>python-expert</b>" in header.value and r.model in header.value and ">simulated<" in header.value
    assert "<strong>pathlib</strong>" in answer.value and "<code>glob</code>" in answer.value
    assert "&lt;b&gt;not bold&lt;/b&gt;" in answer.value  # model text is escaped, never markup
    assert '<code class="language-python">from pathlib import Path' in answer.value
    assert f"{r.input_tokens:,} in / {r.output_tokens:,} out tokens" in footer.value
    assert f"${r.cost_usd:.6f}" in footer.value and "TTFT" in footer.value and " ms" in footer.value
    assert [b.description for b in actions.children] == ["insert python as cell (1)", "insert bash as cell (2)"]


def test_footer_shows_the_saving_against_the_baseline_model(ip: InteractiveShell, sim: Simulator) -> None:
    cap = run_cell_magic(ip, "python-expert -m haiku -o r", "Rename a variable.")
    r = ip.user_ns["r"]
    footer = widget_of(cap.outputs[-1]).children[3].value
    assert r.saved_usd and r.saved_usd > 0
    assert f"saved ${r.saved_usd:.6f}" in footer and "vs baseline" in footer


def test_insert_button_puts_the_code_into_the_next_cell(ip: InteractiveShell, sim: Simulator) -> None:
    sim.enqueue(text=ANSWER)
    cap = run_cell_magic(ip, "python-expert", "List the Python files.")
    first, second = widget_of(cap.outputs[-1]).children[2].children
    second.click()
    assert ip.rl_next_input == "ls *.py"
    first.click()
    assert ip.rl_next_input == 'from pathlib import Path\nprint(list(Path(".").glob("*.py")))'


def test_cached_answer_gets_a_cached_badge(ip: InteractiveShell, sim: Simulator) -> None:
    run_cell_magic(ip, "python-expert", "Explain slots.")
    cap = run_cell_magic(ip, "python-expert -o r", "Explain slots.")
    assert ip.user_ns["r"].cached
    assert ">cached<" in widget_of(cap.outputs[-1]).children[0].value
    assert " ok cached " in cap.outputs[-1].data["text/plain"]


def test_failed_call_is_shown_as_failed_in_the_widget(ip: InteractiveShell, sim: Simulator) -> None:
    sim.enqueue(fault="429", times=3)
    cap = run_cell_magic(ip, "python-expert -o r --no-cache", "Explain slots.")
    header, answer, actions, _ = widget_of(cap.outputs[-1]).children
    assert ">failed<" in header.value and "rate_limit" in answer.value and actions.children == ()
    assert "failed: rate_limit" in cap.outputs[-1].data["text/plain"]


def test_no_stream_shows_the_answer_once_complete(ip: InteractiveShell, sim: Simulator) -> None:
    cap = run_cell_magic(ip, "python-expert -o r --no-stream", "Explain slots.")
    widget = widget_of(cap.outputs[-1])
    assert "Explain slots" in widget.children[1].value and not sim.history[-1].get("stream")


def test_streamed_text_is_rerendered_at_most_once_per_interval() -> None:
    throttled = ResultWidget("python-expert")
    throttled.RENDER_INTERVAL_S = 3600.0
    every = ResultWidget("python-expert")
    every.RENDER_INTERVAL_S = 0.0
    for i in range(40):
        throttled.on_text(f"word{i} ")
        every.on_text(f"word{i} ")
    assert throttled.renders == 1 and "word0" in throttled.answer.value  # the first token shows at once
    assert every.renders == 40 and "word39" in every.answer.value
    assert throttled.text == every.text


def test_interrupt_marks_the_widget_cancelled(ip: InteractiveShell) -> None:
    slow = Simulator(latency_ms=2000, seed=1)
    with use_simulator(slow):
        cf_client.reset_clients()
        thread = interrupt_when_sent(slow)
        with capture_output() as cap, pytest.raises(UsageError, match="Cancelled: python-expert"):
            ip.run_cell_magic("agent", "python-expert --no-cache", "Explain generators.")
        thread.join()
    final = cap.outputs[-1]
    assert final.data["text/plain"] == "python-expert · cancelled"
    header = widget_of(final).children[0].value
    assert ">cancelled<" in header and ">simulated<" in header
    assert rows()[-1]["error_type"] == "cancelled"


def test_a_failure_before_the_call_blanks_the_live_widget(ip: InteractiveShell, sim: Simulator) -> None:
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("broken")

    ip.user_ns["thing"] = Broken()
    with capture_output() as cap, pytest.raises(RuntimeError):
        ip.run_cell_magic("agent", "python-expert", "Explain {{ thing }}")
    assert all(o.data.get("text/plain", "") == "" for o in cap.outputs)


def test_header_has_the_simulated_badge_only_for_the_simulator() -> None:
    assert ">simulated<" in header_html("python-expert", backend="simulated")
    assert "simulated" not in header_html("python-expert", backend="anthropic")


# --- the DAG widget ------------------------------------------------------------------------------

def states(svg: str) -> dict[str, str]:
    return dict(re.findall(r'data-step="([^"]+)" data-state="([^"]+)"', svg))


def test_dag_layers_follow_the_dependencies() -> None:
    spec = library().workflow("code-quality")
    assert dag_layers(spec.steps) == [["lint", "tests"], ["review"]]


def test_dag_widget_batches_events_from_another_thread(sim: Simulator) -> None:
    spec = library().workflow("code-quality")
    with capture_output():
        view = DagView(spec, use_widgets=True)
    view.FLUSH_S = 3600.0  # hold the timer so the batching is visible
    events = [StepEvent("wf", sid, "running", None, time.time()) for sid in ("lint", "tests")]
    sender = threading.Thread(target=lambda: [view.on_event(e) for e in events])
    sender.start()
    sender.join()
    assert view.events == 2 and view.renders == 0
    assert set(states(view.graph.value).values()) == {"waiting"}
    view.flush()
    assert view.renders == 1
    assert states(view.graph.value) == {"lint": "running", "tests": "running", "review": "waiting"}
    view.discard()


def test_dag_widget_renders_soon_after_an_event(sim: Simulator) -> None:
    spec = library().workflow("code-quality")
    with capture_output():
        view = DagView(spec, use_widgets=True)
    view.on_event(StepEvent("wf", "lint", "running", None, time.time()))
    deadline = time.monotonic() + 10
    while view.renders == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert states(view.graph.value)["lint"] == "running"
    view.discard()


def test_workflow_magic_shows_the_live_dag_and_a_stable_final_bundle(ip: InteractiveShell, sim: Simulator) -> None:
    with capture_output() as cap:
        ip.run_line_magic("workflow", "code-quality code=x -o wf")
    wf = ip.user_ns["wf"]
    live, final = cap.outputs[0], cap.outputs[-1]
    assert live.data["text/plain"] == "" and widget_of(live) is widget_of(final)
    summary, graph = widget_of(final).children
    assert states(graph.value) == {"lint": "done", "tests": "done", "review": "done"}
    assert "wall" in summary.value
    text = final.data["text/plain"].splitlines()
    assert text[0] == wf.summary_line()
    assert text[1:] == [f"  {sid}: {r.summary_line()}" for sid, r in wf.steps.items()]
    assert " s ·" not in final.data["text/html"] and "wall" not in final.data["text/html"]


def test_workflow_failure_is_shown_in_the_dag(ip: InteractiveShell, sim: Simulator) -> None:
    sim.enqueue(fault="429", times=6)  # the first two steps fail after their retries
    with capture_output() as cap:
        ip.run_line_magic("workflow", "code-quality code=x -o wf --no-cache")
    graph = widget_of(cap.outputs[-1]).children[1]
    assert "failed" in states(graph.value).values()
    assert not ip.user_ns["wf"].success


# --- Markdown ------------------------------------------------------------------------------------

def test_markdown_escapes_everything_the_model_writes() -> None:
    out = markdown_html('<img src=x onerror=alert(1)> [x](javascript:alert(1)) **<i>b</i>**')
    assert "<img" not in out and "<i>" not in out and "href" not in out
    assert "&lt;img src=x onerror=alert(1)&gt;" in out and "<strong>&lt;i&gt;b&lt;/i&gt;</strong>" in out


def test_markdown_blocks() -> None:
    out = markdown_html("# Title\n\ntext *em* and _em_ and snake_case_name\n\n1. one\n2. two\n\n> quote\n\n---")
    assert "<h3>Title</h3>" in out
    assert "<p>text <em>em</em> and <em>em</em> and snake_case_name</p>" in out
    assert "<ol><li>one</li><li>two</li></ol>" in out and "<blockquote" in out and "<hr>" in out


def test_markdown_unclosed_fence_renders_as_code_while_streaming() -> None:
    out = markdown_html("Intro\n\n```python\nx = 1 < 2\n")
    assert out.endswith('<code class="language-python">x = 1 &lt; 2\n</code></pre>')


def test_code_blocks_are_extracted_in_order() -> None:
    blocks = code_blocks(ANSWER)
    assert [(b.lang, b.code.splitlines()[0]) for b in blocks] == [("python", "from pathlib import Path"),
                                                                 ("bash", "ls *.py")]


def test_interrupting_a_workflow_cancels_its_steps_and_marks_the_dag(ip: InteractiveShell) -> None:
    slow = Simulator(latency_ms=2000, seed=1)
    with use_simulator(slow):
        cf_client.reset_clients()
        thread = interrupt_when_sent(slow)
        with capture_output() as cap, pytest.raises(UsageError, match="Cancelled: workflow code-quality"):
            ip.run_line_magic("workflow", "code-quality code=x --no-cache")
        thread.join()
    final = cap.outputs[-1]
    dag = states(widget_of(final).children[1].value)
    assert dag == {"lint": "cancelled", "tests": "cancelled", "review": "skipped"}
    assert "lint: cancelled" in final.data["text/plain"]
    recorded = {row["step_id"]: row["error_type"] for row in rows()}
    assert recorded == {"lint": "cancelled", "tests": "cancelled"}  # the review step never started
