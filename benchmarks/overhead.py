"""What `run_agent` adds on top of the raw anthropic SDK, per call.

Both sides talk to the same loopback simulator server (real HTTP, 20 ms per call) in the same run,
alternating A/B/B/A so drift (CPU frequency, other load) hits both equally. Our side is a pinned
copy of python-expert (routing and skill selection still run; the model they pick is fixed),
non-streaming, cache=False; the raw side sends the identical request body. Also measured: a
response-cache hit, and a cold `python -m claudeforce_nb run` in a fresh process against a fresh
`python -c "import anthropic"`.

Figures: overhead_ratio (median ours / median raw; goal <= 1.05), overhead_added_ms (goal <= 1),
cache_hit_p50_ms, cold_cli_run_s, cold_cli_run_ratio.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import print_figures

LATENCY_MS = 20.0
TASK = "Explain what a Python context manager is and when to write one."
PINNED_MODEL = "claude-sonnet-5-5"
BENCH_KEY = "sk-bench-not-a-real-key"  # the loopback simulator accepts any key


@contextlib.contextmanager
def _environment(**values: str | None) -> Iterator[None]:
    """Set (or, with None, remove) environment variables for the block; restore them after."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _pinned_agent(folder: Path) -> None:
    """A copy of the shipped python-expert with its model pinned in the front matter."""
    from claudeforce_nb.definitions import library

    spec = library().agent("python-expert")
    assert spec.path is not None
    text = spec.path.read_text(encoding="utf-8")
    head, sep, rest = text.partition("\n---\n")
    text = head.replace("name: python-expert", "name: pinned-expert", 1) + f"\nmodel: {PINNED_MODEL}" + sep + rest
    (folder / "pinned-expert.md").write_text(text, encoding="utf-8")


def _timed(fn: Any, cpu: list[float] | None = None) -> float:
    """Wall milliseconds of fn(); its CPU milliseconds (this thread only) go to `cpu`."""
    c0, t0 = time.thread_time(), time.perf_counter()
    fn()
    wall = (time.perf_counter() - t0) * 1000.0
    if cpu is not None:
        cpu.append((time.thread_time() - c0) * 1000.0)
    return wall


def measure_overhead(n: int) -> dict[str, float]:
    import anthropic

    from claudeforce_nb import client as cf_client
    from claudeforce_nb.config import configure, reset_settings
    from claudeforce_nb.core.orchestrator import prepare, run_agent
    from claudeforce_nb.simulator import Simulator
    from claudeforce_nb.simulator.server import SimulatorServer

    server = SimulatorServer(Simulator(latency_ms=LATENCY_MS, seed=1)).start()
    try:
        with tempfile.TemporaryDirectory(prefix="cf-bench-") as tmp, _environment(
            ANTHROPIC_API_KEY=BENCH_KEY, ANTHROPIC_BASE_URL=server.url, ANTHROPIC_AUTH_TOKEN=None,
            CLAUDEFORCE_BACKEND="anthropic", CLAUDEFORCE_HOME=str(Path(tmp) / "home"),
            CLAUDEFORCE_SIM_LATENCY_MS=None, CLAUDEFORCE_SIM_SPEED=None, CLAUDEFORCE_SIM_FAULTS=None,
        ):
            reset_settings()
            cf_client.reset_clients()
            agents = Path(tmp) / "agents"
            agents.mkdir()
            _pinned_agent(agents)
            configure(agents_dirs=[agents])
            params = prepare("pinned-expert", TASK, cache=False).params
            raw = anthropic.Anthropic(api_key=BENCH_KEY, base_url=server.url)

            def ours() -> None:
                result = run_agent("pinned-expert", TASK, cache=False)
                if not result.success:
                    raise RuntimeError(f"benchmark call failed: {result.error}")

            def theirs() -> None:
                raw.messages.create(**params)

            for _ in range(10):  # connections, imports, first-use caches
                ours()
                theirs()
            a: list[float] = []
            b: list[float] = []
            a_cpu: list[float] = []
            b_cpu: list[float] = []
            for i in range(n):
                if i % 2 == 0:
                    a.append(_timed(ours, a_cpu))
                    b.append(_timed(theirs, b_cpu))
                else:
                    b.append(_timed(theirs, b_cpu))
                    a.append(_timed(ours, a_cpu))

            run_agent("pinned-expert", TASK)  # fills the response cache
            hits = [_timed(lambda: run_agent("pinned-expert", TASK)) for _ in range(max(50, n // 2))]
            raw.close()
    finally:
        server.stop()
        reset_settings()
        cf_client.reset_clients()
    ours_ms, raw_ms = statistics.median(a), statistics.median(b)
    return {
        "overhead_ratio": ours_ms / raw_ms,
        # median of the paired differences: each pair ran back to back, so slow drift cancels
        "overhead_added_ms": statistics.median(x - y for x, y in zip(a, b, strict=True)),
        "ours_p50_ms": ours_ms,
        "raw_sdk_p50_ms": raw_ms,
        # CPU time of the calling thread: what run_agent really adds, unaffected by other load
        "overhead_cpu_ms": statistics.median(a_cpu) - statistics.median(b_cpu),
        "cache_hit_p50_ms": statistics.median(hits),
    }


def _wall(argv: list[str], env: dict[str, str], cwd: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=300)
    return time.perf_counter() - t0


def measure_cold_cli(repeats: int) -> dict[str, float]:
    """Fresh processes, alternating: our CLI answering one task (each run in a new, empty
    CLAUDEFORCE_HOME, so nothing is cached) vs importing the SDK alone."""
    cli_s: list[float] = []
    import_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="cf-bench-cli-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDEFORCE_", "ANTHROPIC_"))}
        env["CLAUDEFORCE_SIM_SPEED"] = "0"  # the simulated model answers at once: only our cost is left
        cli = [sys.executable, "-m", "claudeforce_nb", "run", "python-expert", TASK]
        baseline = [sys.executable, "-c", "import anthropic"]

        def cli_run(i: int) -> float:
            return _wall(cli, {**env, "CLAUDEFORCE_HOME": str(Path(tmp) / f"home{i}")}, tmp)

        _wall(baseline, env, tmp)  # warm the OS file cache for both
        cli_run(-1)
        for i in range(repeats):
            cli_s.append(cli_run(i))
            import_s.append(_wall(baseline, env, tmp))
    cli_med = statistics.median(cli_s)
    return {"cold_cli_run_s": cli_med, "cold_import_anthropic_s": statistics.median(import_s),
            "cold_cli_run_ratio": cli_med / statistics.median(import_s)}


def run(quick: bool = False) -> dict[str, float]:
    figures = measure_overhead(40 if quick else 200)
    figures.update(measure_cold_cli(1 if quick else 5))
    return figures


if __name__ == "__main__":
    print_figures("overhead", run(quick="--quick" in sys.argv))
