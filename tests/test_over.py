"""`%%agent --over` (notebook/over.py): the cell as a template per row, results joined back to a
real DataFrame, and one-line errors for expressions that are not plain names."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from claudeforce_nb.errors import UsageError
from claudeforce_nb.notebook.over import parse_target, run_over
from claudeforce_nb.simulator import Simulator

pd = pytest.importorskip("pandas")
AGENT = "python-expert"
CELL = "Explain what this Python snippet does: {{ item }}"


def shell(**ns: Any) -> SimpleNamespace:
    return SimpleNamespace(user_ns=ns)


def frame() -> Any:
    return pd.DataFrame({"code": ["x = [1, 2]", "y = {}", "z = len(x)"], "n": [1, 2, 3]}, index=["a", "b", "c"])


def test_into_adds_answer_cost_model_and_success_columns(sim: Simulator) -> None:
    df = frame()
    out = run_over(shell(df=df), AGENT, CELL, "df.code", into="df.answer", concurrency=2)
    assert list(df.columns) == ["code", "n", "answer", "answer_success", "answer_cost", "answer_model",
                                "answer_error"]
    assert df["answer_success"].tolist() == [True, True, True]
    assert all(isinstance(t, str) and t for t in df["answer"])
    assert (df["answer_cost"] > 0).all() and df["answer_model"].str.startswith("claude-").all()
    assert list(out.index) == ["a", "b", "c"] and out["text"].tolist() == df["answer"].tolist()
    sent = sorted(str(b["messages"][-1]["content"]) for b in sim.history)
    assert sent == sorted(CELL.replace("{{ item }}", c) for c in df["code"])


def test_without_into_returns_results_aligned_to_the_input_index(sim: Simulator) -> None:
    df = frame()
    out = run_over(shell(df=df), AGENT, CELL, 'df["code"]')
    assert list(out.index) == ["a", "b", "c"]
    assert {"text", "success", "cost_usd", "model", "error_type"} <= set(out.columns)
    assert list(df.columns) == ["code", "n"]  # left alone


def test_rows_of_a_filtered_view_land_on_their_own_index(sim: Simulator) -> None:
    df = frame()
    sub = df[df["n"] >= 2]
    run_over(shell(df=df, sub=sub), AGENT, CELL, "sub.code", into="df.answer")
    assert df["answer"].isna().tolist() == [True, False, False]


def test_a_missing_value_fails_only_its_row(sim: Simulator) -> None:
    df = pd.DataFrame({"code": ["x = 1", None]})
    run_over(shell(df=df), AGENT, CELL, "df.code", into="df.answer")
    assert df["answer_success"].tolist() == [True, False]
    assert df["answer_error"].isna().tolist() == [True, False] and df["answer_error"].iloc[1] == "empty_task"
    assert df["answer"].isna().tolist() == [False, True] and df["answer_cost"].iloc[1] == 0.0


def test_a_plain_list_can_be_iterated(sim: Simulator) -> None:
    out = run_over(shell(snippets=["a = 1", "b = 2"]), AGENT, CELL, "snippets")
    assert out["success"].tolist() == [True, True] and list(out.index) == [0, 1]


@pytest.mark.parametrize("expr", ["df.code.upper()", "__import__('os').system('true')", "df[0]", "df.code + 1",
                                  "", "df['code'"])
def test_anything_but_a_plain_name_is_a_one_line_usage_error(sim: Simulator, expr: str) -> None:
    with pytest.raises(UsageError) as info:
        run_over(shell(df=frame()), AGENT, CELL, expr)
    assert "\n" not in str(info.value)
    assert not sim.history


def test_unknown_names_and_columns_get_a_hint(sim: Simulator) -> None:
    with pytest.raises(UsageError, match="Did you mean 'df'"):
        run_over(shell(df=frame()), AGENT, CELL, "dff.code")
    with pytest.raises(UsageError, match="Did you mean 'code'"):
        run_over(shell(df=frame()), AGENT, CELL, "df.cdoe")
    with pytest.raises(UsageError, match="Pick a column"):
        run_over(shell(df=frame()), AGENT, CELL, "df")
    with pytest.raises(UsageError, match="DataFrame column"):
        run_over(shell(df=frame(), x=[1]), AGENT, CELL, "df.code", into="x.col")


def test_a_cell_without_item_is_refused(sim: Simulator) -> None:
    with pytest.raises(UsageError, match="never uses"):
        run_over(shell(df=frame()), AGENT, "Explain this code", "df.code")


def test_parse_target_forms() -> None:
    assert parse_target("df.col") == ("df", "col")
    assert parse_target(' df[ "my col" ] ') == ("df", "my col")
    assert parse_target("items") == ("items", None)
