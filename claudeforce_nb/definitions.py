"""The agent, skill and workflow library: files on disk → frozen specs, checked together.

Search path: the shipped library first, then the user's folders from settings (`./agents`,
`./skills`, `./workflows` by default); a user file replaces a shipped one of the same name. Every
problem (file:line) is collected, never raised while loading, so one broken user file leaves the
rest usable: looking up the broken name raises `DefinitionError` with its problems, and
`python -m claudeforce_nb validate` prints them all. `library()` caches the load and reloads when a
file is added, removed or changed. Parsing of untrusted files lives in `_frontmatter`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config
from ._frontmatter import (
    NAME_RE,
    TEMPLATE_RE,
    Errors,
    ParseError,
    agent_fields,
    list_files,
    read_document,
    skill_fields,
    workflow_fields,
)
from .errors import (
    DefinitionError,
    InvalidNameError,
    TemplateError,
    UnknownNameError,
    WorkflowError,
    did_you_mean,
)

__all__ = [
    "NAME_RE", "AgentSpec", "Library", "Problem", "SkillSpec", "StepSpec", "WorkflowSpec", "check_name",
    "library", "render_template", "shipped_dirs", "validate", "validate_main",
]

logger = logging.getLogger("claudeforce_nb.definitions")

_RECHECK_S = 0.5  # library() stats the files for changes at most this often
_SUFFIXES = {"agent": (".md",), "skill": (".md",), "workflow": (".yaml", ".yml")}
_KINDS = ("skill", "agent", "workflow")  # load order: agents check skills, workflows check agents


def check_name(kind: str, name: Any) -> str:
    """Return `name` if it is a valid agent/skill/workflow name, else raise InvalidNameError."""
    if isinstance(name, str) and NAME_RE.fullmatch(name):
        return name
    shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
    raise InvalidNameError(f"Invalid {kind} name {shown}: use lowercase letters, digits and hyphens "
                           "(like 'python-expert').")


@dataclass(frozen=True)
class AgentSpec:
    name: str
    description: str
    domains: tuple[str, ...]
    skills: tuple[str, ...]
    body: str
    model: str | None = None
    min_tier: str | None = None
    max_tier: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    cache: bool = True
    path: Path | None = None
    source: str = "shipped"  # "shipped" | "user"
    content_hash: str = ""  # sha256 hex of the file bytes: caches key on it, so edits invalidate


@dataclass(frozen=True)
class SkillSpec:
    name: str
    description: str
    triggers: tuple[str, ...]
    body: str
    path: Path | None = None
    source: str = "shipped"
    content_hash: str = ""


@dataclass(frozen=True)
class StepSpec:
    id: str
    agent: str
    task: str
    depends_on: tuple[str, ...] = ()
    model: str | None = None
    cache: bool | None = None
    max_context_tokens: int | None = None  # budget for the upstream outputs pasted into the task


@dataclass(frozen=True)
class WorkflowSpec:
    name: str
    description: str
    inputs: tuple[str, ...]
    steps: tuple[StepSpec, ...]
    on_error: str = "stop"  # "stop" | "continue"
    concurrency: int | None = None
    path: Path | None = None
    source: str = "shipped"


@dataclass(frozen=True)
class Problem:
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"


def shipped_dirs() -> tuple[Path, Path, Path]:
    """agents, skills, workflows of the shipped library (inside a wheel: `_library/`)."""
    here = Path(__file__).parent
    return tuple(  # type: ignore[return-value]
        here / "_library" / kind if (here / "_library" / kind).is_dir() else here.parent / kind
        for kind in ("agents", "skills", "workflows")
    )


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


Dirs = Path | str | Iterable[Path | str] | None  # one folder, several, or none


def _as_paths(dirs: Dirs) -> list[Path]:
    return [Path(dirs)] if isinstance(dirs, str | Path) else [Path(p) for p in dirs or ()]


_notified: set[Path] = set()  # user files already announced as overriding a shipped one
_notified_lock = threading.Lock()


class Library:
    """One consistent load of agents, skills and workflows: the shipped library (unless
    `include_shipped=False`) plus the given user folders, which win on name clashes."""

    def __init__(self, agents_dirs: Dirs = None, skills_dirs: Dirs = None, workflows_dirs: Dirs = None, *,
                 include_shipped: bool = True) -> None:
        shipped = dict(zip(("agent", "skill", "workflow"), shipped_dirs(), strict=True))
        user = {"agent": agents_dirs, "skill": skills_dirs, "workflow": workflows_dirs}
        self._dirs: dict[str, list[tuple[Path, str]]] = {}
        for kind in _KINDS:
            ship = shipped[kind].resolve()
            mine = dict.fromkeys(Path(os.path.abspath(p)) for p in _as_paths(user[kind]))  # against the CWD
            self._dirs[kind] = ([(ship, "shipped")] if include_shipped else []) + [
                (p, "user") for p in mine if not (include_shipped and p.resolve() == ship)]
        self.folders = self.folder_stamp()  # taken before reading, like the fingerprint below
        self.fingerprint = self.stat_fingerprint()  # taken before reading, so a racing edit reloads later
        self._specs: dict[str, dict[str, Any]] = {kind: {} for kind in _KINDS}
        self._broken: dict[str, dict[str, list[Problem]]] = {kind: {} for kind in _KINDS}
        self._problems: list[Problem] = []
        for kind in _KINDS:
            self._load(kind)
        self._problems.sort(key=lambda p: (p.path, p.line or 0))

    def folder_stamp(self) -> tuple[int | None, ...]:
        """The mtime of each user folder: it changes when a file is added, removed or renamed
        there, and costs one stat per folder, so `library()` checks it on every call (a notebook
        writes an agent file and uses it in the very next cell)."""
        out: list[int | None] = []
        for dirs in self._dirs.values():
            for directory, source in dirs:
                if source == "user":
                    try:
                        out.append(os.stat(directory).st_mtime_ns)
                    except OSError:
                        out.append(None)
        return tuple(out)

    def stat_fingerprint(self) -> tuple[Any, ...]:
        """Path, mtime, size and inode of every definition file: cheap, and changes on any edit."""
        out: list[Any] = []
        for kind, dirs in self._dirs.items():
            for directory, _ in dirs:
                for p in list_files(directory, _SUFFIXES[kind]):
                    try:
                        st = p.stat()
                        out.append((str(p), st.st_mtime_ns, st.st_size, st.st_ino))
                    except OSError:
                        out.append((str(p), None))
        return tuple(out)

    def _load(self, kind: str) -> None:
        chosen: dict[str, tuple[Path, str]] = {}
        for group in ("shipped", "user"):
            seen: dict[str, Path] = {}
            for directory in [d for d, source in self._dirs[kind] if source == group]:
                for path in list_files(directory, _SUFFIXES[kind]):
                    if not NAME_RE.fullmatch(path.stem):
                        self._add(path, f"file name '{path.name}' is not a valid {kind} name: use lowercase "
                                        "letters, digits and hyphens")
                    elif path.stem in seen:
                        first = _display(seen[path.stem])
                        self._add(path, f"duplicate {kind} '{path.stem}': already defined in {first}")
                    else:
                        seen[path.stem] = path
                        if path.stem in chosen:
                            self._notify(kind, path)
                        chosen[path.stem] = (path, group)
        for name, (path, source) in sorted(chosen.items()):
            errors: Errors = []
            spec = self._load_file(kind, path, source, errors)
            if spec is None:
                problems = [Problem(_display(path), line, msg) for line, msg in errors]
                self._problems.extend(problems)
                self._broken[kind][name] = problems
            else:
                self._specs[kind][name] = spec

    def _load_file(self, kind: str, path: Path, source: str, errors: Errors) -> Any:
        try:
            doc = read_document(path, front_matter=kind != "workflow")
            extra: dict[str, Any] = {"path": path, "source": source}
            if kind == "workflow":
                fields = workflow_fields(doc.data, doc.lines, errors, agents=self._names("agent"),
                                         stem=path.stem, start_line=doc.start_line)
                return None if fields is None else _workflow_spec(fields, **extra)
            extra.update(body=doc.body, content_hash=doc.content_hash)
            if kind == "skill":
                fields = skill_fields(doc, path.stem, errors)
                return None if fields is None else SkillSpec(**fields, **extra)
            fields = agent_fields(doc, path.stem, errors, skills=self._names("skill"))
            return None if fields is None else AgentSpec(**fields, **extra)
        except ParseError as exc:
            errors.append((exc.line, exc.message))
        except Exception as exc:  # noqa: BLE001 - file content must never surface as a traceback
            errors.append((None, f"could not load the file: {type(exc).__name__}: {exc}"))
        return None

    def _add(self, path: Path, message: str) -> None:
        self._problems.append(Problem(_display(path), None, message))

    @staticmethod
    def _notify(kind: str, path: Path) -> None:
        with _notified_lock:
            if path in _notified:
                return
            _notified.add(path)
        logger.warning("Using your %s %s instead of the shipped one.", kind, _display(path))

    def _names(self, kind: str) -> set[str]:
        # A broken definition still counts as known: its own file carries the problem.
        return set(self._specs[kind]) | set(self._broken[kind])

    def _get(self, kind: str, name: str) -> Any:
        check_name(kind, name)
        if name in self._specs[kind]:
            return self._specs[kind][name]
        if name in self._broken[kind]:
            problems = self._broken[kind][name]
            lines = "".join(f"\n{p}" for p in problems[1:])
            raise DefinitionError(f"The {kind} '{name}' could not be loaded: {problems[0]}{lines}",
                                  hint="Fix it; `python -m claudeforce_nb validate` lists all problems.")
        raise UnknownNameError(kind, name, self._specs[kind])

    def agents(self) -> list[AgentSpec]:
        return [self._specs["agent"][n] for n in self.agent_names()]

    def agent(self, name: str) -> AgentSpec:
        return self._get("agent", name)  # type: ignore[no-any-return]

    def agent_names(self) -> list[str]:
        return sorted(self._specs["agent"])

    def skills(self) -> list[SkillSpec]:
        return [self._specs["skill"][n] for n in self.skill_names()]

    def skill(self, name: str) -> SkillSpec:
        return self._get("skill", name)  # type: ignore[no-any-return]

    def skill_names(self) -> list[str]:
        return sorted(self._specs["skill"])

    def workflows(self) -> list[WorkflowSpec]:
        return [self._specs["workflow"][n] for n in self.workflow_names()]

    def workflow(self, name: str) -> WorkflowSpec:
        return self._get("workflow", name)  # type: ignore[no-any-return]

    def workflow_names(self) -> list[str]:
        return sorted(self._specs["workflow"])

    def workflow_from_dict(self, data: Mapping[str, Any], *, source_name: str = "<dict>") -> WorkflowSpec:
        """A workflow given as a dict (the YAML's fields; description optional), checked against
        this library's agents. All problems are raised at once, one per line, as WorkflowError."""
        errors: Errors = []
        fields = workflow_fields(data, {}, errors, agents=self._names("agent"))
        if fields is None:
            problems = [str(Problem(source_name, line, msg)) for line, msg in errors]
            label = data.get("name") if isinstance(data, Mapping) else None
            name = f" '{label}'" if isinstance(label, str) and NAME_RE.fullmatch(label) else ""
            raise WorkflowError(f"Invalid workflow{name}: " + "\n".join(problems))
        return _workflow_spec(fields, None, "user")

    def problems(self) -> list[Problem]:
        """Every problem found in every file loaded, sorted by file and line."""
        return list(self._problems)


def _workflow_spec(fields: dict[str, Any], path: Path | None, source: str) -> WorkflowSpec:
    steps = tuple(StepSpec(**step) for step in fields.pop("steps"))
    return WorkflowSpec(**fields, steps=steps, path=path, source=source)


_lock = threading.Lock()
_cached: tuple[tuple[Any, ...], float, Library] | None = None


def _settings_dirs() -> tuple[tuple[Path, ...], tuple[Path, ...], tuple[Path, ...]]:
    s = config.get_settings()
    return s.agents_dirs, s.skills_dirs, s.workflows_dirs


def library() -> Library:
    """The process-wide library for the current settings, reloaded when any file changed."""
    global _cached
    dirs = _settings_dirs()
    key = (os.getcwd(), dirs)  # relative folders mean something else in another CWD
    now = time.monotonic()
    cached = _cached
    if cached is not None and cached[0] == key and now - cached[1] < _RECHECK_S \
            and cached[2].folder_stamp() == cached[2].folders:
        return cached[2]
    with _lock:
        cached = _cached
        if cached is not None and cached[0] == key:
            folders = cached[2].folder_stamp()
            if cached[2].stat_fingerprint() == cached[2].fingerprint:  # e.g. only a non-definition file came
                cached[2].folders = folders
                _cached = (key, now, cached[2])
                return cached[2]
        lib = Library(*dirs)
        _cached = (key, now, lib)
        return lib


def validate(agents_dirs: Dirs = None, skills_dirs: Dirs = None, workflows_dirs: Dirs = None, *,
             include_shipped: bool = True) -> list[Problem]:
    """Every problem of the shipped library plus the given folders, which must exist. With no
    folders given at all, the settings' folders are checked: what `library()` would load."""
    return _check(agents_dirs, skills_dirs, workflows_dirs, include_shipped=include_shipped)[0]


def _check(*given: Dirs, include_shipped: bool = True) -> tuple[list[Problem], Library]:
    if all(d is None for d in given):
        dirs: list[list[Path]] = [list(d) for d in _settings_dirs()]
        missing: list[Problem] = []
    else:
        dirs = [_as_paths(d) for d in given]
        missing = [Problem(_display(p), None, "directory not found") for group in dirs for p in group
                   if not p.is_dir()]
    lib = Library(*dirs, include_shipped=include_shipped)
    return missing + lib.problems(), lib


def render_template(template: str, context: Mapping[str, Any]) -> str:
    """Replace `{{ name }}` / `{{ a.b.c }}` with values from `context` (mappings or attributes).

    Everything else, single braces and `{{` that is not a plain dotted name, is left untouched;
    substituted values are never re-scanned, so user text cannot inject further expansions.
    """

    def substitute(match: re.Match[str]) -> str:
        expr = match.group(1)
        value: Any = context
        for part in expr.split("."):
            if isinstance(value, Mapping) and part in value:
                value = value[part]
            elif not isinstance(value, Mapping) and not part.startswith("_") and hasattr(value, part):
                value = getattr(value, part)
            else:
                names = _available(context)
                listing = ", ".join(names[:20]) + (" …" if len(names) > 20 else "")
                hint = [did_you_mean(expr, names), f"Available: {listing}." if names else "None are set."]
                raise TemplateError(f"Template variable '{{{{ {expr} }}}}' is not defined.",
                                    hint=" ".join(filter(None, hint)))
        return value if isinstance(value, str) else str(value)

    return TEMPLATE_RE.sub(substitute, template)


def _available(context: Mapping[str, Any], prefix: str = "", depth: int = 0) -> list[str]:
    names: list[str] = []
    for key, value in context.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and depth < 2:
            names.extend(_available(value, name + ".", depth + 1))
        else:
            names.append(name)
    return sorted(names)


def validate_main(argv: Sequence[str] | None = None) -> int:
    """`python -m claudeforce_nb validate [--agents DIR] [--skills DIR] [--workflows DIR]`."""
    parser = argparse.ArgumentParser(
        prog="python -m claudeforce_nb validate", allow_abbrev=False,
        description="Check the shipped agents, skills and workflows together with your own folders.",
    )
    for kind in ("agents", "skills", "workflows"):
        parser.add_argument(f"--{kind}", action="append", metavar="DIR", help=f"folder of {kind}, repeatable")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a bad flag: argparse already printed the message
        return exc.code if isinstance(exc.code, int) else 2
    problems, lib = _check(args.agents, args.skills, args.workflows)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found", file=sys.stderr)
        return 1
    counts = f"{len(lib.agents())} agents, {len(lib.skills())} skills, {len(lib.workflows())} workflows"
    print(f"ok: {counts} — no problems")
    return 0
