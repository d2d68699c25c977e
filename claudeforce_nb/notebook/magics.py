"""`%load_ext claudeforce_nb`: the `%%agent` / `%agent`, `%agents` and `%workflow` magics.

Argument parsing → core calls → a view, nothing else. Loading imports only IPython's magic
machinery, traitlets and our small errors/config modules; the orchestrator, the SDK, pandas and
ipywidgets load on the first cell that needs them, so `%load_ext` stays cheap.

`AgentMagics` is also a traitlets Configurable registered with the shell, so `%config AgentMagics`
lists its options with their help. User mistakes come out as one line (see `notebook.errors`).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, needs_local_scope, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, Float, TraitError, Unicode, default, observe, validate
from traitlets.config import Configurable

from ..config import configure, get_settings
from .errors import cancelled, short_errors, usage_error

if TYPE_CHECKING:
    from argparse import ArgumentParser, Namespace

    from ..definitions import WorkflowSpec

__all__ = ["AgentMagics", "load_ipython_extension", "unload_ipython_extension"]

_SHELL_NAMES = {"In", "Out", "exit", "quit", "get_ipython"}
_VAR = re.compile(r"[A-Za-z_]\w*")
_INPUT = re.compile(r"([A-Za-z_][\w-]*)=(.*)", re.DOTALL)
_OVER_ONLY = (("into", "--into"), ("concurrency", "--concurrency"), ("engine", "--engine"), ("budget", "--budget"))


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:  # an unclosed quote
        raise usage_error(f"Could not read the options ({exc}): close the quote or remove it.") from None


def _line_form(parser: ArgumentParser, line: str) -> tuple[str, str]:
    """Split `%agent [options] AGENT [options] task…` into the option part and the raw task text,
    so the task keeps its own spacing, quotes and dashes. Options count until the first task word."""
    takes_value = {s for a in parser._actions if a.nargs != 0 for s in a.option_strings}
    expect_value = have_agent = auto = False
    for m in re.finditer(r"\S+", line):
        token = m.group()
        if expect_value:
            expect_value = False
        elif token.startswith("-") and len(token) > 1:
            name = token.split("=", 1)[0]
            auto = auto or name == "--auto"
            expect_value = "=" not in token and name in takes_value
        elif not have_agent and not auto:
            have_agent = True
        else:
            return line[:m.start()], line[m.start():]
    return line, ""


@magics_class
class AgentMagics(Magics, Configurable):
    """Run Claude agents from notebook cells. `%config AgentMagics` lists these options."""

    default_model = Unicode(
        None, allow_none=True,
        help="Model for calls that name none: a model id or haiku / sonnet / opus. None lets the router "
             "choose (an agent's own pin still wins). Same as the default_model setting.",
    ).tag(config=True)
    stream = Bool(True, help="Stream answers into the cell as they arrive (--no-stream turns it off "
                             "for one cell).").tag(config=True)
    cache = Bool(True, help="Reuse the answer of an identical earlier call from the response cache "
                            "(--no-cache turns it off for one cell).").tag(config=True)
    short_errors = Bool(True, help="Show user mistakes (unknown agent, bad flag, missing variable) as one "
                                   "line; False restores full tracebacks.").tag(config=True)
    budget = Float(None, allow_none=True, help="Default budget in USD for `--over` jobs (None: no "
                                               "limit). Same as the budget_usd setting.").tag(config=True)
    widgets = Bool(None, allow_none=True, help="Show results as live widgets. None: when running in a "
                                               "Jupyter kernel; False: plain streamed text.").tag(config=True)

    @default("default_model")
    def _default_model_default(self) -> str | None:
        return get_settings().default_model

    @default("stream")
    def _stream_default(self) -> bool:
        return get_settings().stream

    @default("cache")
    def _cache_default(self) -> bool:
        return get_settings().cache

    @default("short_errors")
    def _short_errors_default(self) -> bool:
        return get_settings().short_errors

    @default("budget")
    def _budget_default(self) -> float | None:
        return get_settings().budget_usd

    @validate("default_model")
    def _check_model(self, proposal: Any) -> str | None:
        if proposal["value"] in (None, ""):
            return None
        from ..core.orchestrator import resolve_model
        from ..errors import InvalidModelError

        try:
            return resolve_model(proposal["value"])
        except InvalidModelError as exc:
            raise TraitError(str(exc)) from None

    @observe("default_model", "short_errors", "budget")
    def _to_settings(self, change: Any) -> None:
        name = {"budget": "budget_usd"}.get(change["name"], change["name"])
        configure(**{name: change["new"]})

    # --- helpers ---------------------------------------------------------------------------------

    def _use_widgets(self) -> bool:
        if self.widgets is not None:
            return bool(self.widgets)
        return getattr(self.shell, "kernel", None) is not None  # ipykernel: a frontend can show widgets

    def _namespace(self, local_ns: Mapping[str, Any] | None) -> dict[str, Any]:
        ns = dict(self.shell.user_ns) if self.shell is not None else {}
        if local_ns:
            ns.update(local_ns)
        return {k: v for k, v in ns.items() if not k.startswith("_") and k not in _SHELL_NAMES}

    def _store(self, name: str | None, value: Any) -> None:
        if name and self.shell is not None:
            self.shell.user_ns[name] = value

    @staticmethod
    def _check_var(name: str | None, flag: str = "-o") -> None:
        if name is not None and not (_VAR.fullmatch(name) and name.isidentifier()):
            raise usage_error(f"{flag} needs a Python variable name, not '{name}'.")

    # --- %%agent / %agent ------------------------------------------------------------------------

    @magic_arguments()
    @argument("agent", nargs="?", help="the agent to run (%%agents lists them); leave out with --auto")
    @argument("-m", "--model", help="model id or tier (haiku, sonnet, opus); default: routed per task")
    @argument("--auto", action="store_true", help="choose the agent from the task and show the runner-up")
    @argument("--no-cache", action="store_true", help="do not reuse a cached answer")
    @argument("--no-stream", action="store_true", help="show the answer only when complete")
    @argument("-o", "--out", metavar="VAR", help="store the AgentResult in this variable")
    @argument("--max-tokens", type=int, metavar="N", help="cap the answer length")
    @argument("--over", metavar="EXPR", help="run the cell once per item of this iterable or DataFrame "
                                             "({{ item }} / {{ column }} in the cell)")
    @argument("--into", metavar="EXPR", help="with --over: where to put the answers (a DataFrame column)")
    @argument("--concurrency", type=int, metavar="N", help="with --over: calls in flight at once")
    @argument("--engine", choices=("async", "batches"), help="with --over: async calls or the Batches API")
    @argument("--budget", type=float, metavar="USD", help="with --over: refuse to start above this estimate")
    @no_var_expand
    @needs_local_scope
    @line_cell_magic
    def agent(self, line: str, cell: str | None = None, local_ns: dict[str, Any] | None = None) -> Any:
        """Send a task to a Claude agent and stream the answer into the cell.

        Cell form: `%%agent AGENT [options]`, the cell is the task. Line form: `%agent AGENT task…`.
        `{{ name }}` in the task inserts the notebook variable `name`; other braces are left alone.
        Examples:

            %%agent python-expert -o review
            Review this function: {{ source }}

            %agent --auto how do I pivot a DataFrame?
        """
        with short_errors(self.short_errors):
            return self._agent(line, cell, local_ns)

    def _agent(self, line: str, cell: str | None, local_ns: Mapping[str, Any] | None) -> Any:
        parser = AgentMagics.agent.parser  # type: ignore[attr-defined]
        if cell is None:
            head, task = _line_form(parser, line)
        else:
            head, task = line, cell
        args = parser.parse_args(_split(head))
        self._check_agent_args(args, task, line_form=cell is None)
        if args.over is not None:
            return self._over(args, task)
        from ..definitions import library, render_template

        task = render_template(task, self._namespace(local_ns))
        note = None
        if args.auto:
            agent, note = self._choose(task)
        else:
            agent = library().agent(args.agent).name
        if args.model is not None:
            from ..core.orchestrator import resolve_model

            resolve_model(args.model)
        self._run_agent(agent, task, args, note)

    def _check_agent_args(self, args: Namespace, task: str, *, line_form: bool) -> None:
        if args.auto and args.agent:
            raise usage_error(f"Give an agent or --auto, not both (got '{args.agent}' and --auto).")
        if not args.auto and not args.agent:
            raise usage_error("Name an agent (e.g. %%agent python-expert) or use --auto; %agents lists them.")
        if not task.strip():
            who = args.agent or "the agent"
            hint = (f"write the task after it: %agent {who} explain decorators" if line_form
                    else f"write the task in the cell below %%agent {who}")
            raise usage_error(f"The task is empty: {hint}.", "empty_task")
        if args.over is None:
            for attr, flag in _OVER_ONLY:
                if getattr(args, attr) is not None:
                    raise usage_error(f"{flag} only works with --over EXPR (one call per item).")
        self._check_var(args.out)

    def _choose(self, task: str) -> tuple[str, str]:
        from ..core.selection import select_agent

        candidates = select_agent(task, k=2)
        if not candidates:
            raise usage_error("--auto found no agent for this task: name one (%agents lists them).")

        def name(c: Any) -> str:
            return str(getattr(c.agent, "name", c.agent))

        best = candidates[0]
        note = f"--auto chose {name(best)} ({best.score:.2f})"
        if len(candidates) > 1:
            note += f", runner-up {name(candidates[1])} ({candidates[1].score:.2f})"
        return name(best), note

    def _run_agent(self, agent: str, task: str, args: Namespace, note: str | None) -> None:
        from ..core.orchestrator import run_agent
        from .widgets import result_view

        stream = self.stream and not args.no_stream
        view = result_view(agent, use_widgets=self._use_widgets(), shell=self.shell, model=args.model, note=note,
                           streaming=stream, backend=get_settings().resolved_backend)
        try:
            result = run_agent(agent, task, model=args.model, stream=stream, cache=self.cache and not args.no_cache,
                               on_text=view.on_text if stream else None, max_tokens=args.max_tokens)
        except KeyboardInterrupt:
            view.cancel()
            if not self.short_errors:
                raise
            raise cancelled(agent) from None
        except BaseException:
            view.discard()
            raise
        view.finish(result)
        self._store(args.out, result)

    def _over(self, args: Namespace, template: str) -> Any:
        """`--over`: one call per item (notebook.over); shows the results table unless they went
        into a variable (-o) or a DataFrame column (--into), which get a one-line summary."""
        from .over import run_over

        if args.auto:
            agent, note = self._choose(template)
            print(note)
        else:
            from ..definitions import library

            agent = library().agent(args.agent).name
        options: dict[str, Any] = {"into": args.into, "engine": args.engine or "async", "model": args.model,
                                   "budget": args.budget if args.budget is not None else self.budget,
                                   "cache": self.cache and not args.no_cache}
        if args.concurrency is not None:
            options["concurrency"] = args.concurrency
        try:
            frame = run_over(self.shell, agent, template=template, over=args.over, **options)
        except KeyboardInterrupt:
            if not self.short_errors:
                raise
            raise cancelled(f"{agent} --over {args.over}") from None
        if args.out is None and args.into is None:
            return frame
        self._store(args.out, frame)
        ok = int(frame["success"].sum())
        cost = float(frame["cost_usd"].fillna(0).sum())
        where = " · ".join(x for x in (f"into {args.into}" if args.into else "",
                                       f"-o {args.out}" if args.out else "") if x)
        print(f"{agent} over {args.over}: {len(frame)} calls · {ok} ok · ${cost:.6f} · {where}")
        return None

    # --- %agents ---------------------------------------------------------------------------------

    @no_var_expand
    @line_magic
    def agents(self, line: str = "") -> Any:
        """List the agents, or show one: `%agents`, `%agents show NAME`, `%agents status`
        (the circuit breakers per model)."""
        with short_errors(self.short_errors):
            from ..definitions import library
            from ..render import agent_card, agents_table

            words = line.split()
            if not words:
                return agents_table(library().agents())
            if words[0] == "show" and len(words) == 2:
                return agent_card(library().agent(words[1]))
            if words == ["status"]:
                try:
                    from ..core.resilience import status
                except ImportError:
                    print("Circuit-breaker status is not available in this version.")
                    return None
                return status()
            raise usage_error(f"Unknown %agents command '{line.strip()}': use %agents, %agents show NAME "
                              "or %agents status.")

    # --- %workflow -------------------------------------------------------------------------------

    @magic_arguments()
    @argument("command", help="list, show NAME, or the name of a workflow to run")
    @argument("params", nargs="*", help="show: a workflow name; run: inputs as key=value or key=$variable")
    @argument("-o", "--out", metavar="VAR", help="store the WorkflowResult in this variable")
    @argument("--sequential", action="store_true", help="run one step at a time (for comparison)")
    @argument("--no-cache", action="store_true", help="do not reuse cached answers")
    @no_var_expand
    @needs_local_scope
    @line_magic
    def workflow(self, line: str = "", local_ns: dict[str, Any] | None = None) -> Any:
        """List, show or run workflows with a live DAG of the steps.

            %workflow list
            %workflow show code-quality
            %workflow code-quality code=$source -o wf
        """
        with short_errors(self.short_errors):
            return self._workflow(line, local_ns)

    def _workflow(self, line: str, local_ns: Mapping[str, Any] | None) -> Any:
        from ..definitions import library
        from ..render import workflows_table
        from .dag_widget import workflow_card

        parser = AgentMagics.workflow.parser  # type: ignore[attr-defined]
        args = parser.parse_intermixed_args(_split(line))
        self._check_var(args.out)
        if args.command == "list" and not args.params:
            return workflows_table(library().workflows())
        if args.command == "show":
            if len(args.params) != 1:
                raise usage_error("Use %workflow show NAME (%workflow list shows the names).")
            return workflow_card(library().workflow(args.params[0]))
        spec = library().workflow(args.command)
        inputs = self._workflow_inputs(spec, args.params, self._namespace(local_ns))
        self._run_workflow(spec, inputs, args)
        return None

    def _workflow_inputs(self, spec: WorkflowSpec, params: list[str], ns: Mapping[str, Any]) -> dict[str, Any]:
        from ..errors import did_you_mean

        inputs: dict[str, Any] = {}
        example = " ".join(f"{i}=$my_{i}" for i in spec.inputs)
        for param in params:
            m = _INPUT.fullmatch(param)
            if m is None:
                raise usage_error(f"Expected key=value, got '{param}': e.g. %workflow {spec.name} {example}.",
                                  "workflow_error")
            key, value = m.groups()
            if key not in spec.inputs:
                hint = did_you_mean(key, spec.inputs) or f"It takes: {', '.join(spec.inputs) or 'no inputs'}."
                raise usage_error(f"Workflow '{spec.name}' has no input '{key}'. {hint}", "workflow_error")
            if key in inputs:
                raise usage_error(f"Input '{key}' is given twice.", "workflow_error")
            if value.startswith("$"):
                var = value[1:]
                if var not in ns:
                    hint = did_you_mean(var, list(ns)) or "Define it in a cell above, or pass the text directly."
                    raise usage_error(f"Notebook variable '{var}' (in {param}) is not defined. {hint}",
                                      "template_error")
                inputs[key] = ns[var]
            else:
                inputs[key] = value
        missing = [i for i in spec.inputs if i not in inputs]
        if missing:
            given = " ".join(f"{i}=$my_{i}" for i in missing)
            raise usage_error(f"Workflow '{spec.name}' needs input{'s' if len(missing) > 1 else ''} "
                              f"{', '.join(missing)}: %workflow {spec.name} {given}", "workflow_error")
        return inputs

    def _run_workflow(self, spec: WorkflowSpec, inputs: dict[str, Any], args: Namespace) -> None:
        from ..core.workflow import run_workflow
        from .dag_widget import DagView

        view = DagView(spec, use_widgets=self._use_widgets())
        try:
            result = run_workflow(spec.name, inputs, parallel=not args.sequential, on_event=view.on_event,
                                  cache=self.cache and not args.no_cache)
        except KeyboardInterrupt:
            view.cancel()
            if not self.short_errors:
                raise
            raise cancelled(f"workflow {spec.name}") from None
        except BaseException:
            view.discard()
            raise
        view.finish(result)
        self._store(args.out, result)


_QUESTION = re.compile(r"^(\s*)%agent(\s.*\?)\s*$")


def keep_question_mark(lines: list[str]) -> list[str]:
    """IPython reads a line ending in `?` as a help request, so `%agent --auto how do I pivot a
    DataFrame?` would show help on `DataFrame` instead of asking. This input transformer (run
    before IPython's help syntax) turns such a line into the magic call itself, question mark
    kept. Cells with triple quotes are left alone: the line could be inside a string; so are cell
    magics (`%%writefile`, `%%agent`, ...), whose body is data, not Python."""
    if any('"""' in line or "'''" in line for line in lines):
        return lines
    if next((line for line in lines if line.strip()), "").lstrip().startswith("%%"):
        return lines
    out = []
    for line in lines:
        m = _QUESTION.match(line)
        out.append(f"{m.group(1)}get_ipython().run_line_magic('agent', {m.group(2).strip()!r})\n" if m else line)
    return out


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics and the `AgentMagics` configurable (Magics does the latter)."""
    ipython.register_magics(AgentMagics(shell=ipython))
    cleanup = ipython.input_transformer_manager.cleanup_transforms
    if keep_question_mark not in cleanup:
        cleanup.append(keep_question_mark)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magics and the configurable again."""
    manager = ipython.magics_manager
    for kind, names in AgentMagics.magics.items():
        for name in names:
            manager.magics[kind].pop(name, None)
    manager.registry.pop(AgentMagics.__name__, None)
    ipython.configurables[:] = [c for c in ipython.configurables if not isinstance(c, AgentMagics)]
    cleanup = ipython.input_transformer_manager.cleanup_transforms
    cleanup[:] = [t for t in cleanup if t is not keep_question_mark]
