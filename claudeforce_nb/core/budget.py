"""What a map job will cost before it runs (`estimate_cost`), and the guard that keeps a running
job inside its budget.

Input tokens are counted locally with the simulator's tokenizer — exactly what the simulator
bills — and calibrated against the `count_tokens` endpoint on the first prompt, so on the real API
the count follows Claude's tokenizer. Prompt caching is priced as it behaves: the shared system
prompt (agent + skills) is written by the first `concurrency` calls and read by the rest.
Output is unknown until the answers exist, so two figures are given: expected (a typical agent
answer, `EXPECTED_OUTPUT_TOKENS`, capped at max_tokens) and worst case (every answer runs to
max_tokens, every prefix a cache write). Budgets are checked against the expected figure; while a
job runs, the guard replaces the prior with the mean output of the answers seen so far.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import errors
from ..definitions import AgentSpec
from ..pricing import get_pricing
from ..simulator.text import count_tokens
from .results import AgentResult

__all__ = ["CACHE_MIN_TOKENS", "EXPECTED_OUTPUT_TOKENS", "BudgetGuard", "Estimate", "price_tasks", "refuse_if_over"]

log = logging.getLogger("claudeforce_nb.budget")
EXPECTED_OUTPUT_TOKENS = 400  # a typical agent answer: a few paragraphs and a code block
CACHE_MIN_TOKENS = 1024  # shortest prefix the API (and the simulator) caches


@dataclass(frozen=True)
class ItemCost:
    """The cost model of one item: `input_usd` is fixed once routed; output is paid per token."""

    input_usd: float
    worst_input_usd: float
    usd_per_output_token: float
    max_tokens: int
    model: str


@dataclass(frozen=True)
class Estimate:
    """A dry run of a map job: expected and worst-case cost, tokens, and the model mix."""

    items: int  # items that would be sent (cache hits and invalid items excluded)
    total_usd: float  # expected
    worst_case_usd: float
    per_item_usd: tuple[float, ...]  # expected, in input order (0 for cache hits and invalid items)
    input_tokens: int
    expected_output_tokens: int
    worst_case_output_tokens: int
    models: dict[str, int]  # model → items
    tiers: dict[str, int]  # haiku/sonnet/opus → items
    cached_items: int = 0
    invalid_items: int = 0
    engine: str = "async"
    costs: tuple[ItemCost | None, ...] = field(default=(), repr=False, compare=False)

    def summary_line(self) -> str:
        mix = ", ".join(f"{t}×{n}" for t, n in sorted(self.tiers.items())) or "none"
        extra = f" · {self.cached_items} cached" if self.cached_items else ""
        return (f"{self.items} items · expected ${self.total_usd:.4f} (worst case ${self.worst_case_usd:.4f}) · "
                f"{self.input_tokens} input + ~{self.expected_output_tokens} output tokens · {mix} · "
                f"engine={self.engine}{extra}")

    def __str__(self) -> str:
        return self.summary_line()


def _split_tokens(params: dict[str, Any]) -> tuple[int, int, bool]:
    """(system prefix tokens, message tokens, prefix marked for caching) — the simulator's formula."""
    blocks = [b for b in params.get("system") or [] if isinstance(b, dict)]
    prefix = 3 + sum(count_tokens(str(b.get("text", ""))) for b in blocks)
    messages = 0
    for m in params.get("messages") or []:
        content = m.get("content")
        text = content if isinstance(content, str) else "\n".join(
            str(b.get("text", "")) for b in content or [] if isinstance(b, dict))
        messages += 4 + count_tokens(text)
    return prefix, messages, any(isinstance(b.get("cache_control"), dict) for b in blocks)


def _calibration(params: dict[str, Any]) -> float:
    """count_tokens endpoint / local count for one prompt (1.0 if the endpoint cannot be asked)."""
    from ..client import map_sdk_error, sync_client

    prefix, messages, _ = _split_tokens(params)
    local = prefix + messages
    try:
        counted = sync_client().messages.count_tokens(model=params["model"], system=params["system"],
                                                      messages=params["messages"]).input_tokens
    except Exception as exc:  # an estimate without calibration still helps
        if map_sdk_error(exc) is None:
            raise
        log.info("count_tokens unavailable (%s); using the local token count", type(exc).__name__)
        return 1.0
    return counted / local if local else 1.0


