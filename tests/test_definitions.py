"""Tests for the agent/skill/workflow library: the shipped rosters, every validator rule, user
overrides, hot reload, hostile files and template rendering."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from claudeforce_nb import config, definitions
from claudeforce_nb.definitions import (
    NAME_RE,
    AgentSpec,
    Library,
    Problem,
    StepSpec,
    WorkflowSpec,
    check_name,
    library,
    render_template,
    shipped_dirs,
    validate,
    validate_main,
)
from claudeforce_nb.errors import (
    DefinitionError,
    InvalidNameError,
    TemplateError,
    UnknownNameError,
    UsageError,
    WorkflowError,
)

FIXTURES = Path(__file__).parent / "fixtures" / "library"

DESIGN_AGENTS = {
    "python-expert", "code-reviewer", "api-designer", "bug-investigator", "security-auditor",
    "test-engineer", "data-analyst", "data-engineer", "sql-expert", "database-architect", "ml-engineer",
    "visualization-expert", "statistician", "prompt-engineer", "documentation-writer", "devops-engineer",
    "performance-optimizer", "frontend-developer", "refactoring-expert", "teaching-assistant",
}
DESIGN_DECLARED_BY = {
    "pytest-patterns": "python-expert, code-reviewer, bug-investigator, test-engineer, refactoring-expert, "
                       "teaching-assistant",
    "type-hints": "python-expert, code-reviewer, test-engineer, refactoring-expert, teaching-assistant",
    "profiling-python": "python-expert, bug-investigator, ml-engineer, performance-optimizer",
    "docstring-style": "python-expert, api-designer, documentation-writer",
    "code-review-checklist": "code-reviewer, security-auditor, frontend-developer, refactoring-expert",
    "secure-coding": "code-reviewer, api-designer, security-auditor, database-architect, devops-engineer",
    "api-design-guidelines": "api-designer, documentation-writer",
    "git-workflow": "bug-investigator, documentation-writer, devops-engineer, refactoring-expert",
    "docker-basics": "security-auditor, data-engineer, devops-engineer",
    "ci-pipelines": "test-engineer, data-engineer, devops-engineer, frontend-developer",
    "pandas-idioms": "data-analyst, data-engineer, sql-expert, ml-engineer, visualization-expert, "
                     "statistician, performance-optimizer, teaching-assistant",
    "sql-optimization": "data-engineer, sql-expert, database-architect, performance-optimizer",
    "plotly-charts": "data-analyst, visualization-expert, statistician",
    "statistical-testing": "data-analyst, ml-engineer, statistician",
    "ml-evaluation": "ml-engineer, prompt-engineer",
    "prompt-patterns": "prompt-engineer",
    "web-accessibility": "frontend-developer",
}
DESIGN_WORKFLOWS = {"code-quality", "bug-fix", "api-feature", "data-exploration", "ml-experiment"}


@pytest.fixture(autouse=True)
def _isolated_library(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fresh settings and library cache per test; no CLAUDEFORCE_* from the outer environment."""
    for key in list(os.environ):
        if key.startswith("CLAUDEFORCE_"):
            monkeypatch.delenv(key)
    config.reset_settings()
    monkeypatch.setattr(definitions, "_cached", None)
    monkeypatch.setattr(definitions, "_notified", set())
    yield
    config.reset_settings()


@pytest.fixture
def lib_dirs(tmp_path: Path) -> dict[str, Path]:
    """A writable copy of the small valid fixture library."""
    root = tmp_path / "lib"
    shutil.copytree(FIXTURES, root)
    return {kind: root / kind for kind in ("agents", "skills", "workflows")}


def fixture_problems(dirs: dict[str, Path]) -> list[Problem]:
    return validate(dirs["agents"], dirs["skills"], dirs["workflows"], include_shipped=False)


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def agent_md(name: str, extra: str = "", *, skills: str = "[fixture-skill]", body: str = "You help.\n"
             ) -> str:
    return (f"---\nname: {name}\ndescription: A test agent.\ndomains: [testing]\nskills: {skills}\n{extra}"
            f"---\n{body}")


# --- the shipped library -------------------------------------------------------------------------


def test_shipped_dirs_point_at_the_repository_library_in_a_checkout() -> None:
    agents, skills, workflows = shipped_dirs()
    assert [p.name for p in (agents, skills, workflows)] == ["agents", "skills", "workflows"]
    assert agents.is_dir() and skills.is_dir() and workflows.is_dir()


