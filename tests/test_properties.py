"""Property tests: the parsers of untrusted input — agent/skill files, workflow dicts, templates,
the metrics log — never raise anything but our own ClaudeforceError types, whatever they get."""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from claudeforce_nb.definitions import AgentSpec, Library, SkillSpec, WorkflowSpec, library, render_template
from claudeforce_nb.errors import ClaudeforceError, DefinitionError, TemplateError, UnknownNameError, WorkflowError
from claudeforce_nb.store.metrics import COLUMNS, load_metrics

# No example database: every test runs in its own temporary directory, so it would only litter.
SETTINGS = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Plain data of the kind YAML and JSON can hold, nested a little.
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=20))
plain = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                     max_leaves=12)

AGENT_KEYS = ["name", "description", "domains", "skills", "model", "min_tier", "max_tier", "temperature",
              "max_tokens", "cache"]
agent_like = st.dictionaries(
    st.one_of(st.sampled_from(AGENT_KEYS), st.text(max_size=8)),
    st.one_of(plain, st.sampled_from(["helper", "haiku", "opus", "claude-haiku-5-5", "pytest-patterns"])),
    max_size=8,
)


def _load(kind: str, raw: bytes) -> None:
    """Write `raw` as the one file of a fresh folder, load it, look it up."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        suffix = ".yaml" if kind == "workflow" else ".md"
        (folder / f"helper{suffix}").write_bytes(raw)
        lib = Library(**{f"{kind}s_dirs": folder}, include_shipped=False)  # type: ignore[arg-type]
        lib.problems()
        try:
            spec = getattr(lib, kind)("helper")
        except (DefinitionError, UnknownNameError):
            return
        assert isinstance(spec, {"agent": AgentSpec, "skill": SkillSpec, "workflow": WorkflowSpec}[kind])


@SETTINGS
@given(st.binary(max_size=400))
def test_agent_file_of_any_bytes_loads_or_reports(raw: bytes) -> None:
    _load("agent", raw)


@SETTINGS
@given(st.text(max_size=300), st.text(max_size=100))
def test_front_matter_of_any_text_loads_or_reports(front: str, body: str) -> None:
    _load("agent", f"---\n{front}\n---\n{body}".encode())
    _load("skill", f"---\n{front}\n---\n{body}".encode())


@SETTINGS
@given(agent_like, st.text(max_size=50))
def test_front_matter_of_any_fields_loads_or_reports(fields: dict[str, Any], body: str) -> None:
    front = yaml.safe_dump(fields, allow_unicode=True)
    _load("agent", f"---\n{front}---\n{body}".encode())
    _load("skill", f"---\n{front}---\n{body}".encode())


@SETTINGS
@given(st.one_of(st.binary(max_size=300), plain.map(lambda v: yaml.safe_dump(v).encode())))
def test_workflow_file_of_any_content_loads_or_reports(raw: bytes) -> None:
    _load("workflow", raw)


ids = st.sampled_from(["a", "b", "c", "review", "x-1", "", "A B", "steps"])
step = st.dictionaries(
    st.sampled_from(["id", "agent", "task", "depends_on", "model", "cache", "max_context_tokens", "extra"]),
    st.one_of(
        ids,
        st.sampled_from(["python-expert", "code-reviewer", "no-such-agent", "sonnet", "gpt-4"]),
        st.sampled_from(["Do {{ inputs.code }}", "Use {{ steps.a.output }}", "{{ steps.zz.output }}", "{{ x }}"]),
        st.lists(ids, max_size=3),
        plain,
    ),
    max_size=7,
)
workflow_like = st.dictionaries(
    st.sampled_from(["name", "description", "inputs", "steps", "on_error", "concurrency", "other"]),
    st.one_of(st.lists(step, max_size=4), st.lists(st.sampled_from(["code", "x", "1bad"]), max_size=3),
              st.sampled_from(["flow", "stop", "continue", "Bad Name"]), plain),
    max_size=7,
)


@SETTINGS
@given(st.one_of(workflow_like, plain))
def test_workflow_validator_accepts_or_raises_workflow_error(data: Any) -> None:
    try:
        spec = library().workflow_from_dict(data)
    except WorkflowError as exc:
        assert str(exc)
        return
    except ClaudeforceError:
        return
    assert isinstance(spec, WorkflowSpec) and spec.steps


names = st.text(alphabet=string.ascii_letters + "_.-", min_size=1, max_size=8)
contexts = st.dictionaries(names, st.one_of(plain, st.dictionaries(names, plain, max_size=3)), max_size=4)
template_text = st.lists(st.one_of(st.text(max_size=10), st.sampled_from(["{{", "}}", "{{ ", " }}", "{", "}", "."]),
                                   names), max_size=12).map("".join)


@SETTINGS
@given(template_text, contexts)
def test_template_renderer_returns_text_or_raises_template_error(template: str, context: dict[str, Any]) -> None:
    try:
        out = render_template(template, context)
    except TemplateError as exc:
        assert str(exc).startswith("Template variable")
        return
    assert isinstance(out, str)


@SETTINGS
@given(names.filter(lambda n: n[0].isalpha() and "." not in n), st.text(max_size=30))
def test_template_values_are_never_expanded_again(name: str, value: str) -> None:
    assert render_template("<{{ %s }}>" % name, {name: value + "{{ " + name + " }}"}) == f"<{value}{{{{ {name} }}}}>"


metric_values = st.one_of(plain, st.sampled_from(["2026-01-01T00:00:00+00:00", "yesterday", "", "NaN"]))
metric_line = st.dictionaries(st.sampled_from([c for c, _ in COLUMNS] + ["other"]), metric_values, max_size=10)


def _lines(records: list[Any], junk: bytes) -> bytes:
    return b"".join(json.dumps(r, default=str).encode() + b"\n" for r in records) + junk


@settings(SETTINGS, max_examples=60)  # each example builds a DataFrame
@given(st.one_of(st.binary(max_size=500),
                 st.builds(_lines, st.lists(st.one_of(metric_line, plain), max_size=6), st.binary(max_size=40))))
@example(b"null\n")  # found by this test: pyarrow's JSON reader segfaulted on a leading `null` line
@example(b"\n \tnull\n" + json.dumps({"timestamp": "2026-01-01T00:00:00+00:00"}).encode() + b"\n")
def test_metrics_loader_never_raises_on_any_bytes(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "executions.jsonl"
        path.write_bytes(raw)
        df = load_metrics(path)
    assert df.attrs["skipped_lines"] >= 0
    assert len(df) <= raw.count(b"\n") + 1
    assert {c for c, _ in COLUMNS} <= set(df.columns)
