"""Progressive skills: from an agent's declared skills, load only those relevant to the task.

A skill is relevant when one of its triggers occurs in the task as whole words (so "print" never
triggers git-workflow via "sprint", and "api" is not found in "rapid"), or, when the embedding
model is already loaded (after `cf.warm_up()` or a semantic `select_agent`), when the task is close
in meaning to the skill's example tasks (`claudeforce_nb/data/skill_exemplars.jsonl`; a user's own
skill is compared with its description). The model is never loaded just for this: the first
`run_agent` of a session must not wait seconds for it, so without it triggers decide alone.

Measured on tests/data/skills.jsonl (README, "Routing, agent selection, skills and prompt caching"): recall of the
labelled skills and the share of declared skill text that is not sent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..definitions import AgentSpec, SkillSpec, library
from . import embeddings

if TYPE_CHECKING:
    import numpy as np

__all__ = ["SEMANTIC_THRESHOLD", "select_skills", "trigger_matches"]

log = logging.getLogger("claudeforce_nb.skills")

_EXEMPLARS = Path(__file__).resolve().parent.parent / "data" / "skill_exemplars.jsonl"
# Mean cosine similarity of the task to a skill's two closest example tasks above which the skill
# is loaded even without a trigger (chosen on the dev split of tests/data/skills.jsonl).
SEMANTIC_THRESHOLD = 0.5


@lru_cache(maxsize=4096)
def _pattern(trigger: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in trigger.lower().split()]
    return re.compile(r"(?<![\w-])" + r"[\s_-]+".join(words) + r"(?![\w-])")


@lru_cache(maxsize=1024)
def _any_pattern(triggers: tuple[str, ...]) -> re.Pattern[str] | None:
    """All triggers of a skill as one alternation: one regex scan per skill instead of one per
    trigger (run_agent checks every declared skill on every call)."""
    alts = [r"[\s_-]+".join(re.escape(w) for w in t.strip().lower().split()) for t in triggers if t.strip()]
    return re.compile(r"(?<![\w-])(?:" + "|".join(alts) + r")(?![\w-])") if alts else None


def _has_trigger(skill: SkillSpec, text: str) -> bool:
    pattern = _any_pattern(skill.triggers)
    return pattern is not None and pattern.search(text) is not None


def trigger_matches(skill: SkillSpec, task: str) -> list[str]:
    """The skill's triggers found in `task` as whole words (case-insensitive)."""
    text = task.lower()
    return [t for t in skill.triggers if t.strip() and _pattern(t.strip()).search(text)]


@lru_cache(maxsize=4)
def _load_exemplars(path: Path, mtime_ns: int) -> tuple[dict[str, tuple[str, ...]], str]:
    raw = path.read_bytes()
    out: dict[str, list[str]] = {}
    for line in raw.decode("utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            out.setdefault(str(row["skill"]), []).append(str(row["task"]))
    return {k: tuple(v) for k, v in out.items()}, hashlib.sha256(raw).hexdigest()[:16]


def _exemplars() -> tuple[dict[str, tuple[str, ...]], str]:
    try:
        return _load_exemplars(_EXEMPLARS, _EXEMPLARS.stat().st_mtime_ns)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("skill examples unavailable (%s); semantic skill matching uses descriptions", exc)
        return {}, ""


_vectors_lock = threading.Lock()
_vectors: tuple[tuple[Any, ...], dict[str, np.ndarray]] | None = None


def _skill_vectors() -> dict[str, np.ndarray]:
    """Unit vectors of each skill's example tasks (of its description, for a user's skill),
    from the signed disk cache; recomputed for any skill whose file or examples changed."""
    global _vectors
    from ..config import get_settings

    by_skill, ex_hash = _exemplars()
    groups = []
    for s in library().skills():
        examples = by_skill.get(s.name, ()) if s.source == "shipped" else ()
        version = s.content_hash + (f"+{ex_hash}" if examples else "")
        groups.append(embeddings.Group(s.name, version, examples or (s.description,)))
    home = Path(get_settings().home)
    key = (str(home.resolve()), tuple((g.name, g.version) for g in groups))
    with _vectors_lock:
        if _vectors is None or _vectors[0] != key:
            cache = embeddings.VectorCache(home / "embeddings", embeddings.read_secret(home), "skills")
            _vectors = (key, cache.vectors(groups))
        return _vectors[1]


def semantic_scores(skills: list[SkillSpec], task: str) -> dict[str, float]:
    """Similarity of `task` to each skill (mean of its two closest examples); empty when the
    embedding model is not loaded."""
    if not skills or not embeddings.is_loaded():
        return {}
    import numpy as np

    from .selection import prose

    try:
        query = embeddings.encode([prose(task)])[0]
        vectors = _skill_vectors()
        return {s.name: float(np.sort(vectors[s.name] @ query)[-2:].mean()) for s in skills if s.name in vectors}
    except (embeddings.SemanticUnavailable, OSError) as exc:
        log.info("semantic skill matching skipped: %s", exc)
        return {}


def select_skills(agent: str | AgentSpec, task: str) -> list[str]:
    """Names of the agent's declared skills that this task needs, in declaration order."""
    lib = library()
    spec = lib.agent(agent) if isinstance(agent, str) else agent
    declared: list[SkillSpec] = []
    for name in spec.skills:
        try:
            declared.append(lib.skill(name))
        except LookupError:
            continue
    text = task.lower()
    by_trigger = {s.name for s in declared if _has_trigger(s, text)}
    rest = [s for s in declared if s.name not in by_trigger]
    close = {name for name, sim in semantic_scores(rest, task).items() if sim >= SEMANTIC_THRESHOLD}
    return [s.name for s in declared if s.name in by_trigger or s.name in close]
