"""Routing, agent selection and progressive skills: how right they are, and how fast.

Quality, on the labelled sets in tests/data/ (`dev` splits were used for tuning; every other split
was written before tuning and is reported as held-out):
- router: tier accuracy per split and over the held-out splits, haiku↔opus swaps (all splits),
  and the share of the always-sonnet cost that routing saves on the held-out tasks;
- selector: top-1 / top-3 agent choice per split and over the held-out splits, hybrid (the
  embedding model loaded) and lexical (BM25 only, what answers without the `[semantic]` extra);
- skills: recall of the labelled skills and the share of the declared skill text (tokens) not
  sent, with the model loaded and with triggers alone (a process that never loaded it).

Speed:
- warm `select_agent` p50 against a bare `model.encode` of the same task text, alternating in this
  process (select_vs_encode_ratio: what selection adds on top of the one unavoidable encode);
  lexical selection, `select_skills` (alone, and right after selecting the agent for the same
  task, as in `%agent --auto`) and `route` p50 beside it;
- first use, in fresh processes: the first `select_agent` in a new CLAUDEFORCE_HOME (model load and
  every agent text encoded), in a home whose vector cache an earlier session wrote (model load
  only), and after `warm_up()` has finished in the background; how long `warm_up()` itself blocks,
  how long background loading takes, and how fast `select_agent(wait=False)` answers meanwhile.

Figures: see `run()`; `*_ratio` figures are lower-is-better and measured side by side.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import print_figures
from .overhead import _environment

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
FIRST_USE_TASK = "Write a SQL query with a window function that ranks customers by revenue."

_FIRST_USE = r"""
import json, sys, time
import claudeforce_nb as cf

task, mode = sys.argv[1], sys.argv[2]
out = {}
if mode == "warm_up":
    t0 = time.perf_counter()
    future = cf.warm_up()
    out["warm_up_call_ms"] = (time.perf_counter() - t0) * 1000
    t = time.perf_counter()
    out["nowait_method"] = cf.select_agent(task, wait=False)[0].method
    out["nowait_ms"] = (time.perf_counter() - t) * 1000
    if not future.result():
        raise SystemExit("warm-up did not make semantic selection ready")
    out["ready_s"] = time.perf_counter() - t0