def test_every_shipped_file_loads_and_validates_without_problems() -> None:
    problems = validate([], [], [])
    assert problems == [], "\n".join(map(str, problems))
    lib = Library()
    agents_dir, skills_dir, workflows_dir = shipped_dirs()
    assert len(lib.agents()) == len(list(agents_dir.glob("*.md")))
    assert len(lib.skills()) == len(list(skills_dir.glob("*.md")))
    assert len(lib.workflows()) == len(list(workflows_dir.glob("*.y*ml")))
    assert all(a.source == "shipped" and len(a.content_hash) == 64 for a in lib.agents())


def test_shipped_agents_are_exactly_the_design_roster() -> None:
    assert set(Library().agent_names()) == DESIGN_AGENTS


def test_shipped_skills_are_declared_by_exactly_the_agents_in_design() -> None:
    lib = Library()
    assert set(lib.skill_names()) == set(DESIGN_DECLARED_BY)
    declared_by = {skill: {a.name for a in lib.agents() if skill in a.skills} for skill in DESIGN_DECLARED_BY}
    expected = {skill: set(agents.split(", ")) for skill, agents in DESIGN_DECLARED_BY.items()}
    assert declared_by == expected


def test_shipped_workflows_include_the_five_named_in_design() -> None:
    assert DESIGN_WORKFLOWS <= set(Library().workflow_names())


def test_shipped_code_quality_runs_lint_and_tests_in_parallel_then_review() -> None:
    steps = {s.id: s for s in Library().workflow("code-quality").steps}
    assert steps["lint"].depends_on == () and steps["tests"].depends_on == ()
    assert set(steps["review"].depends_on) == {"lint", "tests"}


def test_each_shipped_workflow_other_than_a_chain_has_parallel_steps() -> None:
    for wf in Library().workflows():
        roots = [s for s in wf.steps if not s.depends_on]
        fan_in = [s for s in wf.steps if len(s.depends_on) > 1]
        assert len(roots) > 1 or fan_in, f"{wf.name} has no parallelism"


# --- the fixture library and spec shapes ---------------------------------------------------------


def test_fixture_library_is_valid_and_builds_frozen_specs(lib_dirs: dict[str, Path]) -> None:
    assert fixture_problems(lib_dirs) == []
    lib = Library(lib_dirs["agents"], lib_dirs["skills"], lib_dirs["workflows"], include_shipped=False)
    helper = lib.agent("helper")
    assert helper == AgentSpec(
        name="helper", description="Answers questions about the fixture library.",
        domains=("testing", "fixtures"),
        skills=("fixture-skill",), body="# Helper\n\nYou help with the fixture library.", min_tier="haiku",
        max_tier="sonnet", temperature=0.2, max_tokens=512, path=helper.path, source="user",
        content_hash=helper.content_hash,
    )
    assert lib.agent("reviewer").cache is False and helper.cache is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        helper.name = "other"  # type: ignore[misc]
    wf = lib.workflow("pipeline")
    assert wf.inputs == ("code",) and wf.on_error == "stop" and wf.concurrency == 2
    assert wf.steps[2] == StepSpec("review", "reviewer", "Review {{ steps.first.output }} and "
                                   "{{ steps.second.output }}", ("first", "second"))
    assert lib.skill("fixture-skill").triggers == ("fixture", "testing")
    assert [a.name for a in lib.agents()] == ["helper", "reviewer"]


def test_unknown_agent_lookup_suggests_the_closest_name(lib_dirs: dict[str, Path]) -> None:
    lib = Library(lib_dirs["agents"], lib_dirs["skills"], include_shipped=False)
    with pytest.raises(UnknownNameError, match="Did you mean 'helper'"):
        lib.agent("helpr")
    with pytest.raises(UnknownNameError, match="Unknown workflow 'nope'"):
        lib.workflow("nope")


@pytest.mark.parametrize("name", ["../etc/passwd", "Python-Expert", "a b", "", "x\n", "-lead", None])
def test_lookup_of_invalid_name_raises_invalid_name_error(name: object) -> None:
    with pytest.raises(InvalidNameError, match="lowercase letters, digits and hyphens"):
        Library().agent(name)  # type: ignore[arg-type]
    with pytest.raises(InvalidNameError):
        check_name("skill", name)


def test_check_name_accepts_roster_style_names() -> None:
    assert check_name("agent", "python-expert") == "python-expert"
    assert NAME_RE.match("sql-expert2")


def test_problem_str_shows_line_only_when_known() -> None:
    assert str(Problem("agents/x.md", 3, "bad")) == "agents/x.md:3: bad"
    assert str(Problem("agents/x.md", None, "bad")) == "agents/x.md: bad"


