"""Command line: `python -m claudeforce_nb demo | run AGENT TASK | validate | analytics …`.

User mistakes print one line on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

from .errors import ClaudeforceError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2 (argparse's own convention)
        self.exit(2, f"{self.prog}: error: {message}. See --help.\n")


def _fmt_cost(x: float | None) -> str:
    return "n/a" if x is None else f"${x:.6f}"


def cmd_run(args: argparse.Namespace) -> int:
    from .core.orchestrator import run_agent

    task = " ".join(args.task)
    if task.strip() == "-":
        task = sys.stdin.read()
    result = run_agent(args.agent, task, model=args.model, stream=not args.no_stream, cache=not args.no_cache,
                       on_text=None if args.no_stream else (lambda t: print(t, end="", flush=True)))
    if args.no_stream and result.success:  # otherwise on_text printed it (a cache hit too)
        print(result.text, end="")
    print()
    if not result.success:
        print(f"error: {result.error}", file=sys.stderr)
        return 1
    label = " (simulated)" if result.backend == "simulated" else ""
    print(f"— {result.agent} · {result.model}{label} · {result.input_tokens} in / {result.output_tokens} out · "
          f"{_fmt_cost(result.cost_usd)} · {result.latency_ms:.0f} ms"
          + (" · cached" if result.cached else ""), file=sys.stderr)
    return 0


DEMO_TASKS = (
    ("python-expert", "Write a function that removes duplicates from a list while keeping order."),
    ("code-reviewer", "Review this function:\n\ndef mean(xs):\n    return sum(xs) / len(xs)\n"),
    ("python-expert", "Explain what a generator expression is in one paragraph."),
    ("python-expert", "Write a function that removes duplicates from a list while keeping order."),
)


def cmd_demo(args: argparse.Namespace) -> int:
    """The notebook tour (`demo.run_demo`) from a repository checkout; the terminal tour with
    --text, or when the notebook or nbclient is not installed (a wheel carries no notebooks)."""
    from . import demo

    if args.text:
        return text_tour()
    if args.notebook is None:
        missing = None
        if demo.find_notebook() is None:
            missing = f"notebooks/{demo.QUICKSTART} is not installed with the package (it is in the repository)"
        elif importlib.util.find_spec("nbclient") is None or importlib.util.find_spec("nbconvert") is None:
            missing = "the notebook tour needs nbclient and nbconvert (pip install 'claudeforce_nb[dev]')"
        if missing is not None:
            print(f"{missing}: running the terminal tour instead.\n", file=sys.stderr)
            return text_tour()
    try:
        return demo.run_demo(args.out, args.notebook)
    except demo.NotebookFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def text_tour() -> int:
    from .core.orchestrator import run_agent

    print("claudeforce_nb demo — agents answering on the offline simulator unless ANTHROPIC_API_KEY is set\n")
    rows = []
    for agent, task in DEMO_TASKS:
        r = run_agent(agent, task)
        first = task.splitlines()[0]
        print(f"### {agent}: {first}\n")
        print(r.text if r.success else f"[failed: {r.error}]")
        print()
        rows.append(r)
    header = f"{'agent':<16} {'model':<18} {'backend':<10} {'in':>6} {'out':>6} {'cost':>11} {'latency':>9}  cached"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.agent:<16} {r.model:<18} {r.backend:<10} {r.input_tokens:>6} {r.output_tokens:>6} "
              f"{_fmt_cost(r.cost_usd):>11} {r.latency_ms:>7.0f}ms  {'yes' if r.cached else 'no'}")
    total = sum(r.cost_usd or 0 for r in rows)
    print(f"\ntotal cost {_fmt_cost(total)} for {len(rows)} calls (the repeated task was answered from the cache)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m claudeforce_nb",
                     description="Run Claude agents (offline simulator without a key).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p_run = sub.add_parser("run", help="run one agent on a task ('-' reads the task from stdin)")
    p_run.add_argument("agent")
    p_run.add_argument("task", nargs="+")
    p_run.add_argument("-m", "--model", default=None, help="model id or haiku|sonnet|opus")
    p_run.add_argument("--no-stream", action="store_true")
    p_run.add_argument("--no-cache", action="store_true")
    p_run.set_defaults(fn=cmd_run)
    p_demo = sub.add_parser("demo", help="run the quickstart notebook offline; write it and dashboards as HTML")
    p_demo.add_argument("--out", default="demo", metavar="DIR", help="where the HTML files go (default: demo)")
    p_demo.add_argument("--notebook", type=Path, metavar="PATH", help="run this notebook instead of the quickstart")
    p_demo.add_argument("--text", action="store_true", help="the terminal tour: a few answers and a cost table")
    p_demo.set_defaults(fn=cmd_demo)
    p_val = sub.add_parser("validate", help="check agents, skills and workflows", add_help=False)
    p_val.set_defaults(fn=None)
    p_an = sub.add_parser("analytics", help="metrics tables in the terminal", add_help=False)
    p_an.set_defaults(fn=None)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "validate":
        from .definitions import validate_main

        return validate_main(argv[1:])
    if argv and argv[0] == "analytics":
        from .analytics.cli import analytics_main

        return analytics_main(argv[1:])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        return int(args.fn(args))
    except ClaudeforceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
