"""The notebook layer's responsiveness: `%load_ext`, Enter to first token, and Ctrl-C to cancelled.

- load_ext: `%load_ext claudeforce_nb` timed inside fresh interpreters (an IPython shell already
  up, as in a kernel), alternating with fresh `import IPython` runs as the side-by-side baseline.
  jupysql (`%load_ext sql`) and jupyter-ai (`%load_ext jupyter_ai_magics`) are timed the same way
  when they are installed. Goal: median <= 150 ms.
- first token: a `%%agent` cell with live widgets on a simulator with a fixed 400 ms latency (120 ms
  to the first token); from calling the cell to the answer widget's first update, against the raw
  SDK's own time to first text chunk on the same simulator, measured alternately in this process.
- cancel: SIGINT to the main thread (what the stop button does to a kernel) while a 2 s call
  streams; from the signal to the magic's one-line "cancelled".

Figures: load_ext_median_ms, load_ext_share_of_150ms_goal, import_ipython_median_ms,
load_ext_over_ipython_ratio, [jupysql_load_ext_median_ms, jupyter_ai_load_ext_median_ms],
first_token_ms, raw_sdk_first_token_ms, first_token_over_raw_ratio, cold_first_token_ms (the
first cell of a fresh process, SDK import included), cancel_ms, cancel_share_of_500ms_goal.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import print_figures

TASK = "Explain what a Python context manager is and when to write one."
LATENCY_MS = 400.0
SLOW_MS = 2000.0

_LOAD_EXT = """
import time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
t = time.perf_counter()
shell.run_line_magic("load_ext", {name!r})
print((time.perf_counter() - t) * 1000)
"""
_IMPORT_IPYTHON = """
import time
t = time.perf_counter()
import IPython
print((time.perf_counter() - t) * 1000)
"""
_COLD_CELL = """
import time
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "claudeforce_nb")
shell.run_line_magic("config", "AgentMagics.widgets = True")
t = time.perf_counter()
with capture_output():
    shell.run_cell_magic("agent", "python-expert -o r --no-cache", {task!r})