# --- validator rules: each case is a failing fixture ---------------------------------------------

AGENT_CASES = [
    ("missing_front_matter", "# just markdown\n", "missing YAML front matter", 1),
    ("unclosed_front_matter", "---\nname: x\n", "front matter is not closed", 1),
    ("yaml_syntax_error", agent_md("bad", "temperature: [0.2\n"), "YAML error", 6),
    ("empty_front_matter", "---\n---\nbody\n", "the YAML is empty", 1),
    ("front_matter_not_mapping", "---\n- a\n- b\n---\nbody\n", "must be a mapping", 1),
    ("missing_description", "---\nname: bad\ndomains: [x]\nskills: []\n---\nbody\n",
     "missing required field 'description'", 1),
    ("missing_domains", "---\nname: bad\ndescription: d\nskills: []\n---\nbody\n",
     "missing required field 'domains'", 1),
    ("domains_not_list", agent_md("bad").replace("domains: [testing]", "domains: {a: 1}"),
     "'domains' must be a list of strings", 4),
    ("skills_not_strings", agent_md("bad", skills="[1, 2]"), "'skills' must be a list of strings", 5),
    ("temperature_out_of_range", agent_md("bad", "temperature: 1.5\n"),
     "'temperature' must be a number from 0 to 1", 6),
    ("temperature_bool", agent_md("bad", "temperature: true\n"), "'temperature' must be a number", 6),
    ("max_tokens_zero", agent_md("bad", "max_tokens: 0\n"), "'max_tokens' must be a positive integer", 6),
    ("max_tokens_float", agent_md("bad", "max_tokens: 1.5\n"), "'max_tokens' must be a positive integer", 6),
    ("bad_tier", agent_md("bad", "min_tier: gpt\n"), "'min_tier' must be one of haiku, sonnet, opus", 6),
    ("min_above_max_tier", agent_md("bad", "min_tier: opus\nmax_tier: haiku\n"),
     "min_tier 'opus' is above", 6),
    ("cache_not_bool", agent_md("bad", "cache: sometimes\n"), "'cache' must be true or false", 6),
    ("empty_body", agent_md("bad", body="\n  \n"), "body", 1),
    ("unknown_skill", agent_md("bad", skills="[fixture-skil]"),
     "unknown skill 'fixture-skil'; Did you mean", 5),
    ("unknown_field", agent_md("bad", "skils: [x]\n"), "unknown field 'skils'; Did you mean 'skills'", 6),
    ("duplicate_key", agent_md("bad", "domains: [again]\n"), "duplicate key 'domains'", 6),
    ("name_mismatch", agent_md("other-name"), "does not match the file name", 2),
    ("path_in_name", agent_md("../../etc/passwd"), "invalid agent name", 2),
    ("name_not_string", agent_md("[a]"), "'name' must be a non-empty string", 2),
]


@pytest.mark.parametrize(("case", "text", "fragment", "line"), AGENT_CASES, ids=[c[0] for c in AGENT_CASES])
def test_bad_agent_file_is_reported_with_file_and_line(
    lib_dirs: dict[str, Path], case: str, text: str, fragment: str, line: int
) -> None:
    write(lib_dirs["agents"] / "bad.md", text)
    problems = fixture_problems(lib_dirs)
    assert problems, case
    assert all(p.path.endswith("bad.md") for p in problems), problems
    assert any(fragment in p.message and p.line == line for p in problems), [str(p) for p in problems]


def test_bad_skill_file_missing_triggers_is_reported(lib_dirs: dict[str, Path]) -> None:
    write(lib_dirs["skills"] / "thin.md", "---\nname: thin\ndescription: d\n---\nGuidance.\n")
    [problem] = fixture_problems(lib_dirs)
    assert problem.line == 1 and "missing required field 'triggers'" in problem.message


def workflow_yaml(steps: str, *, inputs: str = "[code]", extra: str = "") -> str:
    return f"name: wf\ndescription: A test workflow.\ninputs: {inputs}\n{extra}steps:\n{steps}"


def step(step_id: str, task: str = "t", *, agent: str = "helper", deps: str = "") -> str:
    return (f"  - id: {step_id}\n    agent: {agent}\n" + (f"    depends_on: {deps}\n" if deps else "")
            + f"    task: {task}\n")


