"""Demo material: synthetic metrics, and the `make demo` tour.

`synthetic_metrics`: a realistic-looking call history without calling any model, so the
analytics, plots and dashboard have something to show on a fresh machine. Rows have the
metrics-log schema and are marked `backend="synthetic"` (and session "synthetic"), so they can
never be mistaken for real spend. Costs are computed from the real price table with the same
formula as live calls; everything else is drawn from seeded distributions: model mix ~60% haiku /
33% sonnet / 7% opus, log-normal latency per model (time to first token plus output tokens at a
per-model speed), log-normal token counts, prompt-cache reads and writes, ~2.5% failures, ~8%
response-cache hits, ~20% of calls inside three-step workflows.

`run_demo` (`python -m claudeforce_nb demo`): executes `notebooks/01-quickstart.ipynb` headless
in a Jupyter kernel on the simulator, writes it as HTML with the dashboards of its calls and of
synthetic traffic, and prints a one-screen summary. `execute_notebook` and `notebook_env` are the
same clean run that nbval and `notebooks/refresh.py` use: a fresh home, no key, the simulator.
The notebook tour needs the repository checkout and the `[dev]` extra (nbclient, nbconvert);
`run_demo` says so in one line when either is missing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["NotebookFailed", "NotebookRun", "execute_notebook", "find_notebook", "notebook_env", "run_demo",
           "synthetic_metrics"]

AGENTS = (
    "python-expert", "code-reviewer", "api-designer", "bug-investigator", "security-auditor",
    "test-engineer", "data-analyst", "data-engineer", "sql-expert", "database-architect",
    "ml-engineer", "visualization-expert", "statistician", "prompt-engineer", "documentation-writer",
    "devops-engineer", "performance-optimizer", "frontend-developer", "refactoring-expert", "teaching-assistant",
)
TIER_SHARE = {"haiku": 0.60, "sonnet": 0.33, "opus": 0.07}
# per tier: (median TTFT ms, output tokens per second, median input tokens, median output tokens)
_SHAPE = {
    "haiku": (350.0, 200.0, 900.0, 300.0),
    "sonnet": (700.0, 110.0, 1400.0, 450.0),
    "opus": (1300.0, 70.0, 2200.0, 600.0),
}
_ERRORS = ("rate_limit", "overloaded", "server_error", "timeout")
_STEPS = ("analyse", "draft", "review")


def synthetic_metrics(n: int = 5000, seed: int = 0, days: float = 14, *, end: datetime | None = None,
                      write: bool = False) -> pd.DataFrame:
    """`n` synthetic calls spread over the `days` before `end` (default: now), as the DataFrame
    `cf.metrics()` would return. The same (n, seed, days, end) always gives the same rows.
    `write=True` also appends them to the metrics log, so `cf.metrics()` and `cf.dashboard()` see them."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from .config import get_settings
    from .pricing import get_pricing
    from .store.metrics import frame_from_table, schema

    if n < 0:
        from .errors import UsageError

        raise UsageError(f"n must be zero or more, got {n}.")
    rng = np.random.default_rng(seed)
    s = get_settings()
    end = end or datetime.now(timezone.utc).replace(microsecond=0)
    end_us = int(end.timestamp() * 1_000_000)
    span_us = int(days * 86_400 * 1_000_000)
    ts = np.sort(rng.integers(end_us - span_us, end_us, size=n, dtype=np.int64))

    tiers = np.array(list(TIER_SHARE))
    tier_idx = rng.choice(len(tiers), size=n, p=list(TIER_SHARE.values()))
    models = [s.tier_model(t) for t in tiers]
    weights = 1.0 / np.arange(1, len(AGENTS) + 1) ** 0.9  # a few agents do most of the work
    agent_idx = rng.choice(len(AGENTS), size=n, p=weights / weights.sum())

    shape = np.array([_SHAPE[t] for t in tiers])[tier_idx]
    ttft_med, speed, in_med, out_med = shape.T
    input_tokens = np.maximum(1, rng.lognormal(np.log(in_med), 0.6)).astype(np.int64)
    output_tokens = np.maximum(1, rng.lognormal(np.log(out_med), 0.7)).astype(np.int64)
    prompt_cached = rng.random(n) < 0.45  # the system prompt was read from the prompt cache
    system_tokens = rng.integers(1024, 3000, size=n)
    cache_read = np.where(prompt_cached, system_tokens, 0).astype(np.int64)
    cache_write = np.where(~prompt_cached & (rng.random(n) < 0.25), system_tokens, 0).astype(np.int64)
    ttft = rng.lognormal(np.log(ttft_med), 0.35)
    latency = ttft + output_tokens / speed * 1000 * rng.lognormal(0.0, 0.15, size=n)

    failed = rng.random(n) < 0.025
    cached = ~failed & (rng.random(n) < 0.08)
    error_idx = rng.integers(0, len(_ERRORS), size=n)
    attempts = np.where(failed, 3, 1 + (rng.random(n) < 0.04)).astype(np.int64)  # failures exhausted 2 retries
    attempts[cached] = 0
    for arr in (input_tokens, output_tokens, cache_read, cache_write):
        arr[failed] = 0
    latency = np.where(failed, rng.uniform(1_000, 12_000, size=n), latency)
    latency = np.where(cached, rng.uniform(1.0, 8.0, size=n), latency)
    ttft = np.where(failed, np.nan, np.where(cached, latency, ttft))

    pricing = get_pricing()

    def price(per_million: Any) -> Any:
        # the formula of Pricing.cost: tokens of each kind times USD per million tokens
        return (input_tokens * per_million[..., 0] + output_tokens * per_million[..., 1]
                + cache_read * per_million[..., 2] + cache_write * per_million[..., 3]) / 1_000_000

    def rates(model_id: str) -> list[float]:
        p = pricing.price(model_id)
        if p is None:
            return [np.nan] * 4
        return [p.input, p.output, p.cache_read, p.cache_write_5m]

    cost = np.where(cached, 0.0, price(np.array([rates(m) for m in models])[tier_idx]))  # a cache hit is free
    baseline = np.where(failed, 0.0, price(np.array(rates(s.baseline_model))))

    in_workflow = (rng.random(n // 3 + 1) < 0.2)[np.arange(n) // 3]  # three consecutive calls form a run
    run_no = pc.cast(pa.array(np.arange(n) // 3), pa.string())
    workflow_id = pc.if_else(pa.array(in_workflow),
                             pc.binary_join_element_wise(f"wf-{seed:x}-", pc.utf8_lpad(run_no, 6, "0"), ""), None)
    step_id = _categorical(np.arange(n) % 3, _STEPS, ~in_workflow)
    task_hash = pa.array(np.frombuffer(rng.bytes(8 * n).hex().encode(), dtype="S16")).cast(pa.string())

    data = {
        "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "agent_name": _categorical(agent_idx, AGENTS), "task_hash": task_hash, "success": ~failed,
        "execution_time_ms": np.round(latency, 3), "ttft_ms": np.round(ttft, 3),
        "model": _categorical(tier_idx, models), "tier": _categorical(tier_idx, tiers.tolist()),
        "input_tokens": input_tokens, "output_tokens": output_tokens,
        "cache_read_tokens": cache_read, "cache_write_tokens": cache_write,
        "total_tokens": input_tokens + output_tokens + cache_read + cache_write,
        "estimated_cost": cost, "baseline_cost": baseline, "cached": cached,
        "backend": _categorical(np.zeros(n, dtype=np.int64), ["synthetic"]), "workflow_id": workflow_id,
        "step_id": step_id, "error_type": _categorical(error_idx, _ERRORS, ~failed), "attempts": attempts,
        "session_id": _categorical(np.zeros(n, dtype=np.int64), ["synthetic"]),
        "request_id": None, "batch": np.zeros(n, dtype=bool), "task": None, "response": None,
    }
    sch = schema()
    arrays = [_column(data.get(f.name), f.type, n) for f in sch]
    table = pa.Table.from_arrays(arrays, names=sch.names)
    if write:
        from .store.metrics import MetricsLog, metrics_dir

        MetricsLog(metrics_dir(s.home) / "executions.jsonl").append_table(table)
    return frame_from_table(table)


def _column(value: Any, type_: Any, n: int) -> Any:
    import pyarrow as pa

    if value is None:
        return pa.nulls(n, type_)
    if isinstance(value, pa.Array):
        return value.cast(type_) if not pa.types.is_dictionary(value.type) else value
    return pa.array(value, type_, from_pandas=True)


def _categorical(index: Any, values: Sequence[str], missing: Any = None) -> Any:
    """A dictionary-encoded string column (`missing`: mask of null rows)."""
    import pyarrow as pa

    indices = pa.array(index.astype("int32"), mask=missing)
    return pa.DictionaryArray.from_arrays(indices, pa.array(list(values), pa.string()))


# --------------------------------------------------------------------------- the `make demo` tour

QUICKSTART = "01-quickstart.ipynb"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class NotebookFailed(RuntimeError):
    """A notebook cell raised an error it was not tagged to raise (a bug, not a user mistake)."""


@dataclass(frozen=True)
class NotebookRun:
    path: Path
    notebook: Any  # the executed nbformat NotebookNode, outputs and widget state included
    cells: int  # code cells run
    expected_errors: int  # of which tagged `raises-exception` (they fail on purpose)
    seconds: float


def find_notebook(name: str = QUICKSTART) -> Path | None:
    """A shipped notebook in the repository checkout this package runs from (an editable install)
    or in ./notebooks; None otherwise (a wheel does not carry the notebooks)."""
    for root in (Path(__file__).resolve().parent.parent, Path.cwd()):
        path = root / "notebooks" / name
        if path.is_file():
            return path
    return None


def notebook_env(home: str | Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a kernel that runs a notebook reproducibly: `environ` (default: this
    process's) without any ANTHROPIC_* or CLAUDEFORCE_* variable, so no key reaches the kernel and
    the simulator answers, with CLAUDEFORCE_HOME set to `home` (use a fresh one: no answer from an
    earlier run's cache)."""
    env = {k: v for k, v in (os.environ if environ is None else environ).items()
           if not k.startswith(("ANTHROPIC_", "CLAUDEFORCE_"))}
    env["CLAUDEFORCE_HOME"] = str(home)
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # silences a debugger warning at kernel start
    return env


def execute_notebook(path: str | Path, home: str | Path, *, sim_speed: float | None = None, timeout: float = 300,
                     kernel_log: Path | None = None) -> NotebookRun:
    """Run every cell of the notebook at `path` in a fresh kernel of this Python (cwd: the
    notebook's folder; environment: `notebook_env(home)`, plus CLAUDEFORCE_SIM_SPEED when given).
    Raises NotebookFailed for a cell that errs without the `raises-exception` tag."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    class ThisPython(KernelSpecManager):  # whatever kernels are installed, run this interpreter
        def get_kernel_spec(self, kernel_name: str) -> Any:
            import ipykernel.kernelspec

            return self.kernel_spec_class(resource_dir=ipykernel.kernelspec.RESOURCES,
                                          **ipykernel.kernelspec.get_kernel_dict())

    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    env = notebook_env(home)
    if sim_speed is not None:
        env["CLAUDEFORCE_SIM_SPEED"] = str(sim_speed)
    km = KernelManager(kernel_name="python3", kernel_spec_manager=ThisPython())
    client = NotebookClient(nb, km=km, timeout=int(timeout), allow_errors=False,
                            resources={"metadata": {"path": str(path.parent)}})
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    start = time.perf_counter()
    with open(kernel_log if kernel_log is not None else os.devnull, "wb") as log:
        try:
            client.execute(env=env, stderr=log, cleanup_kc=True)  # our km: nbclient would leave it running
        except CellExecutionError as exc:
            failed = next((i for i, c in enumerate(code_cells, 1)
                           if any(o.get("output_type") == "error" for o in c.get("outputs", ()))), None)
            where = f"code cell {failed} of {len(code_cells)}" if failed else "a cell"
            reason = f"{exc.ename}: {exc.evalue}" if exc.ename else str(exc).strip()
            raise NotebookFailed(f"{path.name}: {where} failed: {reason.splitlines()[0]}") from None
    expected = sum("raises-exception" in c.metadata.get("tags", ()) for c in code_cells)
    return NotebookRun(path, nb, len(code_cells), expected, time.perf_counter() - start)


def _static_copy(nb: Any) -> Any:
    """The notebook for a page without a Jupyter frontend: each widget shows its saved HTML
    fallback (no widget scripts from a CDN), and the blanked live displays are dropped."""
    import copy

    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        outputs = []
        for out in cell.get("outputs", ()):
            data = out.get("data")
            if data is not None:
                data.pop(WIDGET_MIME, None)
                if not any(v for v in data.values()):
                    continue
            outputs.append(out)
        if cell.cell_type == "code":
            cell.outputs = outputs
    return nb


def _summary(df: pd.DataFrame, baseline_model: str) -> list[str]:
    wa = max([len("agent"), *(len(str(a)) for a in df["agent_name"])])
    wm = max([len("model"), *(len(str(m)) for m in df["model"])])
    lines = [f"{'agent':<{wa}}  {'model':<{wm}}  {'tier':<6} {'in':>6} {'out':>6} {'cost':>10}  cached"]
    for r in df.itertuples():
        cost = "n/a" if r.estimated_cost != r.estimated_cost else f"${r.estimated_cost:.6f}"
        lines.append(f"{r.agent_name:<{wa}}  {r.model:<{wm}}  {r.tier or '':<6} {r.input_tokens:>6} "
                     f"{r.output_tokens:>6} {cost:>10}  {'yes' if r.cached else ''}".rstrip())
    spent, base = float(df["estimated_cost"].sum()), float(df["baseline_cost"].sum())
    saved = f" ({1 - spent / base:.0%} saved)" if base > 0 else ""
    lines.append(f"{len(df)} calls · ${spent:.4f} · the same calls on {baseline_model} only: ${base:.4f}{saved} · "
                 f"{int(df['cached'].sum())} from the response cache")
    return lines


def _shown(path: Path) -> str:
    """`path` relative to the working folder when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def run_demo(out_dir: str | Path = "demo", notebook: str | Path | None = None, *, synthetic_calls: int = 5000) -> int:
    """`python -m claudeforce_nb demo`: run the quickstart notebook headless and write
    `out_dir/quickstart.html`, `dashboard.html` (its calls) and `dashboard-synthetic.html`."""
    from .analytics.dashboard import dashboard
    from .config import Settings
    from .errors import UsageError
    from .store.metrics import load_metrics, metrics_dir

    started = time.perf_counter()
    path = Path(notebook) if notebook is not None else find_notebook()
    if path is None:
        raise UsageError(f"notebooks/{QUICKSTART} was not found: the notebook tour needs the repository checkout.",
                         hint="Run it from the repository (make demo), pass --notebook PATH, or use --text for the "
                              "terminal tour.")
    if not path.is_file():
        raise UsageError(f"No notebook at {path}.", hint=f"Check the path (the repository has notebooks/{QUICKSTART}).")
    try:
        import nbclient  # noqa: F401
        import nbconvert  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"The notebook tour needs nbclient and nbconvert ({exc.name} is missing).",
                         hint="pip install 'claudeforce_nb[dev]', or use --text for the terminal tour.") from None
    from nbconvert import HTMLExporter

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    print(f"claudeforce_nb demo: running {_shown(path)} headless on the offline Claude simulator "
          "(no API key is used)…", flush=True)
    home = Path(tempfile.mkdtemp(prefix="claudeforce-demo-"))
    log = out / "kernel.log"
    try:
        run = execute_notebook(path, home, kernel_log=log)
        calls = load_metrics(metrics_dir(home) / "executions.jsonl", cache=False)
    except NotebookFailed as exc:
        raise NotebookFailed(f"{exc} (the kernel's own log: {log})") from None
    finally:
        shutil.rmtree(home, ignore_errors=True)
    log.unlink(missing_ok=True)
    page, _ = HTMLExporter(template_name="lab").from_notebook_node(_static_copy(run.notebook))
    files = {"quickstart.html": "the notebook with its answers (open it in a browser)"}
    (out / "quickstart.html").write_text(page, encoding="utf-8")
    dashboard(calls, days=None).save_html(out / "dashboard.html")
    files["dashboard.html"] = f"dashboard of these {len(calls)} calls"
    dashboard(synthetic_metrics(synthetic_calls, seed=0)).save_html(out / "dashboard-synthetic.html")
    files["dashboard-synthetic.html"] = f"dashboard of two weeks of synthetic traffic ({synthetic_calls:,} calls)"

    n = run.expected_errors
    on_purpose = f" · {n} error{'s' if n != 1 else ''} shown on purpose" if n else ""
    print(f"\n{run.cells} cells run in {run.seconds:.1f} s{on_purpose}\n")
    for line in _summary(calls, Settings().baseline_model):  # the kernel ran without CLAUDEFORCE_* settings
        print("  " + line)
    print()
    width = max(len(_shown(out / name)) for name in files)
    for name, what in files.items():
        print(f"  {_shown(out / name):<{width}}  {what}")
    print(f"\ndone in {time.perf_counter() - started:.1f} s")
    return 0