total = (time.perf_counter() - t) * 1000
r = shell.user_ns["r"]
print(total - (r.latency_ms - r.ttft_ms))  # the cell's time less what came after the first token
"""


def _fresh_ms(code: str, env: dict[str, str], cwd: str) -> float:
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                         check=True, timeout=300)
    return float(out.stdout.strip().splitlines()[-1])


def measure_load_ext(repeats: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="cf-bench-ext-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDEFORCE_", "ANTHROPIC_"))}
        env["CLAUDEFORCE_HOME"] = str(Path(tmp) / "home")
        sides: dict[str, str] = {"load_ext": _LOAD_EXT.format(name="claudeforce_nb"),
                                 "import_ipython": _IMPORT_IPYTHON}
        for figure, module, ext in (("jupysql_load_ext", "sql", "sql"),
                                    ("jupyter_ai_load_ext", "jupyter_ai_magics", "jupyter_ai_magics")):
            if importlib.util.find_spec(module) is not None:
                sides[figure] = _LOAD_EXT.format(name=ext)
        times: dict[str, list[float]] = {k: [] for k in sides}
        for i in range(repeats):  # interleaved, order flipped every round: drift hits every side alike
            for name in (list(sides) if i % 2 == 0 else list(reversed(sides))):
                times[name].append(_fresh_ms(sides[name], env, tmp))
        cold = [_fresh_ms(_COLD_CELL.format(task=TASK), {**env, "CLAUDEFORCE_SIM_LATENCY_MS": str(LATENCY_MS)}, tmp)
                for _ in range(max(1, repeats // 3))]
    med = {k: statistics.median(v) for k, v in times.items()}
    figures = {
        "load_ext_median_ms": med["load_ext"],
        "load_ext_share_of_150ms_goal": med["load_ext"] / 150.0,
        "import_ipython_median_ms": med["import_ipython"],
        "load_ext_over_ipython_ratio": med["load_ext"] / med["import_ipython"],
        "cold_first_token_ms": statistics.median(cold),
    }
    figures.update({f"{k}_median_ms": v for k, v in med.items() if k not in ("load_ext", "import_ipython")})
    return figures


@contextlib.contextmanager
def _shell(home: Path) -> Iterator[Any]:
    from IPython.core.interactiveshell import InteractiveShell

    from claudeforce_nb import client
    from claudeforce_nb.config import configure, reset_settings

    reset_settings()
    configure(home=home, backend="simulated")
    client.reset_clients()
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "claudeforce_nb")
    shell.run_line_magic("config", "AgentMagics.widgets = True")
    try:
        yield shell
    finally:
        shell.run_line_magic("unload_ext", "claudeforce_nb")
        reset_settings()
        client.reset_clients()


def _first_update_ms(shell: Any, task: str) -> float:
    """From calling the cell to the first update of its answer widget."""
    import ipywidgets as w
    from IPython.utils.capture import capture_output

    first: list[float] = []

    def watch(widget: Any) -> None:
        if isinstance(widget, w.HTML) and "cf-answer" in widget.value:
            widget.observe(lambda _change: first or first.append(time.perf_counter()), names="value")

    previous = w.Widget._widget_construction_callback
    w.Widget.on_widget_constructed(watch)
    try:
        t0 = time.perf_counter()
        with capture_output():
            shell.run_cell_magic("agent", "python-expert --no-cache", task)
    finally:
        w.Widget._widget_construction_callback = previous
    return (first[0] - t0) * 1000


def _raw_first_chunk_ms(task: str) -> float:
    from claudeforce_nb.client import sync_client

    client = sync_client()
    t0 = time.perf_counter()
    with client.messages.stream(model="claude-sonnet-5-5", max_tokens=1024,
                                messages=[{"role": "user", "content": task}]) as stream:
        for _chunk in stream.text_stream:
            return (time.perf_counter() - t0) * 1000
    raise RuntimeError("the stream produced no text")


def measure_first_token(repeats: int) -> dict[str, float]:
    from claudeforce_nb import client
    from claudeforce_nb.simulator import Simulator, use_simulator

    ours: list[float] = []
    raw: list[float] = []
    with tempfile.TemporaryDirectory(prefix="cf-bench-tok-") as tmp, _shell(Path(tmp)) as shell, \
            use_simulator(Simulator(latency_ms=LATENCY_MS, seed=7, faults="")):
        client.reset_clients()
        _first_update_ms(shell, "warm up the SDK and the widgets")
        for i in range(repeats):
            task = f"{TASK} (variant {i})"
            for side in ("ours", "raw") if i % 2 == 0 else ("raw", "ours"):
                if side == "ours":
                    ours.append(_first_update_ms(shell, task))
                else:
                    raw.append(_raw_first_chunk_ms(task))
    return {"first_token_ms": statistics.median(ours), "raw_sdk_first_token_ms": statistics.median(raw),
            "first_token_over_raw_ratio": statistics.median(ours) / statistics.median(raw)}


def measure_cancel(repeats: int) -> dict[str, float]:
    from IPython.core.error import UsageError
    from IPython.utils.capture import capture_output

    from claudeforce_nb import client
    from claudeforce_nb.simulator import Simulator, use_simulator

    samples: list[float] = []
    main = threading.main_thread().ident or 0
    with tempfile.TemporaryDirectory(prefix="cf-bench-cancel-") as tmp, _shell(Path(tmp)) as shell:
        for i in range(repeats):
            sim = Simulator(latency_ms=SLOW_MS, seed=i, faults="")
            sent: list[float] = []

            def interrupt(sim: Simulator = sim, sent: list[float] = sent) -> None:
                while not sim.history:
                    time.sleep(0.002)
                time.sleep(0.3)  # mid-stream: the first token arrives at 600 ms
                sent.append(time.perf_counter())
                signal.pthread_kill(main, signal.SIGINT)

            with use_simulator(sim):
                client.reset_clients()
                thread = threading.Thread(target=interrupt, daemon=True)
                thread.start()
                try:
                    with capture_output():
                        shell.run_cell_magic("agent", "python-expert --no-cache", TASK)
                except UsageError as exc:
                    if getattr(exc, "error_type", None) != "cancelled":
                        raise
                    samples.append((time.perf_counter() - sent[0]) * 1000)
                thread.join()
    cancel = statistics.median(samples)
    return {"cancel_ms": cancel, "cancel_share_of_500ms_goal": cancel / 500.0}


def run(quick: bool = False) -> dict[str, float]:
    figures = measure_load_ext(3 if quick else 7)
    figures.update(measure_first_token(3 if quick else 9))
    figures.update(measure_cancel(3 if quick else 5))
    return figures


def main() -> None:
    figures = run(quick="--quick" in sys.argv)
    print_figures("load_ext", figures)
    if "--json" in sys.argv:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