WORKFLOW_CASES = [
    ("unknown_agent", step("a", agent="helpr"), "step 'a': unknown agent 'helpr'; Did you mean"),
    ("duplicate_step_id", step("a") + step("a"), "step 'a': duplicate step id 'a'"),
    ("unknown_dependency", step("a") + step("b", deps="[aa]"), "step 'b': depends on unknown step 'aa'"),
    ("self_dependency", step("a", deps="[a]"), "cycle: a -> a"),
    ("reference_to_non_dependency", step("a") + step("b", "'use {{ steps.a.output }}'"),
     "'a' is not a dependency; add it to depends_on"),
    ("reference_to_missing_step", step("a", "'use {{ steps.zz.output }}'"), "there is no step 'zz'"),
    ("unknown_input", step("a", "'use {{ inputs.cod }}'"), "'cod' is not an input (code)"),
    ("unknown_expression", step("a", "'use {{ code }}'"), "unknown template expression '{{ code }}'"),
    ("step_attribute_other_than_output", step("a") + step("b", "'{{ steps.a.text }}'", deps="[a]"),
     "unknown template expression '{{ steps.a.text }}'"),
    ("missing_task", "  - id: a\n    agent: helper\n", "step 'a': missing required field 'task'"),
    ("step_not_mapping", "  - just a string\n", "step 1 must be a mapping"),
    ("unknown_step_field", step("a") + "    depend_on: [b]\n",
     "unknown field 'depend_on'; Did you mean 'depends_on'"),
    ("bad_step_id", step("'a b'"), "step id 'a b' must be"),
    ("bad_step_budget", step("a") + "    max_context_tokens: -5\n",
     "'max_context_tokens' must be a positive integer"),
]


@pytest.mark.parametrize(("case", "steps", "fragment"), WORKFLOW_CASES, ids=[c[0] for c in WORKFLOW_CASES])
def test_bad_workflow_is_reported(lib_dirs: dict[str, Path], case: str, steps: str, fragment: str) -> None:
    write(lib_dirs["workflows"] / "wf.yaml", workflow_yaml(steps))
    problems = fixture_problems(lib_dirs)
    assert any(fragment in p.message and p.path.endswith("wf.yaml") and p.line for p in problems), (
        case, [str(p) for p in problems])


def test_workflow_cycle_message_names_the_members_in_order(lib_dirs: dict[str, Path]) -> None:
    steps = step("a", deps="[c]") + step("b", deps="[a]") + step("c", deps="[b]")
    write(lib_dirs["workflows"] / "wf.yaml", workflow_yaml(steps))
    [problem] = fixture_problems(lib_dirs)
    cycle = problem.message.split("cycle: ")[1].split(" (")[0].split(" -> ")
    assert cycle[0] == cycle[-1] and sorted(cycle[:-1]) == ["a", "b", "c"]
    # each member feeds the next one: b depends on a, c on b, a on c
    assert " -> ".join(cycle) in ("a -> b -> c -> a", "b -> c -> a -> b", "c -> a -> b -> c")


def test_workflow_may_reference_a_transitive_dependency(lib_dirs: dict[str, Path]) -> None:
    uses_both = "'{{ steps.a.output }} {{steps.b.output}}'"
    steps = step("a") + step("b", deps="a") + step("c", uses_both, deps="[b]")
    write(lib_dirs["workflows"] / "wf.yaml", workflow_yaml(steps))
    assert fixture_problems(lib_dirs) == []


@pytest.mark.parametrize(
    ("extra", "steps", "fragment"),
    [
        ("on_error: ignore\n", step("a"), "'on_error' must be one of stop, continue"),
        ("concurrency: 0\n", step("a"), "'concurrency' must be a positive integer"),
        ("", "  []\n", "'steps' must be a non-empty list"),
    ],
)
def test_bad_workflow_fields_are_reported(
    lib_dirs: dict[str, Path], extra: str, steps: str, fragment: str
) -> None:
    write(lib_dirs["workflows"] / "wf.yaml", workflow_yaml(steps, extra=extra))
    assert any(fragment in p.message for p in fixture_problems(lib_dirs))


def test_workflow_missing_steps_points_at_the_first_line(lib_dirs: dict[str, Path]) -> None:
    write(lib_dirs["workflows"] / "wf.yaml", "name: wf\ndescription: d\n")
    [problem] = fixture_problems(lib_dirs)
    assert (problem.line, problem.message) == (1, "field 'steps' must be a non-empty list of steps")


def test_all_problems_of_a_workflow_are_reported_at_once(lib_dirs: dict[str, Path]) -> None:
    steps = step("a", "'{{ inputs.nope }}'", agent="nobody") + step("b", deps="[zz]")
    write(lib_dirs["workflows"] / "wf.yaml", workflow_yaml(steps, extra="on_error: maybe\n"))
    messages = " | ".join(p.message for p in fixture_problems(lib_dirs))
    for fragment in ("on_error", "unknown agent 'nobody'", "'nope' is not an input", "unknown step 'zz'"):
        assert fragment in messages


