"""Progressive skills: from an agent's declared skills, load only those relevant to the task.

A skill is relevant when one of its triggers occurs in the task as whole words (so "print" never
triggers git-workflow via "sprint"). The semantic refinement of Step 5 extends `_scores`.
"""

from __future__ import annotations

import re
from functools import lru_cache

from ..definitions import AgentSpec, SkillSpec, library

__all__ = ["select_skills", "trigger_matches"]


@lru_cache(maxsize=4096)
def _pattern(trigger: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in trigger.lower().split()]
    return re.compile(r"(?<![\w-])" + r"[\s_-]+".join(words) + r"(?![\w-])")


def trigger_matches(skill: SkillSpec, task: str) -> list[str]:
    text = task.lower()
    return [t for t in skill.triggers if t.strip() and _pattern(t.strip()).search(text)]


def select_skills(agent: str | AgentSpec, task: str) -> list[str]:
    lib = library()
    spec = lib.agent(agent) if isinstance(agent, str) else agent
    chosen = []
    for name in spec.skills:
        try:
            skill = lib.skill(name)
        except LookupError:
            continue
        if trigger_matches(skill, task):
            chosen.append(name)
    return chosen