t = time.perf_counter()
out["method"] = cf.select_agent(task)[0].method
out["first_select_s"] = time.perf_counter() - t
print(json.dumps(out))
"""


def _load(name: str) -> list[dict[str, Any]]:
    path = DATA / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _by_split(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        out[r["split"]].append(r)
    out["held_out"] = [r for r in rows if r["split"] != "dev"]
    return dict(out)


def router_figures() -> dict[str, float]:
    import claudeforce_nb as cf

    figures: dict[str, float] = {}
    rows = _load("routing")
    for split, part in _by_split(rows).items():
        figures[f"router_accuracy_{split}"] = cf.evaluate_router(part).accuracy
    held_out = cf.evaluate_router(_by_split(rows)["held_out"])
    figures["router_saved_vs_sonnet_held_out"] = held_out.saved_vs_sonnet
    figures["router_haiku_opus_swaps"] = float(cf.evaluate_router(rows).haiku_opus_swaps)
    return figures


def selector_figures(prefix: str) -> dict[str, float]:
    import claudeforce_nb as cf

    figures: dict[str, float] = {}
    for split, part in _by_split(_load("selection")).items():
        result = cf.evaluate_selector(part, k=3)
        figures[f"{prefix}_top1_{split}"] = result.top1
        figures[f"{prefix}_top3_{split}"] = result.top3
    return figures


def skills_figures(prefix: str) -> dict[str, float]:
    import claudeforce_nb as cf
    from claudeforce_nb.definitions import library
    from claudeforce_nb.simulator.text import count_tokens

    lib = library()
    tokens = {s.name: count_tokens(f"## Skill: {s.name}\n\n{s.body.strip()}") for s in lib.skills()}
    figures: dict[str, float] = {}
    for split, part in _by_split(_load("skills")).items():
        wanted = found = declared = sent = 0
        for r in part:
            chosen = set(cf.select_skills(r["agent"], r["task"]))
            labels = set(r["skills"])
            wanted += len(labels)
            found += len(labels & chosen)
            declared += sum(tokens[s] for s in lib.agent(r["agent"]).skills)
            sent += sum(tokens[s] for s in chosen)
        figures[f"{prefix}_recall_{split}"] = found / wanted
        figures[f"{prefix}_text_not_sent_{split}"] = 1 - sent / declared
    return figures


def _p50_ms(fn: Callable[[], Any], n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def speed_figures(quick: bool) -> dict[str, float]:
    """Each timed task text is new to the process (a numbered variant of a held-out task), so
    no call is answered from the remembered vector of an earlier one."""
    import claudeforce_nb as cf
    from claudeforce_nb.config import configure
    from claudeforce_nb.core import embeddings
    from claudeforce_nb.core.selection import prose

    tasks = [r["task"] for r in _load("selection") if r["split"] != "dev"]
    if quick:
        tasks = tasks[::4]
    model = embeddings.model()

    def encode(task: str) -> None:
        model.encode([prose(task)], normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True)

    for i, task in enumerate(tasks[:10]):  # first-use caches on both sides
        cf.select_agent(f"{task} (warm-up {i})")
        encode(f"{task} (warm-up {i})")
    ours: list[float] = []
    bare: list[float] = []
    skills_after: list[float] = []
    for i, task in enumerate(tasks):
        text = f"{task} (case {i})"
        pair = [(ours, lambda t=text: cf.select_agent(t)), (bare, lambda t=text + " bare": encode(t))]
        for times, fn in pair if i % 2 == 0 else pair[::-1]:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        agent = cf.select_agent(text, k=1)[0].agent
        t0 = time.perf_counter()
        cf.select_skills(agent, text)  # what run_agent does next in `%agent --auto`
        skills_after.append((time.perf_counter() - t0) * 1000)
    skill_rows = _load("skills")[:: 4 if quick else 1]
    skills_alone = []
    for i, r in enumerate(skill_rows):
        t0 = time.perf_counter()
        cf.select_skills(r["agent"], f"{r['task']} (case {i})")
        skills_alone.append((time.perf_counter() - t0) * 1000)
    figures = {
        "warm_select_p50_ms": statistics.median(ours),
        "encode_p50_ms": statistics.median(bare),
        "select_vs_encode_ratio": statistics.median(ours) / statistics.median(bare),
        "select_skills_p50_ms": statistics.median(skills_alone),
        "select_skills_after_select_p50_ms": statistics.median(skills_after),
        "route_p50_ms": statistics.median(_p50_ms(lambda t=t: cf.route(t), 3) for t in tasks),
    }
    configure(selector="lexical")
    figures["lexical_select_p50_ms"] = statistics.median(_p50_ms(lambda t=t: cf.select_agent(t), 3) for t in tasks)
    configure(selector="auto")
    return figures


def in_process(quick: bool) -> dict[str, float]:
    """Quality and warm speed in this process, in a throw-away home."""
    import claudeforce_nb as cf
    from claudeforce_nb import client as cf_client
    from claudeforce_nb.config import configure, reset_settings
    from claudeforce_nb.core import embeddings

    if not embeddings.available():
        raise RuntimeError("the selection benchmark needs the [semantic] extra: "
                           "pip install 'claudeforce_nb[semantic]'")
    with tempfile.TemporaryDirectory(prefix="cf-bench-sel-") as tmp, _environment(
        CLAUDEFORCE_HOME=str(Path(tmp) / "home"), CLAUDEFORCE_SELECTOR=None, CLAUDEFORCE_SKILLS_MODE=None,
        CLAUDEFORCE_DEFAULT_MODEL=None,
    ):
        reset_settings()
        try:
            figures = router_figures()
            # Before the model is loaded, skills are matched on their triggers alone (as in a
            # session that never selected an agent semantically). Once loaded, it cannot be undone.
            if not embeddings.is_loaded():
                figures.update(skills_figures("skills_triggers_only"))
            configure(selector="lexical")
            figures.update(selector_figures("lexical"))
            configure(selector="auto")
            if not cf.warm_up(background=False).result():
                raise RuntimeError("the embedding model could not be loaded")
            figures.update(selector_figures("selector"))
            figures.update(skills_figures("skills"))
            figures.update(speed_figures(quick))
        finally:
            reset_settings()
            cf_client.reset_clients()
    return figures


def _child(home: Path, mode: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDEFORCE_", "ANTHROPIC_"))}
    env["CLAUDEFORCE_HOME"] = str(home)
    out = subprocess.run([sys.executable, "-c", _FIRST_USE, FIRST_USE_TASK, mode], env=env, cwd=home.parent,
                         capture_output=True, text=True, timeout=600, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if result["method"] != "hybrid":
        raise RuntimeError(f"first use answered with {result['method']}, not the embedding model")
    return result


def first_use(repeats: int) -> dict[str, float]:
    """Fresh processes. Each repeat: a new home (cold: nothing cached), then that home again with
    its vector cache written, without and with warm-up (alternating which goes first)."""
    cold: list[float] = []
    plain: list[dict[str, Any]] = []
    warmed: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cf-bench-first-") as tmp:
        for i in range(repeats):
            home = Path(tmp) / f"home{i}"
            home.mkdir()
            cold.append(_child(home, "plain")["first_select_s"])
            runs = [("plain", plain), ("warm_up", warmed)]
            for mode, sink in runs if i % 2 == 0 else runs[::-1]:
                sink.append(_child(home, mode))
    return {
        "first_use_cold_home_s": statistics.median(cold),
        "first_use_no_warm_up_s": statistics.median(r["first_select_s"] for r in plain),
        "first_use_after_warm_up_ms": statistics.median(r["first_select_s"] * 1000 for r in warmed),
        "warm_up_call_ms": statistics.median(r["warm_up_call_ms"] for r in warmed),
        "warm_up_ready_s": statistics.median(r["ready_s"] for r in warmed),
        "first_use_nowait_ms": statistics.median(r["nowait_ms"] for r in warmed),
    }


def run(quick: bool = False) -> dict[str, float]:
    figures = first_use(1 if quick else 3)
    figures.update(in_process(quick))
    return figures


if __name__ == "__main__":
    print_figures("selection", run(quick="--quick" in sys.argv))
