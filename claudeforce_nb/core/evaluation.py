"""Evaluate the router and the agent selector on labelled tasks: the shipped sets or your own
traffic (`cf.evaluate_router(rows)`, `cf.evaluate_selector(rows)`).

Rows are mappings (or a DataFrame, or a .jsonl/.csv path) with `task` and the expected `tier`
(haiku/sonnet/opus or a model id) for the router, or the expected `agent` for the selector; an
`agent` column on router rows applies that agent's pins, exactly as `run_agent` would. Nothing is
sent to any model: costs are estimated from token counts (the task plus the agent's system prompt
as input, a fixed typical answer length as output) at the prices in force.
"""

from __future__ import annotations

import csv
import html
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import TIERS, get_settings
from ..errors import UnknownNameError, UsageError
from ..pricing import Usage, get_pricing, tier_of
from ..render import table_html, table_text

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RouterEvaluation", "SelectorEvaluation", "evaluate_router", "evaluate_selector"]


def _read_file(path: Path) -> list[Any]:
    if not path.is_file():
        raise UsageError(f"No labelled file at {path}.", hint="Pass rows, a DataFrame or a .jsonl/.csv path.")
    try:
        with path.open(encoding="utf-8-sig") as f:  # -sig: spreadsheets start UTF-8 CSV with a byte-order mark
            return _parse_lines(path, f)
    except UnicodeDecodeError:
        raise UsageError(f"{path.name} is not UTF-8.",
                         hint="Save it as UTF-8 (e.g. \"CSV UTF-8\") and try again.") from None


