"""Untrusted definition files → checked plain fields, each problem with its line number.

Agent, skill and workflow files come from the user's disk, so everything hostile is handled here,
in one place: oversized, binary and non-UTF-8 files, unterminated front matter, YAML tags
(`yaml.SafeLoader` only, so `!!python/object` is refused, never run), duplicate keys, deep nesting.
Then every field is type-checked and workflows are checked as graphs (agents, dependencies,
cycles, template references). Nothing here raises for bad content: problems are appended to an
`errors` list of (line, message) so a validator reports them all at once. `definitions` turns the
fields into frozen specs and owns the search path, caching and lookups.
"""

from __future__ import annotations

import hashlib
import logging
import re
import reprlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

import yaml

from .config import TIERS
from .errors import did_you_mean

__all__ = [
    "MAX_BYTES", "NAME_RE", "TEMPLATE_RE", "Document", "Errors", "FieldReader", "ParseError", "agent_fields",
    "list_files", "parse_yaml", "read_document", "skill_fields", "workflow_fields",
]

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")  # step ids and input names
TEMPLATE_RE = re.compile(r"\{\{\s*([A-Za-z_][\w.-]*)\s*\}\}")
MAX_BYTES = 1024 * 1024
MAX_STEPS = 1000  # keeps the graph checks cheap on hostile files; real workflows have a handful
_MARK_DEPTH = 3  # line marks are kept for e.g. ("steps", 0, "agent"); deeper values need none

LineKey = tuple[Any, ...]
Errors = list[tuple[int | None, str]]


class ParseError(Exception):
    """The file cannot be read as a definition at all."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.message = message
        self.line = line
        super().__init__(message)


@dataclass(frozen=True)
class Document:
    data: dict[str, Any]  # the YAML mapping (front matter, or the whole workflow file)
    body: str  # Markdown after the front matter; "" for YAML files
    start_line: int  # 1-based line of the opening '---' (1 for YAML files)
    lines: dict[LineKey, int]  # ("steps", 0, "agent") -> 1-based line of that key
    content_hash: str  # sha256 hex of the file bytes


def read_document(path: Path, *, front_matter: bool) -> Document:
    """Read `path` as Markdown with YAML front matter (`front_matter=True`) or as a YAML file."""
    raw = _read_bytes(path)
    text = _decode(raw)
    start_line, body = 1, ""
    if front_matter:
        lines = text.splitlines()
        if not lines or lines[0].rstrip() != "---":
            raise ParseError("missing YAML front matter: the file must start with a '---' line", 1)
        end = next((i for i in range(1, len(lines)) if lines[i].rstrip() in ("---", "...")), None)
        if end is None:
            raise ParseError("front matter is not closed: add a '---' line after the fields", 1)
        yaml_text = "\n".join(lines[1:end])
        body = "\n".join(lines[end + 1:]).strip()
        data, marks = parse_yaml(yaml_text, line_offset=1)
    else:
        data, marks = parse_yaml(text)
    if data is None:
        raise ParseError("the YAML is empty: 'name', 'description' and more are required", start_line)
    if not isinstance(data, dict):
        raise ParseError(f"the YAML must be a mapping of fields, not a {_type_name(data)}", start_line)
    return Document(data, body, start_line, marks, hashlib.sha256(raw).hexdigest())


def _read_bytes(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ParseError(f"file is larger than {MAX_BYTES // 1024} KiB; definitions are small text files")
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)  # the file may grow between stat() and read()
    except OSError as exc:
        raise ParseError(f"cannot read file: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise ParseError(f"file is larger than {MAX_BYTES // 1024} KiB; definitions are small text files")
    return raw


def _decode(raw: bytes) -> str:
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise ParseError("binary file (contains NUL bytes); definitions must be UTF-8 text", line)
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ParseError(f"not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8", line) from None


def parse_yaml(text: str, *, line_offset: int = 0) -> tuple[Any, dict[LineKey, int]]:
    """Safe-load `text` and map key paths to 1-based file lines (`line_offset` lines precede it)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 + line_offset if mark is not None else None
        what = " ".join(filter(None, [exc.context, exc.problem])) or "invalid YAML"
        if "constructor for the tag" in what:
            what += " (YAML tags are not allowed; use plain values)"
        raise ParseError(f"YAML error: {what}", line) from None
    except yaml.YAMLError as exc:
        raise ParseError(f"YAML error: {exc}", line_offset + 1) from None
    except RecursionError:
        raise ParseError("YAML is nested too deeply", line_offset + 1) from None
    finally:
        loader.dispose()
    marks: dict[LineKey, int] = {}
    if node is not None:
        _collect_marks(node, (), marks, line_offset)
    return data, marks


