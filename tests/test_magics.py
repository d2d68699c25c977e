"""The magics through a real IPython shell: `%load_ext`, `%config AgentMagics`, `%%agent` / `%agent`
(templates, flags, -o), `%agents`, `%workflow`, one-line errors, and Ctrl-C cancelling a call.

Magics are run with `run_cell_magic` / `run_line_magic`, which re-raise, so a test sees the exact
exception a user would get; `run_cell` + captured stderr shows what the user actually reads.
These tests use the plain-text view (no kernel); tests/test_widgets.py covers the widgets.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from IPython import get_ipython
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.testing.globalipapp import start_ipython
from IPython.utils.capture import capture_output

from claudeforce_nb import client as cf_client
from claudeforce_nb.config import configure
from claudeforce_nb.core.orchestrator import metrics_log
from claudeforce_nb.core.results import AgentResult
from claudeforce_nb.errors import UnknownNameError
from claudeforce_nb.notebook.magics import AgentMagics
from claudeforce_nb.simulator import Simulator, use_simulator


def rows() -> list[dict[str, Any]]:
    path = metrics_log().path
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def sent(sim: Simulator) -> str:
    """The user message of the last request the simulator received."""
    return str(sim.history[-1]["messages"][-1]["content"])


@pytest.fixture
def ip(sim: Simulator) -> Iterator[InteractiveShell]:
    """The test shell with the extension freshly loaded (new AgentMagics, default options) and the
    names a test put into the namespace removed afterwards."""
    shell = start_ipython() or get_ipython()  # the second call returns None: the shell is global
    before = set(shell.user_ns)
    shell.run_line_magic("load_ext", "claudeforce_nb")
    yield shell
    shell.run_line_magic("unload_ext", "claudeforce_nb")
    shell.config.pop("AgentMagics", None)  # %config values outlive the instance, like in a session
    for name in set(shell.user_ns) - before:
        del shell.user_ns[name]


def magics(shell: InteractiveShell) -> AgentMagics:
    return next(c for c in shell.configurables if isinstance(c, AgentMagics))


def one_line_error(shell: InteractiveShell, source: str) -> str:
    """What the user reads when `source` fails as a cell: asserted to be a single line."""
    with capture_output() as cap:
        shell.run_cell(source)
    text = (cap.stderr + cap.stdout).strip()
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1, text
    return text


# --- loading and configuration -------------------------------------------------------------------

def test_load_ext_registers_the_magics_and_the_configurable_and_unload_removes_them(ip: InteractiveShell) -> None:
    manager = ip.magics_manager
    assert {"agent", "agents", "workflow"} <= set(manager.magics["line"])
    assert "agent" in manager.magics["cell"]
    assert sum(isinstance(c, AgentMagics) for c in ip.configurables) == 1
    ip.run_line_magic("unload_ext", "claudeforce_nb")
    assert "agent" not in manager.magics["line"] and "agent" not in manager.magics["cell"]
    assert not any(isinstance(c, AgentMagics) for c in ip.configurables)
    ip.run_line_magic("load_ext", "claudeforce_nb")  # the fixture unloads again
    assert "agent" in manager.magics["cell"]


def test_config_lists_every_option_with_its_help(ip: InteractiveShell) -> None:
    with capture_output() as cap:
        ip.run_line_magic("config", "AgentMagics")
    for option in ("default_model", "stream", "cache", "short_errors", "budget", "widgets"):
        assert f"AgentMagics.{option}=" in cap.stdout
    assert "full tracebacks" in cap.stdout and "router" in cap.stdout


def test_help_shows_the_options(ip: InteractiveShell) -> None:
    doc = AgentMagics.agent.__doc__ or ""
    for flag in ("--auto", "--no-cache", "--no-stream", "--max-tokens", "--over", "--engine", "-o VAR"):
        assert flag in doc


def test_default_model_option_routes_calls_and_accepts_a_tier_name(ip: InteractiveShell, sim: Simulator) -> None:
    ip.run_line_magic("config", "AgentMagics.default_model = 'haiku'")
    ip.run_cell_magic("agent", "python-expert -o r", "Explain list comprehensions.")
    assert ip.user_ns["r"].model == "claude-haiku-5-5" == sim.history[-1]["model"]


def test_default_model_option_rejects_an_unknown_model(ip: InteractiveShell, caplog: pytest.LogCaptureFixture) -> None:
    ip.run_line_magic("config", "AgentMagics.default_model = 'gpt-9'")  # %config logs the TraitError
    assert "Unknown model 'gpt-9'" in caplog.text
    assert magics(ip).default_model is None


# --- %%agent / %agent ----------------------------------------------------------------------------

def test_cell_magic_streams_the_answer_and_o_stores_the_result(ip: InteractiveShell, sim: Simulator) -> None:
    with capture_output() as cap:
        out = ip.run_cell_magic("agent", "python-expert -o r", "Write a function that flattens a list.")
    r = ip.user_ns["r"]
    assert out is None  # shown by the view, not echoed again as Out[n]
    assert isinstance(r, AgentResult) and r.success and r.agent == "python-expert"
    assert sent(sim) == "Write a function that flattens a list."
    assert sim.history[-1]["stream"] is True
    assert r.text in cap.stdout and r.summary_line() in cap.stdout
    assert [row["agent_name"] for row in rows()] == ["python-expert"]


def test_template_inserts_notebook_variables_and_leaves_other_braces_alone(ip: InteractiveShell,
                                                                            sim: Simulator) -> None:
    ip.user_ns["code"] = "def add(a, b): return a + b"
    ip.user_ns["cfg"] = {"depth": 3}
    ip.run_cell_magic("agent", "python-expert", "Review {{ code }} at depth {{cfg.depth}}; keep {x} and {{ a b }}.")
    assert sent(sim) == "Review def add(a, b): return a + b at depth 3; keep {x} and {{ a b }}."


def test_line_magic_sends_the_rest_of_the_line_verbatim(ip: InteractiveShell, sim: Simulator) -> None:
    ip.run_line_magic("agent", 'python-expert -m haiku -o r what\'s "yield" -- really?  {x}')
    assert sent(sim) == 'what\'s "yield" -- really?  {x}'
    assert ip.user_ns["r"].model == "claude-haiku-5-5"


def test_line_magic_ending_in_a_question_mark_asks_the_agent_not_ipython_help(ip: InteractiveShell,
                                                                             sim: Simulator) -> None:
    # IPython's help syntax would turn `... DataFrame?` into `%pinfo DataFrame`
    with capture_output() as cap:
        ip.run_cell("%agent python-expert -o r how do I pivot a DataFrame?")
    assert "not found" not in cap.stdout
    assert sent(sim) == "how do I pivot a DataFrame?"
    assert ip.user_ns["r"].success
    with capture_output() as cap:
        ip.run_cell("%agent?")  # help on the magic itself still works
    assert not cap.stderr and len(sim.history) == 1


def test_question_mark_transform_leaves_cell_magic_bodies_alone(ip: InteractiveShell) -> None:
    # a cell magic's body is its data (a file, a task), not Python: a `%agent ...?` line in it stays as typed
    for cell in ("%%writefile notes.md\n%agent how do I pivot?\n", "\n%%agent python-expert\n%agent what is it?\n"):
        assert "run_line_magic" not in ip.transform_cell(cell)
    assert "run_line_magic('agent', 'what is x?')" in ip.transform_cell("x = 1\n%agent what is x?\n")


def test_no_stream_and_no_cache_flags(ip: InteractiveShell, sim: Simulator) -> None:
    ip.run_cell_magic("agent", "python-expert -o a", "Explain decorators.")
    ip.run_cell_magic("agent", "python-expert -o b", "Explain decorators.")
    ip.run_cell_magic("agent", "python-expert -o c --no-cache --no-stream", "Explain decorators.")
    assert not ip.user_ns["a"].cached and ip.user_ns["b"].cached and not ip.user_ns["c"].cached
    assert len(sim.history) == 2 and sim.history[-1].get("stream") in (None, False)


def test_max_tokens_flag_is_sent(ip: InteractiveShell, sim: Simulator) -> None:
    ip.run_line_magic("agent", "python-expert --max-tokens 50 --no-cache explain generators")
    assert sim.history[-1]["max_tokens"] == 50


def test_api_failure_after_retries_is_a_failed_result_not_an_exception(ip: InteractiveShell,
                                                                       sim: Simulator) -> None:
    sim.enqueue(fault="429", times=3)  # the first try and both SDK retries
    with capture_output() as cap:
        ip.run_cell_magic("agent", "python-expert -o r --no-cache", "Explain generators.")
    r = ip.user_ns["r"]
    assert not r.success and r.status == "failed" and r.error_type == "rate_limit"
    assert "failed: rate_limit" in cap.stdout
    assert rows()[-1]["error_type"] == "rate_limit"


# --- one-line errors -----------------------------------------------------------------------------

def test_unknown_agent_is_one_line_with_a_suggestion(ip: InteractiveShell, sim: Simulator) -> None:
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("agent", "pyton-expert", "hello")
    assert type(info.value) is UsageError  # exactly UsageError: IPython prints it without a traceback
    assert info.value.error_type == "unknown_name"  # type: ignore[attr-defined]
    assert "Did you mean 'python-expert'" in str(info.value)
    line = one_line_error(ip, "%agent pyton-expert hello")
    assert line.startswith("UsageError: Unknown agent 'pyton-expert'.")
    assert not sim.history and rows() == []


@pytest.mark.parametrize(("source", "expected"), [
    ("%%agent python-expert --bogus\nhi", "unrecognized arguments: --bogus"),
    ("%%agent python-expert --max-tokens lots\nhi", "invalid int value: 'lots'"),
    ("%%agent python-expert\n   \n", "The task is empty"),
    ("%agent python-expert", "The task is empty"),
    ("%%agent\nhi", "Name an agent"),
    ("%%agent python-expert --auto\nhi", "not both"),
    ("%%agent python-expert --engine batches\nhi", "--engine only works with --over"),
    ("%%agent python-expert -o 1x\nhi", "-o needs a Python variable name"),
    ("%%agent python-expert -m gpt-9\nhi", "Unknown model 'gpt-9'"),
    ("%%agent python-expert -o r\nFix {{ missing_name }}", "'{{ missing_name }}' is not defined"),
])
def test_user_mistakes_print_one_line(ip: InteractiveShell, sim: Simulator, source: str, expected: str) -> None:
    line = one_line_error(ip, source)
    assert line.startswith("UsageError:") and expected in line
    assert not sim.history
    assert "r" not in ip.user_ns


def test_short_errors_off_restores_the_original_exception(ip: InteractiveShell) -> None:
    ip.run_line_magic("config", "AgentMagics.short_errors = False")
    with pytest.raises(UnknownNameError):
        ip.run_line_magic("agent", "pyton-expert hello")
    with capture_output() as cap:
        ip.run_cell("%agent pyton-expert hello")
    shown = cap.stdout + cap.stderr
    assert "UnknownNameError" in shown and len(shown.strip().splitlines()) > 1


def test_a_real_bug_keeps_its_traceback(ip: InteractiveShell) -> None:
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("broken __str__")

    ip.user_ns["thing"] = Broken()
    with pytest.raises(RuntimeError, match="broken __str__"):
        ip.run_cell_magic("agent", "python-expert", "Explain {{ thing }}")


# --- cancellation --------------------------------------------------------------------------------

def interrupt_when_sent(sim: Simulator, delay_s: float = 0.1) -> threading.Thread:
    """Deliver SIGINT to the main thread (what Jupyter's stop button does to a kernel) shortly after
    the simulator has received the request, i.e. while the call is in flight."""
    def run() -> None:
        deadline = time.monotonic() + 30
        while not sim.history and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(delay_s)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("flags", ["", "--no-stream"])
def test_interrupt_cancels_the_call_prints_one_line_and_records_a_cancelled_row(ip: InteractiveShell,
                                                                                flags: str) -> None:
    slow = Simulator(latency_ms=2000, seed=1)
    with use_simulator(slow):
        cf_client.reset_clients()
        thread = interrupt_when_sent(slow)
        with pytest.raises(UsageError) as info:
            ip.run_cell_magic("agent", f"python-expert -o r --no-cache {flags}", "Explain generators.")
        thread.join()
    assert info.value.error_type == "cancelled"  # type: ignore[attr-defined]
    assert str(info.value).startswith("Cancelled: python-expert was interrupted")
    row = rows()[-1]
    assert row["error_type"] == "cancelled" and row["success"] is False
    assert row["execution_time_ms"] < 1500  # cut short, not waited out (the reply takes 2000 ms)
    assert "r" not in ip.user_ns


def test_interrupt_with_short_errors_off_reraises_keyboardinterrupt(ip: InteractiveShell) -> None:
    ip.run_line_magic("config", "AgentMagics.short_errors = False")
    slow = Simulator(latency_ms=2000, seed=1)
    with use_simulator(slow):
        cf_client.reset_clients()
        thread = interrupt_when_sent(slow)
        with pytest.raises(KeyboardInterrupt):
            ip.run_cell_magic("agent", "python-expert --no-cache", "Explain generators.")
        thread.join()
    assert rows()[-1]["error_type"] == "cancelled"


# --- %agents -------------------------------------------------------------------------------------

def test_agents_lists_every_agent_as_text_and_html(ip: InteractiveShell) -> None:
    table = ip.run_line_magic("agents", "")
    text, html = repr(table), table._repr_html_()
    for name in ("python-expert", "security-auditor", "teaching-assistant"):
        assert name in text and f"<td style=\"text-align:left\">{name}</td>" in html
    assert text.splitlines()[0].split() == ["name", "description", "skills", "pin"]
    security = next(line for line in text.splitlines() if line.startswith("security-auditor"))
    assert security.rstrip().endswith(">= sonnet") and "secure-coding" in security
    assert repr(ip.run_line_magic("agents", "")) == text  # stable


def test_agents_show_prints_front_matter_and_body(ip: InteractiveShell) -> None:
    card = ip.run_line_magic("agents", "show sql-expert")
    assert repr(card).startswith("name: sql-expert\ndescription: ")
    assert "skills: pandas-idioms, sql-optimization" in repr(card)
    assert "# SQL expert" in repr(card) and "<h3>SQL expert</h3>" in card._repr_html_()


def test_agents_mistakes_are_one_line(ip: InteractiveShell) -> None:
    assert "Did you mean 'sql-expert'" in one_line_error(ip, "%agents show sql-expret")
    assert "use %agents, %agents show NAME or %agents status" in one_line_error(ip, "%agents shw")


def test_agents_status_shows_the_circuit_breakers(ip: InteractiveShell) -> None:
    status = ip.run_line_magic("agents", "status")
    assert "claude-haiku-5-5" in repr(status) and "closed" in repr(status)


# --- %workflow -----------------------------------------------------------------------------------

def test_workflow_list_and_show(ip: InteractiveShell) -> None:
    listing = repr(ip.run_line_magic("workflow", "list"))
    assert "code-quality" in listing and "bug-fix" in listing
    card = ip.run_line_magic("workflow", "show code-quality")
    assert "review (code-reviewer) after lint, tests" in repr(card)
    assert "run: %workflow code-quality code=$my_code" in repr(card)
    assert card._repr_html_().count('class="cf-node"') == 3


def test_workflow_runs_with_a_notebook_variable_and_stores_the_result(ip: InteractiveShell,
                                                                      sim: Simulator) -> None:
    ip.user_ns["source"] = "def add(a, b):\n    return a - b"
    with capture_output() as cap:
        out = ip.run_line_magic("workflow", "code-quality code=$source -o wf")
    wf = ip.user_ns["wf"]
    assert out is None and wf.success and list(wf.steps) == ["lint", "tests", "review"]
    assert all("return a - b" in body["messages"][-1]["content"] for body in list(sim.history)[:2])
    assert wf.summary_line() in cap.stdout
    assert {row["step_id"] for row in rows()} == {"lint", "tests", "review"}


def test_workflow_quoted_value_and_sequential_flag(ip: InteractiveShell, sim: Simulator) -> None:
    ip.run_line_magic("workflow", 'code-quality "code=x = 1  # a comment" --sequential -o wf')
    wf = ip.user_ns["wf"]
    assert not wf.parallel and wf.success
    assert "x = 1  # a comment" in sim.history[0]["messages"][-1]["content"]


@pytest.mark.parametrize(("source", "expected"), [
    ("%workflow code-qualty code=x", "Unknown workflow 'code-qualty'. Did you mean 'code-quality'?"),
    ("%workflow code-quality", "needs input code: %workflow code-quality code=$my_code"),
    ("%workflow code-quality code=$nowhere", "Notebook variable 'nowhere' (in code=$nowhere) is not defined"),
    ("%workflow code-quality cod=x", "has no input 'cod'. Did you mean 'code'?"),
    ("%workflow code-quality justtext", "Expected key=value, got 'justtext'"),
    ("%workflow code-quality code=a code=b", "Input 'code' is given twice"),
    ("%workflow code-quality code='unclosed", "Could not read the options"),
    ("%workflow show", "Use %workflow show NAME"),
    ("%workflow", "the following arguments are required: command"),
])
def test_workflow_mistakes_print_one_line(ip: InteractiveShell, sim: Simulator, source: str, expected: str) -> None:
    line = one_line_error(ip, source)
    assert line.startswith("UsageError:") and expected in line
    assert not sim.history


# --- --auto and --over ---------------------------------------------------------------------------

def test_auto_chooses_the_agent_and_names_the_runner_up(ip: InteractiveShell, sim: Simulator) -> None:
    from claudeforce_nb.core.selection import select_agent

    configure(selector="lexical")  # the BM25 selector: no embedding model to load in a unit test
    task = "Write a SQL query with a window function that ranks customers by revenue."
    best, second = select_agent(task, k=2)
    with capture_output() as cap:
        ip.run_line_magic("agent", f"--auto -o r {task}")
    assert ip.user_ns["r"].agent == best.agent and sent(sim) == task
    note = f"--auto chose {best.agent} ({best.score:.2f}), runner-up {second.agent} ({second.score:.2f})"
    assert cap.stdout.startswith(note + "\n")


def test_over_runs_the_cell_once_per_row_into_a_column(ip: InteractiveShell, sim: Simulator) -> None:
    import pandas as pd

    ip.user_ns["df"] = df = pd.DataFrame({"q": ["lists", "dicts", "sets"]})
    with capture_output() as cap:
        out = ip.run_cell_magic("agent", "python-expert --over df.q --into df.answer --concurrency 2",
                                "Explain Python {{ item }} in one line.")
    assert out is None and df["answer_success"].all()
    assert sorted(body["messages"][-1]["content"] for body in sim.history) == [
        "Explain Python dicts in one line.", "Explain Python lists in one line.", "Explain Python sets in one line."]
    assert "python-expert over df.q: 3 calls · 3 ok · $" in cap.stdout and "into df.answer" in cap.stdout


def test_over_without_o_or_into_shows_the_results_table(ip: InteractiveShell, sim: Simulator) -> None:
    ip.user_ns["topics"] = ["lists", "dicts"]
    frame = ip.run_cell_magic("agent", "python-expert --over topics", "Explain {{ item }}.")
    assert list(frame["success"]) == [True, True] and len(sim.history) == 2


def test_over_mistake_is_one_line(ip: InteractiveShell, sim: Simulator) -> None:
    line = one_line_error(ip, "%%agent python-expert --over nothing_here\nExplain {{ item }}.")
    assert line.startswith("UsageError: --over: no variable 'nothing_here'")
    assert not sim.history
