"""Reliability: how many calls survive API faults, whether every call leaves exactly one metrics
row, and how fast an interrupt stops a call.

- fault_success_share: 200 distinct calls (`arun_agent`, cache off) at concurrency 20 on a simulator
  answering 10% of requests 429, 5% 529 and 5% 500 (`CLAUDEFORCE_SIM_FAULTS=429:0.1,529:0.05,500:0.05`,
  20 ms per answer); the SDK's retries (max_retries 2, honouring retry-after-ms) and the circuit
  breaker stay at their defaults. Goal >= 0.97.
- fault_failure_ratio: 1 - fault_success_share (lower is better).
- rows_recorded: metrics rows those 200 calls wrote (exactly 200).
- fault_attempts_per_call: HTTP attempts per call, retries included.
- circuit_open_calls: calls the breaker refused during the run.
- multiprocess_rows_recorded: rows after 4 processes each made 250 `run_agent` calls into one home
  (exactly 1000; skipped with --quick).
- interrupt_delay_ms: from a SIGINT sent while a 1 s call is in flight to KeyboardInterrupt in the
  caller (the call is recorded as cancelled).

Run alone: `python -m benchmarks.reliability [--quick]`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

FAULTS = "429:0.1,529:0.05,500:0.05"
CALLS, CONCURRENCY = 200, 20
REPO = Path(__file__).resolve().parent.parent

WRITER = """
import sys
from claudeforce_nb.core.orchestrator import run_agent
for i in range(250):
    run_agent("python-expert", f"process {sys.argv[1]} call {i}: explain list comprehensions", cache=False)
"""


def _under_faults(home: Path) -> dict[str, float]:
    from claudeforce_nb.client import reset_clients
    from claudeforce_nb.core.orchestrator import arun_agent
    from claudeforce_nb.simulator import Simulator, use_simulator
    from claudeforce_nb.store.metrics import load_metrics

    async def main() -> list[object]:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int) -> object:
            async with gate:
                return await arun_agent("python-expert", f"Explain what line {i} of the report means.", cache=False)

        return await asyncio.gather(*(one(i) for i in range(CALLS)))

    with use_simulator(Simulator(faults=FAULTS, latency_ms=20, speed=0.01, seed=8)):
        reset_clients()
        results = asyncio.run(main())
    reset_clients()
    ok = sum(bool(getattr(r, "success", False)) for r in results)
    df = load_metrics(home / "metrics" / "executions.jsonl")
    share = ok / CALLS
    return {
        "fault_success_share": share,
        "fault_failure_ratio": 1 - share,
        "rows_recorded": float(len(df)),
        "fault_attempts_per_call": float(df["attempts"].sum()) / CALLS,
        "circuit_open_calls": float((df["error_type"].astype(str) == "circuit_open").sum()),
    }


def _multiprocess(home: Path) -> float:
    from claudeforce_nb.store.metrics import load_metrics

    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDEFORCE_", "ANTHROPIC_"))}
    env.update(CLAUDEFORCE_HOME=str(home), CLAUDEFORCE_BACKEND="simulated", CLAUDEFORCE_SIM_SPEED="0",
               PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(p)], env=env, stderr=subprocess.DEVNULL)
             for p in range(4)]
    for p in procs:
        p.wait(timeout=600)
    return float(len(load_metrics(home / "metrics" / "executions.jsonl")))


def _interrupt_delay_ms() -> float:
    """SIGINT (what Jupyter's interrupt sends) while a 1 s call is in flight."""
    from claudeforce_nb.client import reset_clients
    from claudeforce_nb.core.orchestrator import run_agent
    from claudeforce_nb.simulator import Simulator, use_simulator

    if threading.current_thread() is not threading.main_thread():
        return float("nan")  # signals reach the main thread only
    sim = Simulator(latency_ms=1000, seed=8)
    sent: list[float] = []

    def interrupt() -> None:
        while not sim.history:
            time.sleep(0.001)
        time.sleep(0.1)  # well inside the call
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    with use_simulator(sim):
        reset_clients()
        run_agent("python-expert", "warm-up: say hi", cache=False)  # imports and client outside the timing
        sim.history.clear()
        threading.Thread(target=interrupt, daemon=True).start()
        try:
            run_agent("python-expert", "Write a long essay about interrupts.", cache=False)
        except KeyboardInterrupt:
            caught = time.perf_counter()
        else:
            return float("nan")
    reset_clients()
    return (caught - sent[0]) * 1000


def run(quick: bool = False) -> dict[str, float]:
    from claudeforce_nb.config import get_settings, pinned_settings
    from claudeforce_nb.core.resilience import reset_breakers

    figures: dict[str, float] = {}
    reset_breakers()
    with tempfile.TemporaryDirectory(prefix="cf-bench-") as tmp:
        home = Path(tmp)
        with pinned_settings(get_settings().replace(home=home / "faults", backend="simulated", cache=False)):
            figures.update(_under_faults(home / "faults"))
        reset_breakers()
        with pinned_settings(get_settings().replace(home=home / "interrupt", backend="simulated")):
            figures["interrupt_delay_ms"] = _interrupt_delay_ms()
        if not quick:
            figures["multiprocess_rows_recorded"] = _multiprocess(home / "procs")
    return figures


if __name__ == "__main__":
    from . import print_figures

    print_figures("reliability", run(quick="--quick" in sys.argv[1:]))