def test_duplicate_names_across_user_folders_are_reported(lib_dirs: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "more-agents"
    other.mkdir()
    shutil.copy(lib_dirs["agents"] / "helper.md", other / "helper.md")
    [problem] = validate([lib_dirs["agents"], other], lib_dirs["skills"], lib_dirs["workflows"],
                         include_shipped=False)
    assert problem.path.endswith(os.path.join("more-agents", "helper.md"))
    assert "duplicate agent 'helper': already defined in" in problem.message


def test_yaml_and_yml_workflow_of_the_same_name_are_duplicates(lib_dirs: dict[str, Path]) -> None:
    shutil.copy(lib_dirs["workflows"] / "pipeline.yaml", lib_dirs["workflows"] / "pipeline.yml")
    [problem] = fixture_problems(lib_dirs)
    assert problem.path.endswith("pipeline.yml") and "duplicate workflow 'pipeline'" in problem.message


def test_file_name_that_is_not_a_valid_name_is_reported(lib_dirs: dict[str, Path]) -> None:
    write(lib_dirs["agents"] / "Bad_Name.md", agent_md("Bad_Name"))
    [problem] = fixture_problems(lib_dirs)
    assert "file name 'Bad_Name.md' is not a valid agent name" in problem.message


def test_readme_and_hidden_files_are_not_definitions(lib_dirs: dict[str, Path]) -> None:
    write(lib_dirs["agents"] / "README.md", "# My agents\n")
    write(lib_dirs["agents"] / ".#helper.md", "editor lock file")
    write(lib_dirs["agents"] / "notes.txt", "not markdown")
    assert fixture_problems(lib_dirs) == []


# --- hostile inputs ------------------------------------------------------------------------------


def test_huge_file_is_rejected_without_reading_it(lib_dirs: dict[str, Path]) -> None:
    write(lib_dirs["agents"] / "huge.md", agent_md("huge", body="x" * (2 * 1024 * 1024)))
    [problem] = fixture_problems(lib_dirs)
    assert "larger than 1024 KiB" in problem.message


def test_binary_file_is_rejected(lib_dirs: dict[str, Path]) -> None:
    write(lib_dirs["agents"] / "blob.md", b"---\nname: blob\n\x00\x01\x02\xff")
    [problem] = fixture_problems(lib_dirs)
    assert problem.line == 3 and "binary file" in problem.message


def test_non_utf8_file_is_rejected_with_the_line_of_the_bad_byte(lib_dirs: dict[str, Path]) -> None:
    write(lib_dirs["skills"] / "latin.md", "---\nname: latin\ndescription: caf\xe9\n".encode("latin-1"))
    [problem] = fixture_problems(lib_dirs)
    assert problem.line == 3 and "not UTF-8" in problem.message


def test_python_yaml_tag_is_rejected_and_never_executed(lib_dirs: dict[str, Path], tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    write(lib_dirs["agents"] / "evil.md",
          agent_md("evil", f"model: !!python/object/apply:os.system ['touch {marker}']\n"))
    write(lib_dirs["workflows"] / "evil.yaml", f"!!python/object/new:os.system ['touch {marker}']\n")
    problems = fixture_problems(lib_dirs)
    assert not marker.exists()
    assert len(problems) == 2 and all("YAML tags are not allowed" in p.message for p in problems)
    assert [p.line for p in problems] == [6, 1]


def test_deeply_nested_yaml_is_rejected_cleanly(lib_dirs: dict[str, Path]) -> None:
    write(lib_dirs["workflows"] / "deep.yaml", "[" * 50_000 + "]" * 50_000)
    [problem] = fixture_problems(lib_dirs)
    assert problem.path.endswith("deep.yaml")


def test_yaml_alias_bomb_is_rejected_quickly(lib_dirs: dict[str, Path]) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    bomb = "\n".join([*levels, "name: bomb", "description: *a9", "triggers: *a9"])
    write(lib_dirs["skills"] / "bomb.md", f"---\n{bomb}\n---\nBody.\n")
    problems = fixture_problems(lib_dirs)
    assert {p.line for p in problems} >= {2, 13, 14} and all(len(p.message) < 200 for p in problems)


def test_workflow_with_too_many_steps_is_rejected(lib_dirs: dict[str, Path]) -> None:
    chain = "".join(step(f"s{i}", deps=f"[s{i - 1}]" if i else "") for i in range(1001))
    write(lib_dirs["workflows"] / "wf.yaml", workflow_yaml(chain))
    assert any("at most 1000 steps" in p.message for p in fixture_problems(lib_dirs))


def test_named_pipe_in_a_folder_is_skipped_instead_of_blocking(lib_dirs: dict[str, Path]) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this platform")
    os.mkfifo(lib_dirs["agents"] / "pipe.md")
    assert fixture_problems(lib_dirs) == []


def test_workflow_dict_with_path_like_names_is_rejected() -> None:
    with pytest.raises(WorkflowError) as info:
        Library().workflow_from_dict(
            {"name": "../x", "steps": [{"id": "a", "agent": "../../etc/passwd", "task": "t"}]}
        )
    text = str(info.value)
    assert "invalid workflow name '../x'" in text and "unknown agent '../../etc/passwd'" in text


# --- workflows given as dicts --------------------------------------------------------------------


def test_workflow_from_dict_builds_a_spec_checked_against_the_library() -> None:
    spec = Library().workflow_from_dict({
        "name": "adhoc",
        "inputs": ["code"],
        "steps": [
            {"id": "lint", "agent": "code-reviewer", "task": "Lint {{ inputs.code }}"},
            {"id": "review", "agent": "code-reviewer", "depends_on": ["lint"],
             "task": "{{ steps.lint.output }}", "model": "claude-haiku-5-5", "cache": False,
             "max_context_tokens": 2000},
        ],
    })
    assert isinstance(spec, WorkflowSpec) and spec.description == "" and spec.path is None
    assert spec.steps[1] == StepSpec("review", "code-reviewer", "{{ steps.lint.output }}", ("lint",),
                                     "claude-haiku-5-5", False, 2000)


def test_workflow_from_dict_raises_one_error_listing_every_problem() -> None:
    data = {"name": "adhoc", "steps": [
        {"id": "a", "agent": "python-expret", "task": "{{ inputs.code }}"},
        {"id": "b", "agent": "code-reviewer", "depends_on": ["a", "c"], "task": "t"},
    ]}
    with pytest.raises(WorkflowError) as info:
        Library().workflow_from_dict(data, source_name="cell[3]")
    lines = str(info.value).splitlines()
    assert lines[0].startswith("Invalid workflow 'adhoc': cell[3]: step 'a': unknown agent 'python-expret'")
    assert "Did you mean 'python-expert'" in lines[0]
    assert len(lines) == 3 and all(line.startswith("cell[3]: ") for line in lines[1:])
    assert isinstance(info.value, UsageError)


def test_workflow_from_dict_rejects_a_non_mapping() -> None:
    with pytest.raises(WorkflowError, match="must be a mapping"):
        Library().workflow_from_dict(["not", "a", "dict"])  # type: ignore[arg-type]


# --- user folders, overrides, broken files, reload -----------------------------------------------


def test_user_agent_overrides_shipped_one_with_a_single_notice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "agents" / "python-expert.md", agent_md("python-expert", skills="[type-hints]"))
    caplog.set_level(logging.INFO, logger="claudeforce_nb.definitions")
    agent = library().agent("python-expert")
    assert agent.source == "user" and agent.body == "You help."
    assert agent.path == tmp_path / "agents" / "python-expert.md"
    monkeypatch.setattr(definitions, "_cached", None)
    library()  # a reload does not repeat the notice
    notices = [r for r in caplog.records if "python-expert" in r.getMessage()]
    assert len(notices) == 1 and "instead of the shipped one" in notices[0].getMessage()
    assert library().agent("code-reviewer").source == "shipped"


def test_user_folders_from_settings_are_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 lib_dirs: dict[str, Path]) -> None:
    monkeypatch.chdir(tmp_path)
    config.configure(agents_dirs=[lib_dirs["agents"]], skills_dirs=[lib_dirs["skills"]],
                     workflows_dirs=[str(lib_dirs["workflows"])])
    lib = library()
    assert lib.agent("helper").source == "user" and lib.workflow("pipeline").source == "user"
    assert "python-expert" in lib.agent_names() and lib.problems() == []