def price_tasks(
    spec: AgentSpec,
    tasks: Sequence[str | Exception],
    *,
    model: str | None,
    cache: bool,
    engine: str,
    concurrency: int,
    output_tokens: int | None = None,
) -> Estimate:
    """Route and price every task (nothing is sent but one count_tokens request)."""
    from .orchestrator import prepare, response_cache

    pricing = get_pricing()
    discount = pricing.batch_discount if engine == "batches" else 1.0
    expected_out_prior = output_tokens or EXPECTED_OUTPUT_TOKENS
    calls: list[Any] = []
    cached = invalid = 0
    for task in tasks:
        if isinstance(task, Exception):
            calls.append(None)
            invalid += 1
            continue
        call = prepare(spec, task, model=model, cache=cache)
        if call.key is not None and response_cache(call.settings).get(call.key) is not None:
            calls.append(None)
            cached += 1
            continue
        calls.append(call)
    first = next((c for c in calls if c is not None), None)
    ratio = _calibration(first.params) if first is not None else 1.0
    writes: Counter[tuple[str, str]] = Counter()  # (model, system text) → prefix writes so far
    costs: list[ItemCost | None] = []
    per_item: list[float] = []
    models: Counter[str] = Counter()
    tiers: Counter[str] = Counter()
    input_total = out_expected = out_worst = 0
    expected_total = worst_total = 0.0
    for call in calls:
        if call is None:
            costs.append(None)
            per_item.append(0.0)
            continue
        p = pricing.price(call.model)
        prefix, messages, marked = _split_tokens(call.params)
        prefix, messages = round(prefix * ratio), round(messages * ratio)
        max_tokens = int(call.params["max_tokens"])
        if p is None:  # unknown price: pricing warned once; counted as free rather than guessed
            cost = ItemCost(0.0, 0.0, 0.0, max_tokens, call.model)
        else:
            base = messages * p.input
            if marked and prefix >= CACHE_MIN_TOKENS:
                key = (call.model, "".join(str(b.get("text", "")) for b in call.params["system"]))
                writes[key] += 1
                expected_in = base + prefix * (p.cache_write_5m if writes[key] <= concurrency else p.cache_read)
                worst_in = base + prefix * p.cache_write_5m
            else:
                expected_in = worst_in = base + prefix * p.input
            cost = ItemCost(expected_in / 1e6 * discount, worst_in / 1e6 * discount, p.output / 1e6 * discount,
                            max_tokens, call.model)
        expected_out = min(expected_out_prior, max_tokens)
        costs.append(cost)
        per_item.append(cost.input_usd + expected_out * cost.usd_per_output_token)
        expected_total += per_item[-1]
        worst_total += cost.worst_input_usd + max_tokens * cost.usd_per_output_token
        input_total += prefix + messages
        out_expected += expected_out
        out_worst += max_tokens
        models[call.model] += 1
        tiers[call.route.tier] += 1
    return Estimate(
        items=sum(1 for c in calls if c is not None), total_usd=expected_total, worst_case_usd=worst_total,
        per_item_usd=tuple(per_item), input_tokens=input_total, expected_output_tokens=out_expected,
        worst_case_output_tokens=out_worst, models=dict(models), tiers=dict(tiers), cached_items=cached,
        invalid_items=invalid, engine=engine, costs=tuple(costs),
    )


def refuse_if_over(estimate: Estimate, budget_usd: float) -> None:
    unpriced = sorted(m for m in estimate.models if not get_pricing().is_known(m))
    if unpriced:  # such calls would count as free: the budget could not be kept
        raise errors.BudgetError(f"Cannot keep a budget of ${budget_usd:.4f}: {', '.join(unpriced)} has no price.",
                                 hint="Add it to a pricing file (setting pricing_file) or run without a budget.")
    if estimate.total_usd > budget_usd:
        hint = ("raise --budget (budget_usd=) or use engine=batches (half price)." if estimate.engine != "batches"
                else "raise --budget (budget_usd=) or map fewer items.")
        raise errors.BudgetError(f"estimated ${estimate.total_usd:.4f} > budget ${budget_usd:.4f};", hint=hint)


class BudgetGuard:
    """Admits the next call only while spent + in flight + its own estimate stays within budget."""

    def __init__(self, budget_usd: float, estimate: Estimate) -> None:
        self.budget_usd = budget_usd
        self.costs = estimate.costs
        self.prior = EXPECTED_OUTPUT_TOKENS
        self.spent = 0.0
        self.reserved = 0.0
        self._held: dict[int, float] = {}
        self._out_sum = 0
        self._out_n = 0

    def next_cost(self, i: int) -> float:
        cost = self.costs[i] if i < len(self.costs) else None
        if cost is None:
            return 0.0
        out = self._out_sum / self._out_n if self._out_n else self.prior
        return cost.input_usd + min(out, cost.max_tokens) * cost.usd_per_output_token

    def admit(self, i: int) -> bool:
        est = self.next_cost(i)
        if self.spent + self.reserved + est > self.budget_usd:
            return False
        self._held[i] = est
        self.reserved += est
        return True

    def settle(self, i: int, result: AgentResult) -> None:
        self.reserved -= self._held.pop(i, 0.0)
        self.spent += result.cost_usd or 0.0
        if result.success and not result.cached:
            self._out_sum += result.output_tokens
            self._out_n += 1

    def skipped_message(self) -> str:
        return (f"Not run: the budget of ${self.budget_usd:.4f} would have been exceeded "
                f"(${self.spent:.4f} spent).")
