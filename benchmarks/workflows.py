"""How close workflows run to their critical path, and what parallel execution gains.

Every simulated call takes exactly 200 ms (`Simulator(latency_ms=200)`), the response cache is
off, and metrics go to a throw-away home. Parallel and sequential runs of the same workflow are
measured side by side in one process, so the ratios do not depend on the machine's speed:

- code_quality_wall_over_critical_ratio: wall time / critical path of the shipped code-quality
  workflow (goal <= 1.05; the critical path is measured from the steps' own call latencies).
- code_quality_seq_over_par: sequential wall / parallel wall (higher is better; informational).
- random24_wall_over_ideal_ratio: wall / (4 x 200 ms) for a 24-step DAG of 4 layers, each step
  depending on 1-3 random steps of the layer before (goal <= 1.10).
- random24_seq_over_par: sequential wall / parallel wall for that DAG.

Run alone: `python -m benchmarks.workflows [--quick]`.
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

LATENCY_MS = 200.0
LAYERS, WIDTH = 4, 6
AGENTS = ("python-expert", "code-reviewer", "test-engineer", "data-analyst", "documentation-writer",
          "security-auditor")
CODE = '''def moving_average(values, window):
    out = []
    for i in range(len(values) - window + 1):
        out.append(sum(values[i:i + window]) / window)
    return out
'''


def random24(seed: int = 24) -> dict[str, Any]:
    """4 layers of 6 steps; each step after the first layer depends on 1-3 steps of the previous one."""
    rng = random.Random(seed)
    steps: list[dict[str, Any]] = []
    previous: list[str] = []
    for layer in range(LAYERS):
        current = []
        for i in range(WIDTH):
            sid = f"l{layer}s{i}"
            deps = rng.sample(previous, k=rng.randint(1, 3)) if previous else []
            refs = "".join(f"\n{{{{ steps.{d}.output }}}}" for d in deps)
            steps.append({"id": sid, "agent": AGENTS[(layer + i) % len(AGENTS)], "depends_on": deps,
                          "task": f"Part {i} of stage {layer}: review {{{{ inputs.code }}}}{refs}"})
            current.append(sid)
        previous = current
    return {"name": "random24", "inputs": ["code"], "steps": steps}


def run(quick: bool = False) -> dict[str, float]:
    from claudeforce_nb.config import get_settings, pinned_settings
    from claudeforce_nb.core.workflow import run_workflow
    from claudeforce_nb.simulator import Simulator, use_simulator

    repeats = 1 if quick else 3
    dag = random24()
    walls: dict[str, list[float]] = {}
    ratio_cq: list[float] = []

    def measure(key: str, spec: Any, parallel: bool) -> None:
        result = run_workflow(spec, {"code": CODE}, parallel=parallel, cache=False)
        if not result.success:  # a failed step would make the timing meaningless
            raise RuntimeError(f"benchmark workflow failed: {result!r}")
        walls.setdefault(f"{key}_{'par' if parallel else 'seq'}", []).append(result.wall_ms)
        if parallel and key == "cq":
            ratio_cq.append(result.wall_ms / result.critical_path_ms)

    with tempfile.TemporaryDirectory(prefix="cf-bench-") as home, \
            use_simulator(Simulator(latency_ms=LATENCY_MS, seed=7)), \
            pinned_settings(get_settings().replace(home=Path(home), cache=False, backend="simulated")):
        run_workflow("code-quality", {"code": CODE}, cache=False)  # warm-up: imports, clients, library
        for _ in range(repeats):  # both modes in every round, so drift hits them alike
            for parallel in (True, False):
                measure("cq", "code-quality", parallel)
                measure("r24", dag, parallel)

    def med(key: str) -> float:
        return statistics.median(walls[key])

    return {
        "code_quality_wall_over_critical_ratio": round(statistics.median(ratio_cq), 4),
        "code_quality_seq_over_par": round(med("cq_seq") / med("cq_par"), 3),
        "random24_wall_over_ideal_ratio": round(med("r24_par") / (LAYERS * LATENCY_MS), 4),
        "random24_seq_over_par": round(med("r24_seq") / med("r24_par"), 3),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for name, value in run(quick="--quick" in argv).items():
        print(f"{name}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
