"""Progressive skills (`cf.select_skills`): triggers match whole words only, only the agent's
declared skills are ever chosen, the embedding model adds close-in-meaning skills only when it
is already loaded, and recall / text cut floors on the held-out splits of tests/data/skills.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import embedding_model
import pytest

import claudeforce_nb as cf
from claudeforce_nb.config import configure
from claudeforce_nb.core import embeddings
from claudeforce_nb.core.orchestrator import prepare
from claudeforce_nb.core.skills import trigger_matches
from claudeforce_nb.definitions import library

semantic = embedding_model.semantic
no_model = embedding_model.no_model

DATA = Path(__file__).parent / "data"
HELD_OUT = ("holdout", "fresh", "fresh2")


def labelled(splits: tuple[str, ...] | None = None) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in (DATA / "skills.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    return [r for r in rows if splits is None or r["split"] in splits]


def triggers(skill: str, task: str) -> list[str]:
    return trigger_matches(library().skill(skill), task)


# -- whole-word triggers ------------------------------------------------------------------------

@pytest.mark.parametrize(("skill", "task"), [
    ("git-workflow", "Print a sprint report for the team."),  # "git"/"commit" nowhere as words
    ("git-workflow", "Count the digits in this number."),  # "git" inside "digits"
    ("git-workflow", "Our commitment to uptime is 99.9%."),  # "commit" inside "commitment"
    ("git-workflow", "Add a pre-commit hook that runs ruff."),  # "commit" inside "pre-commit"
    ("git-workflow", "Make the stashed_value a property."),  # "stash" inside an identifier
    ("api-design-guidelines", "Build a rapid prototype of the capitalize helper."),  # "api" inside words
    ("docker-basics", "Resize the images_dir thumbnails."),  # "image" / "images" inside an identifier
    ("pytest-patterns", "Attest that the contest results are correct."),  # "test" inside words
])
def test_a_trigger_inside_another_word_never_fires(skill: str, task: str) -> None:
    assert triggers(skill, task) == []


@pytest.mark.parametrize(("skill", "task", "found"), [
    ("git-workflow", "Fix the commit message, then rebase.", ["commit", "rebase"]),
    ("git-workflow", "Resolve the Merge-Conflict in setup.py", ["merge conflict"]),
    ("git-workflow", "resolve the merge_conflict markers", ["merge conflict"]),
    ("git-workflow", "MERGE   CONFLICT again", ["merge conflict"]),
    ("api-design-guidelines", "Why does the API return 500?", ["API"]),
    ("docker-basics", "Write a DOCKERFILE for this app.", ["dockerfile"]),
    ("ci-pipelines", "Add a pre-commit hook that runs ruff.", ["pre-commit"]),
])
def test_triggers_match_whole_words_in_any_case_and_spacing(skill: str, task: str, found: list[str]) -> None:
    assert triggers(skill, task) == found


def test_print_never_brings_in_git_workflow(no_model: None) -> None:
    assert "git-workflow" in library().agent("devops-engineer").skills
    assert cf.select_skills("devops-engineer", "Print the sprint summary for the stand-up.") == []
    assert cf.select_skills("devops-engineer", "Print the commit log since the last tag.") == ["git-workflow"]


# -- only declared skills -------------------------------------------------------------------------

def test_a_trigger_of_an_undeclared_skill_is_ignored(no_model: None) -> None:
    assert "docker-basics" not in library().agent("python-expert").skills
    assert triggers("docker-basics", "Write a Dockerfile and pytest tests for this app.") == ["dockerfile"]
    assert cf.select_skills("python-expert", "Write a Dockerfile and pytest tests for this app.") == [
        "pytest-patterns"]


def test_every_labelled_task_gets_only_declared_skills_in_declaration_order(no_model: None) -> None:
    rows = [(str(r["agent"]), str(r["task"])) for r in labelled()]
    for name in ("routing", "selection"):
        for line in (DATA / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rows.append((row["agent"], row["task"]))
    chosen_any = 0
    for agent, task in rows:
        declared = list(library().agent(agent).skills)
        chosen = cf.select_skills(agent, task)
        assert chosen == [s for s in declared if s in chosen], (agent, task, chosen)
        chosen_any += bool(chosen)
    assert chosen_any > len(rows) // 3  # the check above is not vacuous


def test_only_the_selected_skills_reach_the_system_prompt(no_model: None) -> None:
    task = "Write a Dockerfile for the API service and a GitHub Actions workflow that builds it."
    call = prepare("devops-engineer", task, cache=False)
    system = call.params["system"][0]["text"]
    assert call.skills == ("docker-basics", "ci-pipelines")
    assert "## Skill: docker-basics" in system and "## Skill: ci-pipelines" in system
    assert "## Skill: git-workflow" not in system and "## Skill: secure-coding" not in system


def test_skills_mode_all_and_none(no_model: None) -> None:
    task = "Write a Dockerfile for the API service."
    configure(skills_mode="all")
    assert prepare("devops-engineer", task, cache=False).skills == tuple(library().agent("devops-engineer").skills)
    configure(skills_mode="none")
    call = prepare("devops-engineer", task, cache=False)
    assert call.skills == () and "## Skill:" not in call.params["system"][0]["text"]


# -- the embedding model: used when loaded, never loaded for this ---------------------------------

PARAPHRASE = "How do I undo the last thing I committed to the shared repository?"  # no git trigger word


def test_selecting_skills_never_loads_the_model(no_model: None) -> None:
    assert triggers("git-workflow", PARAPHRASE) == []
    assert cf.select_skills("documentation-writer", PARAPHRASE) == []
    assert embeddings._future is None and not embeddings.is_loaded()


@pytest.mark.semantic
def test_a_loaded_model_adds_a_skill_close_in_meaning(semantic: Path) -> None:
    assert cf.select_skills("documentation-writer", PARAPHRASE) == ["git-workflow"]
    assert cf.select_skills("devops-engineer", "Print the sprint summary for the stand-up.") == []


# -- recall and text cut floors (regression guards, a little below the measured figures) ----------

def _recall_and_cut(rows: list[dict[str, object]]) -> tuple[float, float]:
    lib = library()
    wanted = found = declared_chars = sent_chars = 0
    for r in rows:
        agent, task, labels = str(r["agent"]), str(r["task"]), set(r["skills"])  # type: ignore[call-overload]
        chosen = cf.select_skills(agent, task)
        assert set(chosen) <= set(lib.agent(agent).skills)
        wanted += len(labels)
        found += len(labels & set(chosen))
        declared_chars += sum(len(lib.skill(s).body) for s in lib.agent(agent).skills)
        sent_chars += sum(len(lib.skill(s).body) for s in chosen)
    return found / wanted, 1 - sent_chars / declared_chars


def test_trigger_recall_and_text_cut_on_the_held_out_splits(no_model: None) -> None:
    recall, cut = _recall_and_cut(labelled(HELD_OUT))
    assert recall >= 0.92 and cut >= 0.5, (recall, cut)


@pytest.mark.semantic
def test_semantic_recall_and_text_cut_on_the_held_out_splits(semantic: Path) -> None:
    recall, cut = _recall_and_cut(labelled(HELD_OUT))
    assert recall >= 0.93 and cut >= 0.5, (recall, cut)
