"""`python -m claudeforce_nb analytics VERB`: the metrics tables in a terminal, as plain text.

Verbs (the original CLI's): summary, by-agent, costs, trends, export; plus rollup. Common flags:
--days N (last N days), --agent NAME (repeatable). A bad flag prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..render import usd

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["analytics_main"]

RULE = "━" * 56


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2 (argparse's own convention)
        self.exit(2, f"{self.prog}: error: {message}. See --help.\n")


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--days wants a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"--days must be positive, got {text!r}")
    return value


def _parser() -> _Parser:
    p = _Parser(prog="python -m claudeforce_nb analytics", description="Metrics tables in the terminal.")
    sub = p.add_subparsers(dest="verb", required=True, parser_class=_Parser, metavar="VERB")

    def verb(name: str, help: str) -> _Parser:
        v: _Parser = sub.add_parser(name, help=help, description=help)
        v.add_argument("--days", type=_days, default=None, help="only the last N days (default: everything)")
        v.add_argument("--agent", action="append", default=None, metavar="NAME", help="only this agent (repeatable)")
        return v

    verb("summary", "headline numbers: calls, success, latency percentiles, cost, tokens, savings")
    verb("by-agent", "one row per agent: calls, success rate, latency, tokens, cost")
    costs = verb("costs", "spend per agent and model, most expensive first")
    costs.add_argument("--by", default="agent,model", help="agent, model or agent,model (default)")
    costs.add_argument("--by-agent", dest="by", action="store_const", const="agent", help="same as --by agent")
    trends = verb("trends", "calls, success rate, latency and cost per hour, day or week")
    trends.add_argument("--interval", choices=("hourly", "daily", "weekly"), default="daily")
    export = verb("export", "write the metrics rows to a file")
    export.add_argument("--format", choices=("csv", "parquet", "json"), default=None,
                        help="default: from --output's suffix, else csv")
    export.add_argument("--output", "-o", default=None, help="file to write (default: ./metrics-export.FORMAT)")
    rollup = sub.add_parser("rollup", help="fold old detail into daily rows (totals unchanged)")
    rollup.add_argument("--older-than", type=_days, default=None, metavar="DAYS",
                        help="days of detail to keep (default: the retention_days setting)")
    return p


def _money(x: float) -> str:
    return usd(x, precise_below=10)


def _ms(x: float) -> str:
    return "n/a" if x != x else f"{x:,.0f} ms"


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{x:.1%}"


def _window(args: argparse.Namespace) -> str:
    return f"last {args.days:g} days" if args.days else "all recorded calls"


def _summary(df: pd.DataFrame, args: argparse.Namespace) -> str:
    from . import frames

    s = frames.summary(df)
    sv = frames.savings(df)
    out = [f"Performance Summary ({_window(args)})", RULE]
    if not s["executions"]:
        return "\n".join(out + ["No calls recorded yet."])
    saved_pct = "" if sv["saved_pct"] != sv["saved_pct"] else f", {sv['saved_pct']:.0f}%"
    out += [
        f"Total executions:   {s['executions']:,}",
        f"Success rate:       {_pct(s['success_rate'])} ({s['successes']:,} / {s['executions']:,})",
        f"Average latency:    {_ms(s['latency_avg_ms'])}  (p50 {_ms(s['latency_p50_ms'])}, "
        f"p95 {_ms(s['latency_p95_ms'])}, p99 {_ms(s['latency_p99_ms'])})",
        f"Total cost:         {_money(s['total_cost_usd'])} USD",
        f"Baseline cost:      {_money(s['baseline_cost_usd'])} on {sv['baseline_model']} "
        f"(saved {_money(sv['saved_usd'])}{saved_pct})",
        f"Token usage:        {s['total_tokens']:,} total; average input {s['avg_input_tokens']:,.0f}, "
        f"output {s['avg_output_tokens']:,.0f}",
        f"Response cache:     {_pct(s['cached_share'])} of calls; retries {_pct(s['retry_rate'])} of attempts",
    ]
    if s["unpriced_calls"]:
        out.append(f"Unpriced calls:     {s['unpriced_calls']:,} (model without a price: cost counted as 0)")
    top = frames.by_agent(df).head(5)
    out += ["", "Top agents by usage:"]
    out += [f"  {i}. {name} ({int(r['executions']):,} executions, {r['avg_latency_ms'] / 1000:.1f}s avg, "
            f"{_money(r['cost_usd'])})" for i, (name, r) in enumerate(top.iterrows(), 1)]
    models = frames.costs(df, by="model")
    out += ["", "Model distribution:"]
    out += [f"  {name}: {r['executions'] / s['executions']:.0%} of calls, {_money(r['cost_usd'])}"
            for name, r in models.iterrows()]
    return "\n".join(out)


def _table(df: pd.DataFrame, money: Sequence[str] = (), ms: Sequence[str] = (), pct: Sequence[str] = ()) -> str:
    if df.empty:
        return "No calls recorded yet."
    shown = df.copy()
    for c in money:
        shown[c] = shown[c].map(_money)
    for c in ms:
        shown[c] = shown[c].map(_ms)
    for c in pct:
        shown[c] = shown[c].map(_pct)
    for c in shown.columns:
        if str(shown[c].dtype).startswith("int"):
            shown[c] = shown[c].map("{:,}".format)
    return shown.to_string()


def analytics_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m claudeforce_nb analytics ...`; returns the exit status."""
    from ..errors import ClaudeforceError

    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return _run(args)
    except ClaudeforceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from ..api import metrics
    from . import frames

    if args.verb == "rollup":
        print(frames.rollup(args.older_than))
        return 0
    df = metrics(days=args.days, agents=args.agent)
    if args.verb == "summary":
        print(_summary(df, args))
    elif args.verb == "by-agent":
        print(f"Per-agent performance ({_window(args)})\n")
        print(_table(frames.by_agent(df), money=("cost_usd", "baseline_cost_usd", "saved_usd"),
                     ms=("avg_latency_ms", "p95_latency_ms"), pct=("share", "success_rate")))
    elif args.verb == "costs":
        by = [{"agent": "agent_name"}.get(b.strip(), b.strip()) for b in args.by.split(",") if b.strip()]
        bad = [b for b in by if b not in ("agent_name", "model", "tier")]
        if bad:
            print(f"python -m claudeforce_nb analytics costs: error: --by {bad[0]!r} is not agent, model or tier.",
                  file=sys.stderr)
            return 2
        table = frames.costs(df, by=by)
        print(f"Cost breakdown ({_window(args)}; total {_money(float(table['cost_usd'].sum()))} USD)\n")
        print(_table(table.drop(columns=["cache_read_tokens", "cache_write_tokens"]),
                     money=("cost_usd", "baseline_cost_usd", "saved_usd"), pct=("cost_share",)))
    elif args.verb == "trends":
        table = frames.trends(df, args.interval)
        if not table.empty:
            table.index = table.index.strftime("%Y-%m-%d %H:%M" if args.interval == "hourly" else "%Y-%m-%d")
        print(f"Trends, {args.interval} ({_window(args)}; times UTC)\n")
        print(_table(table, money=("cost_usd", "baseline_cost_usd"), ms=("avg_latency_ms", "p95_latency_ms"),
                     pct=("success_rate",)))
    elif args.verb == "export":
        fmt = args.format or (args.output.rsplit(".", 1)[-1] if args.output and "." in args.output else "csv")
        path = frames.export(df, args.output or f"metrics-export.{fmt}", fmt)
        print(f"Wrote {len(df):,} rows to {path} ({fmt}).")
    return 0