def _collect_marks(node: yaml.Node, path: LineKey, marks: dict[LineKey, int], offset: int) -> None:
    if len(path) >= _MARK_DEPTH:
        return
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is None:
                continue
            line = key_node.start_mark.line + 1 + offset
            if key in seen:
                raise ParseError(f"duplicate key '{key}'", line)
            seen.add(key)
            marks[path + (key,)] = line
            _collect_marks(value_node, path + (key,), marks, offset)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            marks[path + (i,)] = item.start_mark.line + 1 + offset
            _collect_marks(item, path + (i,), marks, offset)


def _type_name(value: Any) -> str:
    names: dict[type, str] = {dict: "mapping", list: "list", str: "string"}
    return names.get(type(value), type(value).__name__)


_repr = reprlib.Repr()  # bounded: a YAML alias bomb must not be expanded into an error message
_repr.maxlevel, _repr.maxstring, _repr.maxother = 2, 40, 40


def _short(value: Any) -> str:
    text = _repr.repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class FieldReader:
    """Typed getters over one mapping; each bad or missing field appends (line, message) to
    `errors` and yields None, so every problem of a file is found in one pass."""

    def __init__(
        self,
        data: Mapping[str, Any],
        errors: Errors,
        *,
        lines: Mapping[LineKey, int] | None = None,
        path: LineKey = (),
        line: int | None = None,
        label: str = "",
    ) -> None:
        self.data, self.errors, self.lines = data, errors, lines or {}
        self.path, self.line, self.label = path, line, label

    def line_of(self, key: str) -> int | None:
        return self.lines.get(self.path + (key,), self.line)

    def error(self, key: str | None, message: str) -> None:
        self.errors.append((self.line if key is None else self.line_of(key), self.label + message))

    def _get(self, key: str, required: bool) -> Any:
        value = self.data.get(key)
        if value is None and required:
            self.error(None, f"missing required field '{key}'")
        return value

    def text(self, key: str, *, required: bool = True) -> str | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.error(key, f"field '{key}' must be a non-empty string, got {_short(value)}")
            return None
        return value.strip()

    def text_list(self, key: str, *, required: bool = True, empty: bool = True) -> tuple[str, ...] | None:
        value = self._get(key, required)
        if value is None:
            return None if required else ()
        if isinstance(value, str):  # `depends_on: lint` is a natural shorthand for [lint]
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.error(key, f"field '{key}' must be a list of strings, got {_short(value)}")
            return None
        if not value and not empty:
            self.error(key, f"field '{key}' must list at least one entry")
            return None
        return tuple(v.strip() for v in value)

    def number(self, key: str, low: float, high: float) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            self.error(key, f"field '{key}' must be a number from {low:g} to {high:g}, got {_short(value)}")
            return None
        return float(value)

    def positive_int(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self.error(key, f"field '{key}' must be a positive integer, got {_short(value)}")
            return None
        return value

    def flag(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.error(key, f"field '{key}' must be true or false, got {_short(value)}")
            return None
        return value

    def choice(self, key: str, choices: tuple[str, ...]) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if value not in choices:
            self.error(key, f"field '{key}' must be one of {', '.join(choices)}, got {_short(value)}")
            return None
        return str(value)

    def reject_unknown(self, allowed: tuple[str, ...]) -> None:
        for key in self.data:
            if key not in allowed:
                hint = did_you_mean(str(key), allowed)
                self.error(str(key), f"unknown field '{key}'" + (f"; {hint}" if hint else ""))


def _hint(name: str, known: Iterable[str]) -> str:
    hint = did_you_mean(name, known)
    return f"; {hint}" if hint else ""


def _name(f: FieldReader, kind: str, stem: str | None) -> str | None:
    name = f.text("name")
    if name is None:
        return None
    if not NAME_RE.fullmatch(name):
        f.error("name", f"invalid {kind} name {_short(name)}: use lowercase letters, digits and hyphens")
        return None
    if stem is not None and name != stem:
        f.error("name", f"name '{name}' does not match the file name '{stem}'; rename one of them")
        return None
    return name


def agent_fields(doc: Document, stem: str, errors: Errors, *, skills: Iterable[str]) -> dict[str, Any] | None:
    """AgentSpec fields of an agent file, or None (with `errors` filled) when anything is wrong."""
    f = FieldReader(doc.data, errors, lines=doc.lines, line=doc.start_line)
    f.reject_unknown(("name", "description", "domains", "skills", "model", "min_tier", "max_tier",
                      "temperature", "max_tokens", "cache"))
    out: dict[str, Any] = {
        "name": _name(f, "agent", stem), "description": f.text("description"),
        "domains": f.text_list("domains", empty=False), "skills": f.text_list("skills"),
        "model": f.text("model", required=False), "min_tier": f.choice("min_tier", TIERS),
        "max_tier": f.choice("max_tier", TIERS), "temperature": f.number("temperature", 0, 1),
        "max_tokens": f.positive_int("max_tokens"), "cache": f.flag("cache") is not False,
    }
    low, high = out["min_tier"], out["max_tier"]
    if low and high and TIERS.index(low) > TIERS.index(high):
        f.error("min_tier", f"min_tier '{low}' is above max_tier '{high}'")
    known = set(skills)
    for skill in out["skills"] or ():
        if skill not in known:
            f.error("skills", f"unknown skill '{skill}'{_hint(skill, known)}")
    if not doc.body:
        errors.append((doc.start_line, "the body (the system prompt, after the front matter) is empty"))
    return None if errors else out


def skill_fields(doc: Document, stem: str, errors: Errors) -> dict[str, Any] | None:
    """SkillSpec fields of a skill file, or None (with `errors` filled) when anything is wrong."""
    f = FieldReader(doc.data, errors, lines=doc.lines, line=doc.start_line)
    f.reject_unknown(("name", "description", "triggers"))
    out: dict[str, Any] = {
        "name": _name(f, "skill", stem), "description": f.text("description"),
        "triggers": f.text_list("triggers", empty=False),
    }
    if not doc.body:
        errors.append((doc.start_line, "the body (the skill's guidance, after the front matter) is empty"))
    return None if errors else out


def workflow_fields(
    data: Any, lines: Mapping[LineKey, int], errors: Errors, *, agents: Iterable[str],
    stem: str | None = None, start_line: int | None = None,
) -> dict[str, Any] | None:
    """WorkflowSpec fields (steps as dicts of StepSpec fields), fully checked: types, agents,
    dependencies, cycles, template references. `stem` is None for a workflow given as a dict,
    which may then omit its description."""
    if not isinstance(data, Mapping):
        errors.append((start_line, "a workflow must be a mapping with name, description and steps"))
        return None
    f = FieldReader(data, errors, lines=lines, line=start_line)
    f.reject_unknown(("name", "description", "inputs", "steps", "on_error", "concurrency"))
    out: dict[str, Any] = {
        "name": _name(f, "workflow", stem),
        "description": f.text("description", required=stem is not None) or "",
        "inputs": f.text_list("inputs", required=False) or (),
        "on_error": f.choice("on_error", ("stop", "continue")) or "stop",
        "concurrency": f.positive_int("concurrency"),
    }
    for bad in [i for i in out["inputs"] if not IDENT_RE.fullmatch(i)]:
        f.error("inputs", f"input name {_short(bad)} must be letters, digits, '_' or '-'")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        f.error(None if raw_steps is None else "steps", "field 'steps' must be a non-empty list of steps")
        raw_steps = []
    elif len(raw_steps) > MAX_STEPS:
        f.error("steps", f"a workflow may have at most {MAX_STEPS} steps, this one has {len(raw_steps)}")
        raw_steps = []
    steps: list[tuple[dict[str, Any], FieldReader]] = []
    for i, raw in enumerate(raw_steps):
        line = lines.get(("steps", i), start_line)
        if not isinstance(raw, Mapping):
            errors.append((line, f"step {i + 1} must be a mapping with id, agent and task"))
            continue
        label = f"step '{raw['id']}': " if isinstance(raw.get("id"), str) else f"step {i + 1}: "
        s = FieldReader(raw, errors, lines=lines, path=("steps", i), line=line, label=label)
        s.reject_unknown(("id", "agent", "task", "depends_on", "model", "cache", "max_context_tokens"))
        step: dict[str, Any] = {
            "id": s.text("id"), "agent": s.text("agent"), "task": s.text("task"),
            "depends_on": s.text_list("depends_on", required=False), "model": s.text("model", required=False),
            "cache": s.flag("cache"), "max_context_tokens": s.positive_int("max_context_tokens"),
        }
        if step["id"] is not None and not IDENT_RE.fullmatch(step["id"]):
            s.error("id", f"step id {_short(step['id'])} must be letters, digits, '_' or '-'")
        if step["id"] and step["agent"] and step["task"] is not None and step["depends_on"] is not None:
            steps.append((step, s))
    _check_steps(steps, set(out["inputs"]), set(agents))
    out["steps"] = [step for step, _ in steps]
    return None if errors else out


def _check_steps(steps: list[tuple[dict[str, Any], FieldReader]], inputs: set[str], agents: set[str]) -> None:
    ids: dict[str, FieldReader] = {}
    for step, f in steps:
        if step["id"] in ids:
            f.error("id", f"duplicate step id '{step['id']}'")
        ids.setdefault(step["id"], f)
        if step["agent"] not in agents:
            f.error("agent", f"unknown agent '{step['agent']}'{_hint(step['agent'], agents)}")
    for step, f in steps:
        for dep in step["depends_on"]:
            if dep not in ids:
                f.error("depends_on", f"depends on unknown step '{dep}'{_hint(dep, ids)}")
    graph = {step["id"]: {d for d in step["depends_on"] if d in ids} for step, _ in steps}
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        cycle = [str(node) for node in exc.args[1]]
        ids[cycle[0]].error("depends_on", f"cycle: {' -> '.join(cycle)} (remove one of these dependencies)")
    for step, f in steps:
        ancestors = _ancestors(step["id"], graph)
        for match in TEMPLATE_RE.finditer(step["task"]):
            expr, parts = match.group(1), match.group(1).split(".")
            shown = "'{{ " + expr + " }}'"
            if parts[0] == "inputs" and len(parts) == 2:
                if parts[1] not in inputs:
                    declared = ", ".join(sorted(inputs)) or "none declared"
                    f.error("task", f"template uses {shown} but '{parts[1]}' is not an input ({declared})")
            elif parts[0] == "steps" and len(parts) == 3 and parts[2] == "output":
                if parts[1] not in ids:
                    f.error("task", f"template uses {shown} but there is no step '{parts[1]}'")
                elif parts[1] not in ancestors:
                    f.error("task", f"template uses {shown} but '{parts[1]}' is not a dependency; "
                                    "add it to depends_on")
            else:
                f.error("task", f"unknown template expression {shown}; use {{{{ inputs.NAME }}}} "
                                "or {{ steps.ID.output }}")


def _ancestors(step_id: str, graph: Mapping[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(graph.get(step_id, ()))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return seen


def list_files(directory: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Definition files of one folder, sorted; README and hidden/underscore files are not definitions."""
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return []
    return [p for p in entries if p.suffix in suffixes and p.is_file()
            and not p.name.startswith((".", "_")) and p.stem.lower() != "readme" and _inside(p, directory)]


_outside_reported: set[Path] = set()


def _inside(path: Path, directory: Path) -> bool:
    """False for a symlink that leads out of its folder: names resolve only inside library folders."""
    if not path.is_symlink():
        return True
    try:
        if path.resolve().is_relative_to(directory.resolve()):
            return True
    except (OSError, RuntimeError):  # a symlink loop
        pass
    if path not in _outside_reported:
        _outside_reported.add(path)
        logging.getLogger("claudeforce_nb.definitions").warning(
            "Ignoring %s: it is a symlink to a file outside %s; copy the file into the folder instead.",
            path, directory)
    return False