def _parse_lines(path: Path, f: Any) -> list[Any]:
    if path.suffix == ".csv":
        return list(csv.DictReader(f))
    out = []
    for n, line in enumerate(f, start=1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                raise UsageError(f"Line {n} of {path.name} is not JSON.",
                                 hint="Write one JSON object per line (JSON Lines), or use a .csv file.") from None
    return out


def _rows(rows: Any, required: tuple[str, ...]) -> list[dict[str, Any]]:
    if isinstance(rows, str | Path):
        rows = _read_file(Path(rows))
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        out = rows.to_dict("records")
    elif isinstance(rows, Iterable) and not isinstance(rows, str | bytes | Mapping):
        out = list(rows)
        bad = next((i for i, r in enumerate(out) if not isinstance(r, Mapping)), None)
        if bad is not None:
            raise UsageError(f"Row {bad} is a {type(out[bad]).__name__}, not a mapping.",
                             hint=f"Give each row as a dict with {', '.join(required)}.")
        out = [dict(r) for r in out]
    else:
        raise UsageError(f"Cannot evaluate a {type(rows).__name__}.",
                         hint="Pass a list of dicts, a DataFrame or a .jsonl/.csv path.")
    if not out:
        raise UsageError("There are no rows to evaluate.", hint="Give at least one labelled task.")
    for i, row in enumerate(out):
        missing = [k for k in required if not isinstance(row.get(k), str) or not row[k].strip()]
        if missing:
            raise UsageError(f"Row {i} has no {' or '.join(repr(k) for k in missing)}.",
                             hint=f"Every row needs {', '.join(required)}.")
    return out


def _tier(label: str, i: int) -> str:
    label = label.strip().lower()
    tier = label if label in TIERS else tier_of(label)
    if tier is None:
        raise UsageError(f"Row {i} has an unknown tier {label!r}.", hint="Use haiku, sonnet, opus or a model id.")
    return tier


def _table(header: list[str], rows: list[list[str]]) -> tuple[str, str]:
    return table_text(header, rows), table_html(header, rows)


def _money(x: float) -> str:
    return f"${x:,.4f}"


@dataclass(frozen=True)
class RouterEvaluation:
    """Accuracy of `route` against labelled tiers, and what the routing costs."""

    n: int
    accuracy: float
    confusion: pd.DataFrame  # rows: labelled tier, columns: routed tier
    per_tier: dict[str, int]  # labelled tasks per tier
    haiku_opus_swaps: int  # a haiku task sent to opus or an opus task to haiku
    costs: dict[str, float]  # routed, labelled, always haiku / sonnet / opus (USD, estimated)
    mistakes: pd.DataFrame = field(repr=False)  # task, agent, expected, routed, score, reasons
    output_tokens: int = 400

    @property
    def saved_vs_sonnet(self) -> float:
        """Share of the always-sonnet cost that routing saves."""
        base = self.costs["always sonnet"]
        return 1 - self.costs["routed"] / base if base else 0.0

    def _parts(self) -> tuple[str, list[str], list[list[str]], list[str], list[list[str]]]:
        title = (f"Router: {self.accuracy:.1%} of {self.n} tasks on the labelled tier · "
                 f"{self.haiku_opus_swaps} haiku↔opus swaps · {self.saved_vs_sonnet:.0%} cheaper than always-sonnet")
        conf_header = ["labelled \\ routed", *TIERS]
        conf_rows = [[t, *(str(int(self.confusion.loc[t, c])) for c in TIERS)] for t in TIERS]
        cost_header = ["strategy", f"est. cost ({self.output_tokens} output tokens/task)"]
        cost_rows = [[k, _money(v)] for k, v in self.costs.items()]
        return title, conf_header, conf_rows, cost_header, cost_rows

    def __repr__(self) -> str:
        title, ch, cr, kh, kr = self._parts()
        return f"{title}\n\n{table_text(ch, cr)}\n\n{table_text(kh, kr)}"

    def _repr_html_(self) -> str:
        title, ch, cr, kh, kr = self._parts()
        return (f"<div class='cf-eval'><b>{html.escape(title)}</b>{table_html(ch, cr)}{table_html(kh, kr)}"
                f"<div style='color:#666;font-size:12px'>{len(self.mistakes)} mistakes in <code>.mistakes</code></div>"
                "</div>")


def evaluate_router(rows: Iterable[Mapping[str, Any]] | pd.DataFrame | str | Path, *,
                    output_tokens: int = 400) -> RouterEvaluation:
    """Route every labelled task and compare: accuracy, confusion matrix, haiku↔opus swaps, and
    the estimated cost of the routed models against always-haiku/sonnet/opus."""
    import pandas as pd

    from ..definitions import library
    from ..simulator.text import count_tokens
    from .routing import route

    if not isinstance(output_tokens, int) or isinstance(output_tokens, bool) or output_tokens < 0:
        raise UsageError(f"output_tokens must be a whole number >= 0, got {output_tokens!r}.",
                         hint="It is the typical answer length used to estimate costs, e.g. 400.")
    data = _rows(rows, ("task", "tier"))
    s = get_settings()
    pricing = get_pricing()
    lib = library()
    confusion = pd.DataFrame(0, index=list(TIERS), columns=list(TIERS))
    costs = dict.fromkeys(["routed", "labelled", "always haiku", "always sonnet", "always opus"], 0.0)
    mistakes: list[dict[str, Any]] = []
    for i, row in enumerate(data):
        expected = _tier(row["tier"], i)
        agent = row["agent"].strip() if isinstance(row.get("agent"), str) and row["agent"].strip() else None
        spec = lib.agent(agent) if agent else None
        r = route(row["task"], spec)
        confusion.loc[expected, r.tier] += 1
        usage = Usage(input_tokens=count_tokens(row["task"]) + (count_tokens(spec.body) if spec else 0),
                      output_tokens=output_tokens)
        costs["routed"] += pricing.cost(r.model, usage) or 0.0
        costs["labelled"] += pricing.cost(s.tier_model(expected), usage) or 0.0
        for tier in TIERS:
            costs[f"always {tier}"] += pricing.cost(s.tier_model(tier), usage) or 0.0
        if r.tier != expected:
            mistakes.append({"task": row["task"], "agent": agent, "expected": expected, "routed": r.tier,
                             "score": r.score, "reasons": "; ".join(r.reasons)})
    confusion.index.name, confusion.columns.name = "labelled", "routed"
    n = len(data)
    correct = sum(int(confusion.loc[t, t]) for t in TIERS)
    swaps = int(confusion.loc["haiku", "opus"] + confusion.loc["opus", "haiku"])
    return RouterEvaluation(
        n=n, accuracy=correct / n, confusion=confusion,
        per_tier={t: int(confusion.loc[t].sum()) for t in TIERS}, haiku_opus_swaps=swaps,
        costs={k: round(v, 6) for k, v in costs.items()},
        mistakes=pd.DataFrame(mistakes, columns=["task", "agent", "expected", "routed", "score", "reasons"]),
        output_tokens=output_tokens,
    )


@dataclass(frozen=True)
class SelectorEvaluation:
    """Top-1 / top-k accuracy of `select_agent` against labelled agents."""

    n: int
    k: int
    top1: float
    topk: float
    method: str  # "hybrid", "lexical", or "mixed" when the method changed during the run
    confusions: pd.DataFrame  # expected, chosen, count: the top-1 misses, most frequent first
    mistakes: pd.DataFrame = field(repr=False)  # task, expected, chosen, candidates

    @property
    def top3(self) -> float:
        return self.topk

    def _parts(self) -> tuple[str, list[str], list[list[str]]]:
        title = (f"Selector ({self.method}): top-1 {self.top1:.1%}, top-{self.k} {self.topk:.1%} "
                 f"on {self.n} tasks")
        header = ["expected", "chosen instead", "times"]
        rows = [[str(r.expected), str(r.chosen), str(r.count)] for r in self.confusions.head(15).itertuples()]
        return title, header, rows

    def __repr__(self) -> str:
        title, header, rows = self._parts()
        return title + (f"\n\n{table_text(header, rows)}" if rows else "")

    def _repr_html_(self) -> str:
        title, header, rows = self._parts()
        return f"<div class='cf-eval'><b>{html.escape(title)}</b>{table_html(header, rows) if rows else ''}</div>"


def evaluate_selector(rows: Iterable[Mapping[str, Any]] | pd.DataFrame | str | Path, k: int = 3) -> SelectorEvaluation:
    """Select agents for every labelled task: top-1 and top-k accuracy, and the confusions."""
    import pandas as pd

    from ..definitions import library
    from .selection import select_agent

    data = _rows(rows, ("task", "agent"))
    known = library().agent_names()
    for row in data:
        if row["agent"].strip() not in known:  # a typo in a label would count as a silent miss
            raise UnknownNameError("agent", row["agent"].strip(), known)
    hits1 = hitsk = 0
    methods: set[str] = set()
    misses: Counter[tuple[str, str]] = Counter()
    mistakes: list[dict[str, Any]] = []
    for row in data:
        candidates = select_agent(row["task"], k=k)
        methods.update(c.method for c in candidates)
        names = [c.agent for c in candidates]
        expected = row["agent"].strip()
        hits1 += bool(names) and names[0] == expected
        hitsk += expected in names
        if not names or names[0] != expected:
            chosen = names[0] if names else ""
            misses[(expected, chosen)] += 1
            mistakes.append({"task": row["task"], "expected": expected, "chosen": chosen,
                             "candidates": ", ".join(f"{c.agent} ({c.score:.2f})" for c in candidates)})
    confusions = pd.DataFrame([{"expected": e, "chosen": c, "count": n} for (e, c), n in misses.most_common()],
                              columns=["expected", "chosen", "count"])
    n = len(data)
    return SelectorEvaluation(n=n, k=k, top1=hits1 / n, topk=hitsk / n,
                              method=methods.pop() if len(methods) == 1 else "mixed",
                              confusions=confusions,
                              mistakes=pd.DataFrame(mistakes, columns=["task", "expected", "chosen", "candidates"]))
