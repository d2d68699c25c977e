"""`%%agent AGENT --over df.col [--into df.newcol]`: run the cell once per row and join the answers
back to the DataFrame.

The cell is a template where `{{ item }}` is the row's value (and `{{ index }}` its index label).
`over` and `into` are looked up in the notebook's namespace — only `name`, `name.attr` or
`name["col"]` forms, never evaluated as code. With `into=df.newcol` the DataFrame gains:

    newcol          the answer text (None where the item failed or was skipped)
    newcol_success  True/False
    newcol_cost     USD of the call (0 for cache hits and skipped items)
    newcol_model    the model that answered
    newcol_error    error_type where it failed (None otherwise)

aligned on the index of the column iterated over. Either way the function returns a DataFrame of
the results aligned to the input index.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .. import errors

if TYPE_CHECKING:
    import pandas as pd

    from ..core.results import AgentResult

__all__ = ["parse_target", "results_frame", "run_over"]

_EXPR = re.compile(r"""\s*([A-Za-z_]\w*)\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*(['"])(.+?)\3\s*\])?\s*""")
_USES_ITEM = re.compile(r"\{\{\s*(item|index)\b")


def parse_target(expr: str, flag: str = "--over") -> tuple[str, str | None]:
    """'df.col' / 'df["col"]' / 'df' → (name, column or None); anything else is a UsageError."""
    m = _EXPR.fullmatch(expr or "")
    if m is None:
        raise errors.UsageError(f"{flag} expects a name, name.column or name[\"column\"], got {expr!r}.",
                                hint="For example: --over df.text (expressions are not evaluated).")
    return m.group(1), m.group(2) or m.group(4)


def _lookup(ns: dict[str, Any], name: str, flag: str) -> Any:
    if name not in ns:
        known = [k for k in ns if not k.startswith("_")]
        raise errors.UsageError(f"{flag}: no variable '{name}' in the notebook.",
                                hint=errors.did_you_mean(name, known) or "Define it in a cell first.")
    return ns[name]


def _is_frame(obj: Any) -> bool:
    return hasattr(obj, "columns") and hasattr(obj, "loc")


def _column(frame: Any, name: str, col: str, flag: str) -> Any:
    if not _is_frame(frame):
        raise errors.UsageError(f"{flag}: '{name}' is a {type(frame).__name__}, not a DataFrame.",
                                hint=f"Use {flag} {name} to iterate over it directly.")
    if col not in frame.columns:
        cols = [str(c) for c in frame.columns]
        raise errors.UsageError(f"{flag}: DataFrame '{name}' has no column '{col}'.",
                                hint=errors.did_you_mean(col, cols) or f"Columns: {', '.join(cols[:10])}.")
    return frame[col]


def results_frame(results: list[AgentResult], index: Any = None) -> pd.DataFrame:
    """One row per result: text, success, status, error_type, cost_usd, model, tier, tokens, latency."""
    import pandas as pd

    rows = [{
        "text": r.text if r.success else None, "success": r.success, "status": r.status,
        "error_type": r.error_type, "cost_usd": r.cost_usd, "model": r.model or None, "tier": r.tier,
        "input_tokens": r.input_tokens, "output_tokens": r.output_tokens, "cached": r.cached,
        "latency_ms": r.latency_ms,
    } for r in results]
    return pd.DataFrame(rows, index=index)


def run_over(
    shell: Any,
    agent: str,
    template: str,
    over: str,
    into: str | None = None,
    concurrency: int | None = 16,
    engine: str = "async",
    budget: float | None = None,
    model: str | None = None,
    cache: bool = True,
) -> pd.DataFrame:
    """Run `agent` once per item of `over` with the cell `template`; join into `into` if given."""
    import pandas as pd

    from ..core.batch import map_agent

    ns: dict[str, Any] = shell.user_ns
    name, col = parse_target(over, "--over")
    source = _lookup(ns, name, "--over")
    items = _column(source, name, col, "--over") if col is not None else source
    if _is_frame(items):
        raise errors.UsageError(f"--over {over} is a whole DataFrame.", hint=f"Pick a column: --over {name}.COLUMN.")
    if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
        raise errors.UsageError(f"--over {over} is a {type(items).__name__}, not a column or a list.",
                                hint="Use a DataFrame column (df.col) or a list.")
    target: tuple[Any, str] | None = None
    if into is not None:
        tname, tcol = parse_target(into, "--into")
        frame = _lookup(ns, tname, "--into")
        if tcol is None or not _is_frame(frame):
            raise errors.UsageError(f"--into expects a DataFrame column like df.answer, got {into!r}.",
                                    hint="The column is created (or overwritten) with the answers.")
        target = (frame, tcol)
    body = template.strip()
    if body and not _USES_ITEM.search(body):
        raise errors.UsageError("The cell never uses {{ item }}, so every row would get the same task.",
                                hint="Put {{ item }} where each row's value goes.")
    if not isinstance(items, pd.Series):
        items = list(items)
    index = items.index if isinstance(items, pd.Series) else pd.RangeIndex(len(items))
    results = map_agent(agent, items, concurrency=concurrency, engine=engine, model=model, cache=cache,
                        budget_usd=budget, template=body or None)
    frame_out = results_frame(results, index=index)
    if target is not None:
        df, column = target
        same_rows = frame_out.index.equals(df.index)  # positional: safe even with duplicate labels
        for suffix, field in (("", "text"), ("_success", "success"), ("_cost", "cost_usd"), ("_model", "model"),
                              ("_error", "error_type")):
            df[f"{column}{suffix}"] = frame_out[field].to_numpy() if same_rows else frame_out[field]
    return frame_out