def test_relative_user_folders_resolve_against_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("one", "two"):
        write(tmp_path / name / "my-agents" / f"{name}.md", agent_md(name, skills="[pandas-idioms]"))
    config.configure(agents_dirs=["my-agents"])
    monkeypatch.chdir(tmp_path / "one")
    assert "one" in library().agent_names()
    monkeypatch.chdir(tmp_path / "two")
    assert "two" in library().agent_names() and "one" not in library().agent_names()


def test_missing_user_folders_are_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config.configure(agents_dirs=[tmp_path / "nope"])
    assert library().problems() == [] and len(library().agents()) == len(DESIGN_AGENTS)


def test_running_from_the_repository_root_does_not_override_shipped_files(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(shipped_dirs()[0].parent)
    caplog.set_level(logging.INFO, logger="claudeforce_nb.definitions")
    assert all(a.source == "shipped" for a in library().agents())
    assert not caplog.records


def test_user_agent_may_use_a_shipped_skill(tmp_path: Path) -> None:
    write(tmp_path / "agents" / "mine.md", agent_md("mine", skills="[pandas-idioms, sql-optimization]"))
    assert validate(agents_dirs=[tmp_path / "agents"]) == []


def test_broken_user_file_leaves_the_rest_usable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "agents" / "good.md", agent_md("good", skills="[type-hints]"))
    write(tmp_path / "agents" / "broken.md", agent_md("broken", "temperature: 7\n", skills="[type-hints]"))
    lib = library()
    assert lib.agent("good").name == "good" and "python-expert" in lib.agent_names()
    assert "broken" not in lib.agent_names()
    with pytest.raises(DefinitionError) as info:
        lib.agent("broken")
    where = os.path.join("agents", "broken.md")
    assert f"{where}:6: field 'temperature'" in str(info.value)
    expected = f"{where}:6: field 'temperature' must be a number from 0 to 1, got 7"
    assert [str(p) for p in lib.problems()] == [expected]


