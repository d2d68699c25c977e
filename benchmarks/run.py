"""Run the benchmark modules, write `results/latest.json` and `results/latest.md`, print the table.

    python -m benchmarks.run [--quick] [--only NAME ...] [--check] [--save-baseline]

`--check` compares every `*_ratio` figure (lower is better) with `baseline.json` and exits 1
listing those more than 15% worse. Ratios, not times, are compared: both sides of a ratio are
measured in the same run, so a slower or busier machine does not read as a regression.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import format_value

MODULES = ("overhead", "workflows", "reliability", "batch", "load_ext", "selection", "analytics")
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BASELINE = HERE / "baseline.json"
TOLERANCE = 0.15

Results = dict[str, dict[str, float]]


def collect(names: tuple[str, ...] | list[str], quick: bool) -> tuple[Results, dict[str, str]]:
    """({module: figures}, {module: error}) — a failing module is reported, the others still run."""
    results: Results = {}
    failures: dict[str, str] = {}
    for name in names:
        started = time.perf_counter()
        print(f"[bench] {name} …", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            figures = module.run(quick=quick)
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the rest
            traceback.print_exc()
            failures[name] = f"{type(exc).__name__}: {exc}"
            continue
        results[name] = {k: float(v) for k, v in figures.items()}
        print(f"[bench] {name} done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return results, failures


def metadata(quick: bool) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(terse=True),
        "quick": quick,
        "commit": commit,
    }


def to_markdown(results: Results, meta: dict[str, Any], failures: dict[str, str] | None = None) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"{meta['date']} · Python {meta['python']} · {meta['cpu_count']} CPUs · {meta['platform']}"
        + (" · quick" if meta.get("quick") else "") + (f" · commit {meta['commit']}" if meta.get("commit") else ""),
        "",
        "| module | figure | value |",
        "|---|---|---:|",
    ]
    for module, figures in results.items():
        for key, value in figures.items():
            lines.append(f"| {module} | {key} | {format_value(value)} |")
    for module, error in (failures or {}).items():
        lines.append(f"| {module} | **failed** | {error} |")
    return "\n".join(lines) + "\n"


def regressions(results: Results, baseline: Results, tolerance: float = TOLERANCE) -> list[str]:
    """One line per `*_ratio` figure more than `tolerance` worse (higher) than its baseline."""
    worse = []
    for module, figures in results.items():
        for key, value in figures.items():
            old = baseline.get(module, {}).get(key)
            if not key.endswith("_ratio") or not isinstance(old, int | float) or old <= 0:
                continue
            if value > old * (1 + tolerance):
                worse.append(f"{module}.{key}: {format_value(value)} vs baseline {format_value(old)} "
                             f"(+{(value / old - 1) * 100:.0f}%)")
    return worse


def load_baseline(path: Path | None = None) -> Results:
    path = path or BASELINE
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_") and isinstance(v, dict)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    parser.add_argument("--only", action="append", metavar="NAME", choices=MODULES,
                        help="run only this module (repeatable)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a *_ratio got >15%% worse than baseline")
    parser.add_argument("--save-baseline", action="store_true",
                        help="write this run's figures into baseline.json (merged with the modules not run)")
    args = parser.parse_args(argv)
    names = tuple(args.only) if args.only else MODULES
    results, failures = collect(names, args.quick)
    meta = metadata(args.quick)
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {**results, "_meta": meta}
    if failures:
        payload["_failures"] = failures
    (RESULTS / "latest.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    table = to_markdown(results, meta, failures)
    (RESULTS / "latest.md").write_text(table, encoding="utf-8")
    print(table)
    status = 1 if failures else 0
    if args.save_baseline:
        merged: dict[str, Any] = {**load_baseline(), **results, "_meta": meta}
        BASELINE.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(f"baseline written: {BASELINE}")
    if args.check:
        baseline = load_baseline()
        if not baseline:
            print(f"no baseline at {BASELINE}: run with --save-baseline first", file=sys.stderr)
            return 1
        worse = regressions(results, baseline)
        if worse:
            print("regressions (more than 15% worse than baseline.json):", file=sys.stderr)
            for line in worse:
                print(f"  {line}", file=sys.stderr)
            return 1
        print("check: no *_ratio figure is more than 15% worse than baseline.json")
    return status


if __name__ == "__main__":
    sys.exit(main())
