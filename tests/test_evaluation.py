"""`cf.evaluate_router` and `cf.evaluate_selector`: accuracy, confusion, haiku↔opus swaps, cost
against always-haiku/sonnet/opus, the input forms users have (rows, DataFrame, .jsonl, .csv) and
one-line errors for bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import embedding_model
import pandas as pd
import pytest

import claudeforce_nb as cf
from claudeforce_nb.config import configure
from claudeforce_nb.errors import UnknownNameError, UsageError

semantic = embedding_model.semantic

EDIT = "Rename the variable x to count."  # routed haiku
THREAT = "Build a threat model for the file upload feature."  # routed opus
ORDINARY = "Write a function that flattens a nested list."  # routed sonnet
QUESTION = "What does zip() do?"  # routed haiku

ROUTER_ROWS = [
    {"task": EDIT, "tier": "haiku"},  # right
    {"task": THREAT, "tier": "claude-opus-5-5"},  # right (a model id names its tier)
    {"task": ORDINARY, "tier": "haiku"},  # wrong: routed sonnet
    {"task": QUESTION, "tier": "opus"},  # wrong, and a haiku↔opus swap
    {"task": EDIT, "tier": "Sonnet", "agent": "security-auditor"},  # right: the agent's min_tier applies
]


def test_router_accuracy_confusion_swaps_and_mistakes() -> None:
    result = cf.evaluate_router(ROUTER_ROWS)
    assert result.n == 5 and result.accuracy == pytest.approx(3 / 5)
    c = result.confusion
    assert list(c.index) == list(c.columns) == ["haiku", "sonnet", "opus"]
    assert (c.loc["haiku", "haiku"], c.loc["haiku", "sonnet"]) == (1, 1)
    assert (c.loc["sonnet", "sonnet"], c.loc["opus", "opus"], c.loc["opus", "haiku"]) == (1, 1, 1)
    assert int(c.to_numpy().sum()) == 5
    assert result.per_tier == {"haiku": 2, "sonnet": 1, "opus": 2}
    assert result.haiku_opus_swaps == 1
    assert list(zip(result.mistakes.task, result.mistakes.expected, result.mistakes.routed, strict=True)) == [
        (ORDINARY, "haiku", "sonnet"), (QUESTION, "opus", "haiku")]


def test_router_costs_compare_routed_labelled_and_always_one_tier() -> None:
    result = cf.evaluate_router(ROUTER_ROWS)
    alone = [cf.evaluate_router([row]).costs for row in ROUTER_ROWS]
    routed_tiers = ["haiku", "opus", "sonnet", "haiku", "sonnet"]
    labelled_tiers = ["haiku", "opus", "haiku", "opus", "sonnet"]
    costs = result.costs
    assert costs["routed"] == pytest.approx(sum(a[f"always {t}"] for a, t in zip(alone, routed_tiers, strict=True)))
    assert costs["labelled"] == pytest.approx(sum(a[f"always {t}"] for a, t in zip(alone, labelled_tiers,
                                                                                     strict=True)))
    # list prices: Haiku 20x cheaper than Sonnet, Opus 2x dearer
    assert costs["always sonnet"] == pytest.approx(20 * costs["always haiku"], rel=1e-4)
    assert costs["always opus"] == pytest.approx(2 * costs["always sonnet"], rel=1e-4)
    assert costs["always haiku"] < costs["routed"] < costs["always opus"]
    assert result.saved_vs_sonnet == pytest.approx(1 - costs["routed"] / costs["always sonnet"])


def test_router_cost_includes_the_agent_prompt_and_the_output_length() -> None:
    bare = cf.evaluate_router([{"task": EDIT, "tier": "haiku"}])
    with_agent = cf.evaluate_router([{"task": EDIT, "tier": "haiku", "agent": "python-expert"}])
    longer = cf.evaluate_router([{"task": EDIT, "tier": "haiku"}], output_tokens=4000)
    assert with_agent.costs["always sonnet"] > bare.costs["always sonnet"]
    assert longer.costs["always sonnet"] > bare.costs["always sonnet"]
    assert longer.output_tokens == 4000 and "4000 output tokens" in repr(longer)


def test_router_evaluation_reads_a_dataframe_jsonl_and_csv(tmp_path: Path) -> None:
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in ROUTER_ROWS) + "\n", encoding="utf-8")
    table = tmp_path / "mine.csv"
    with table.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["task", "tier", "agent"])
        writer.writeheader()
        writer.writerows(ROUTER_ROWS)
    frame = pd.DataFrame(ROUTER_ROWS)  # agent is NaN where a row has none
    expected = cf.evaluate_router(ROUTER_ROWS)
    for source in (frame, jsonl, str(table)):
        got = cf.evaluate_router(source)
        assert (got.n, got.accuracy, got.haiku_opus_swaps, got.costs) == (
            expected.n, expected.accuracy, expected.haiku_opus_swaps, expected.costs)
        assert got.confusion.equals(expected.confusion)


def test_router_evaluation_shows_text_and_html() -> None:
    result = cf.evaluate_router(ROUTER_ROWS)
    text, page = repr(result), result._repr_html_()
    assert "60.0% of 5 tasks" in text and "1 haiku↔opus swaps" in text and "always opus" in text
    assert "<table" in page and "60.0% of 5 tasks" in page and "2 mistakes" in page


# -- the selector ---------------------------------------------------------------------------------

def test_selector_top1_topk_and_confusions() -> None:
    configure(selector="lexical")  # deterministic and model-free; the hybrid path is checked below
    task = "Write pytest tests with fixtures for the CSV parser."
    best, second, third = (c.agent for c in cf.select_agent(task, k=3))
    outside = next(a.name for a in cf.agents() if a.name not in (best, second, third))
    rows = [{"task": task, "agent": best}, {"task": task, "agent": second}, {"task": task, "agent": outside}]
    result = cf.evaluate_selector(rows)
    assert (result.n, result.k, result.method) == (3, 3, "lexical")
    assert result.top1 == pytest.approx(1 / 3) and result.top3 == result.topk == pytest.approx(2 / 3)
    assert sorted(map(tuple, result.confusions[["expected", "chosen", "count"]].to_numpy().tolist())) == sorted(
        [(second, best, 1), (outside, best, 1)])
    assert set(result.mistakes.expected) == {second, outside}
    assert "top-1 33.3%, top-3 66.7% on 3 tasks" in repr(result)
    one = cf.evaluate_selector(rows, k=1)
    assert one.top1 == one.topk == pytest.approx(1 / 3)


@pytest.mark.semantic
def test_selector_evaluation_reports_the_hybrid_method(semantic: Path) -> None:
    result = cf.evaluate_selector([
        {"task": "Write a SQL query with a window function that ranks customers by revenue.", "agent": "sql-expert"},
        {"task": "Write pytest tests with fixtures for the CSV parser.", "agent": "test-engineer"},
    ])
    assert result.method == "hybrid" and result.top1 == 1.0 and result.confusions.empty


# -- bad input: one line that says what to do ----------------------------------------------------

def _one_line(exc: pytest.ExceptionInfo[Exception]) -> str:
    message = str(exc.value)
    assert isinstance(exc.value, UsageError) and "\n" not in message
    return message


@pytest.mark.parametrize(("rows", "says"), [
    ([], "There are no rows"),
    ([{"tier": "haiku"}], "Row 0 has no 'task'"),
    ([{"task": EDIT, "tier": "haiku"}, {"task": "  ", "tier": "haiku"}], "Row 1 has no 'task'"),
    ([{"task": EDIT}], "Row 0 has no 'tier'"),
    ([{"task": EDIT, "tier": "medium"}], "unknown tier 'medium'"),
    ([{"task": EDIT, "tier": 3}], "Row 0 has no 'tier'"),
    (["Rename x"], "Row 0 is a str, not a mapping"),
    (42, "Cannot evaluate a int"),
    ("no/such/file.jsonl", "No labelled file"),
])
def test_router_bad_input_is_a_one_line_usage_error(rows: Any, says: str) -> None:
    with pytest.raises(UsageError) as info:
        cf.evaluate_router(rows)
    assert says in _one_line(info)


def test_router_unknown_agent_and_bad_output_tokens_are_usage_errors() -> None:
    with pytest.raises(UnknownNameError) as info:
        cf.evaluate_router([{"task": EDIT, "tier": "haiku", "agent": "pyton-expert"}])
    assert "python-expert" in _one_line(info)
    for bad in (-1, 2.5, True):
        with pytest.raises(UsageError) as info:
            cf.evaluate_router([{"task": EDIT, "tier": "haiku"}], output_tokens=bad)
        assert "output_tokens" in _one_line(info)


def test_a_broken_jsonl_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text(json.dumps({"task": EDIT, "tier": "haiku"}) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(UsageError) as info:
        cf.evaluate_router(path)
    assert "Line 2 of labels.jsonl is not JSON" in _one_line(info)


def test_a_spreadsheet_csv_is_read_or_refused_in_one_line(tmp_path: Path) -> None:
    # Excel's "CSV UTF-8" starts with a byte-order mark; its plain "CSV" is not UTF-8 at all
    bom = tmp_path / "excel.csv"
    bom.write_bytes("task,tier\n".encode("utf-8-sig") + f"{EDIT},haiku\n".encode())
    assert cf.evaluate_router(bom).n == 1
    legacy = tmp_path / "legacy.csv"
    legacy.write_bytes(f"task,tier\n{EDIT} caf\xe9,haiku\n".encode("cp1252"))
    with pytest.raises(UsageError) as info:
        cf.evaluate_router(legacy)
    assert "legacy.csv is not UTF-8" in _one_line(info)


@pytest.mark.parametrize(("rows", "kw", "says"), [
    ([], {}, "There are no rows"),
    ([{"task": EDIT}], {}, "Row 0 has no 'agent'"),
    ([{"task": EDIT, "agent": "pyton-expert"}], {}, "Unknown agent 'pyton-expert'"),
    ([{"task": EDIT, "agent": "python-expert"}], {"k": 0}, "k must be a positive whole number"),
])
def test_selector_bad_input_is_a_one_line_usage_error(rows: Any, kw: dict[str, Any], says: str) -> None:
    configure(selector="lexical")
    with pytest.raises(UsageError) as info:
        cf.evaluate_selector(rows, **kw)
    assert says in _one_line(info)