def test_broken_user_override_does_not_silently_fall_back_to_shipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "agents" / "sql-expert.md", "---\nname: sql-expert\n")
    with pytest.raises(DefinitionError, match="sql-expert.md:1: front matter is not closed"):
        library().agent("sql-expert")


def test_workflow_using_a_broken_agent_is_not_reported_twice(lib_dirs: dict[str, Path]) -> None:
    write(lib_dirs["agents"] / "helper.md", agent_md("helper", "max_tokens: -1\n"))
    problems = fixture_problems(lib_dirs)
    assert [p.path.endswith("helper.md") for p in problems] == [True]


def test_library_is_cached_until_a_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(definitions, "_RECHECK_S", 0.0)
    assert library() is library()


def test_edit_of_a_user_file_is_picked_up_by_the_next_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(definitions, "_RECHECK_S", 0.0)
    path = write(tmp_path / "agents" / "mine.md", agent_md("mine", skills="[]", body="First version.\n"))
    before = library().agent("mine")
    write(path, agent_md("mine", skills="[]", body="Second, longer version.\n"))
    after = library().agent("mine")
    assert after.body == "Second, longer version." and after.content_hash != before.content_hash


def test_same_size_edit_with_a_new_mtime_is_picked_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(definitions, "_RECHECK_S", 0.0)
    path = write(tmp_path / "agents" / "mine.md", agent_md("mine", skills="[]", body="Version A.\n"))
    assert library().agent("mine").body == "Version A."
    stat = path.stat()
    write(path, agent_md("mine", skills="[]", body="Version B.\n"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert library().agent("mine").body == "Version B."


def test_a_file_added_right_after_a_call_is_seen_by_the_next_call(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # a notebook writes an agent file (%%writefile) and uses it in the next cell, within the recheck interval
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(definitions, "_RECHECK_S", 3600.0)
    (tmp_path / "agents").mkdir()
    assert "mine" not in library().agent_names()
    write(tmp_path / "agents" / "mine.md", agent_md("mine", skills="[]"))
    assert "mine" in library().agent_names()
    lib = library()
    (tmp_path / "agents" / "notes.txt").write_text("not a definition")
    assert library() is lib  # the folder changed, the definitions did not: no reload
    assert library() is lib


def test_added_and_removed_files_are_picked_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(definitions, "_RECHECK_S", 0.0)
    assert "mine" not in library().agent_names()
    path = write(tmp_path / "agents" / "mine.md", agent_md("mine", skills="[]"))
    assert "mine" in library().agent_names()
    path.unlink()
    with pytest.raises(UnknownNameError):
        library().agent("mine")


def test_settings_change_reloads_at_once_even_within_the_recheck_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lib_dirs: dict[str, Path]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(definitions, "_RECHECK_S", 3600.0)
    assert "helper" not in library().agent_names()
    config.configure(agents_dirs=[lib_dirs["agents"]], skills_dirs=[lib_dirs["skills"]])
    assert "helper" in library().agent_names()


# --- templates -----------------------------------------------------------------------------------


def test_render_template_fills_inputs_steps_and_plain_names() -> None:
    context = {
        "inputs": {"code": "x = 1"},
        "steps": {"lint": {"output": "no issues"}, "tests": SimpleNamespace(output="3 tests")},
        "name": "Ada",
    }
    text = "{{ inputs.code }}|{{steps.lint.output}}|{{  steps.tests.output  }}|{{name}}"
    assert render_template(text, context) == "x = 1|no issues|3 tests|Ada"


def test_render_template_leaves_code_braces_untouched() -> None:
    code = ("def f(d):\n    return {'a': {1: 2}}\n"
            "msg = f'{value}' + '{0}'.format(1)\n"
            "jinja = '{{ x | upper }} {{x+1}} {% for i in y %} {{ }}'\n"
            "{{ name }}")
    expected = code.replace("{{ name }}", "Ada")
    assert render_template(code, {"name": "Ada"}) == expected


def test_render_template_does_not_expand_braces_inside_substituted_values() -> None:
    assert render_template("{{ a }}", {"a": "{{ b }}", "b": "secret"}) == "{{ b }}"


def test_render_template_converts_non_string_values() -> None:
    assert render_template("n={{ n }}", {"n": 3}) == "n=3"


def test_missing_template_variable_names_it_and_lists_what_is_available() -> None:
    with pytest.raises(TemplateError) as info:
        render_template("{{ inputs.cod }}", {"inputs": {"code": "x"}, "steps": {"lint": {"output": "y"}}})
    message = str(info.value)
    assert "'{{ inputs.cod }}' is not defined" in message
    assert "Did you mean 'inputs.code'?" in message and "inputs.code, steps.lint.output" in message
    assert "\n" not in message


def test_private_attributes_are_not_reachable_from_templates() -> None:
    with pytest.raises(TemplateError):
        render_template("{{ obj.__class__ }}", {"obj": SimpleNamespace(output="x")})


# --- command line --------------------------------------------------------------------------------


def test_validate_command_on_a_clean_library_prints_one_ok_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert validate_main([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"ok: {len(DESIGN_AGENTS)} agents, {len(DESIGN_DECLARED_BY)} skills, "
                   f"{len(Library().workflows())} workflows — no problems"]


def test_validate_command_counts_user_folders_with_the_shipped_library(
    capsys: pytest.CaptureFixture[str], lib_dirs: dict[str, Path]
) -> None:
    args = ["--agents", str(lib_dirs["agents"]), "--skills", str(lib_dirs["skills"]),
            "--workflows", str(lib_dirs["workflows"])]
    assert validate_main(args) == 0
    assert capsys.readouterr().out.startswith(f"ok: {len(DESIGN_AGENTS) + 2} agents, ")


def test_validate_command_prints_every_problem_and_exits_1(
    capsys: pytest.CaptureFixture[str], lib_dirs: dict[str, Path], tmp_path: Path
) -> None:
    write(lib_dirs["agents"] / "evil.md", agent_md("evil", "model: !!python/object/apply:os.system [true]\n"))
    write(lib_dirs["agents"] / "blob.md", b"\x00\xff")
    write(lib_dirs["workflows"] / "wf.yaml", workflow_yaml(step("a", deps="[a]")))
    code = validate_main(["--agents", str(lib_dirs["agents"]), "--skills", str(lib_dirs["skills"]),
                          "--workflows", str(lib_dirs["workflows"]), "--agents", str(tmp_path / "missing")])
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.out.splitlines()
    assert len(lines) == 4 and "Traceback" not in captured.out + captured.err
    assert any("missing: directory not found" in line for line in lines)
    assert any("blob.md:1: binary file" in line for line in lines)
    assert any("evil.md:6: YAML error" in line for line in lines)
    assert any("wf.yaml:" in line and "cycle: a -> a" in line for line in lines)
    assert "4 problems found" in captured.err


def test_validate_command_rejects_unknown_and_abbreviated_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert validate_main(["--agent", "x"]) == 2
    assert "usage:" in capsys.readouterr().err


def test_validate_command_runs_as_a_subprocess(tmp_path: Path) -> None:
    import subprocess

    code = ("import sys; from claudeforce_nb.definitions import validate_main; "
            "sys.exit(validate_main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": str(Path(definitions.__file__).parent.parent)}
    result = subprocess.run([sys.executable, "-c", code, "--agents", str(tmp_path)], capture_output=True,
                            text=True, cwd=tmp_path, env=env, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("ok: ")
