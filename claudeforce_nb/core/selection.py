"""Agent selection: which agent of the library fits a task (`cf.select_agent`, `%agent --auto`).

Each agent is profiled from its description, its domains and its skills, plus, for the shipped
agents, a few example tasks (`claudeforce_nb/data/agent_exemplars.jsonl`; a user file that replaces
a shipped agent drops them, since it may do something else). Two scorers read the same profile:

- semantic (the `[semantic]` extra): cosine similarity of the task to the description, to the
  closest domain phrase and to the closest example tasks, blended with the lexical score: the
  hybrid beats either alone on the held-out sets (README, "Routing, agent selection, skills and prompt caching");
- lexical: BM25 over the same words. It answers when the extra is missing, when the setting
  `selector="lexical"` asks for it, or when `wait=False` and the model is still loading; each
  Candidate says which method produced it.

The vectors of agent texts are cached on disk, signed, and keyed by each agent file's content hash
(see `core.embeddings`), so an edited agent is re-encoded and a tampered cache is never trusted.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import get_settings
from ..definitions import AgentSpec, library
from ..errors import ConfigError, EmptyTaskError, UsageError
from . import embeddings

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Candidate", "select_agent", "warm_up"]

log = logging.getLogger("claudeforce_nb.selection")

_EXEMPLARS = Path(__file__).resolve().parent.parent / "data" / "agent_exemplars.jsonl"
# Blend weights, tuned on the development splits of tests/data/selection.jsonl (never on the
# held-out ones): description, closest domain phrase, closest example tasks (mean of the best
# three), lexical.
_W_DESC, _W_DOMAIN, _W_EXAMPLE, _W_LEXICAL = 0.25, 0.25, 2.0, 0.5
_TOP_EXAMPLES = 3
_BM25_K1, _BM25_B = 1.2, 0.5


@dataclass(frozen=True)
class Candidate:
    """One agent proposed for a task: `score` in [0, 1] (higher is better) and the `method`
    that produced it: "hybrid" (embeddings + lexical) or "lexical" (BM25 only)."""

    agent: str
    score: float
    method: str = "hybrid"


# -- text handling -------------------------------------------------------------------------------

_CODE_RE = re.compile(r"```.*?(?:```|\Z)", re.S)
_WORD_RE = re.compile(r"[a-z0-9]+(?:[+#][a-z0-9+#]*)?")
_STOP = frozenset(
    "a an the to of for in on and or with that this it is be my me please can you how what why do i we our into "
    "from by as at are so if its it's using use i'm don't not without than then them there their which when where "
    "who will would should could does did has have had was were been being your about after before over under up "
    "down out off just all any each every some such no nor only own same too very".split()
)
_SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "ers", "ed", "es", "s")


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[:-3] + "y" if suffix == "ies" else word[: -len(suffix)]
    return word


def words(text: str) -> list[str]:
    """Lower-cased, stop-word-free, lightly stemmed words ("queries" → "query")."""
    return [_stem(w) for w in _WORD_RE.findall(text.lower()) if len(w) > 1 and w not in _STOP]


def prose(task: str) -> str:
    """The task without fenced code: what is asked, not the pasted material (which only dilutes
    the embedding and slows it down). A task that is nearly all code keeps its text."""
    text = _CODE_RE.sub(" ", task).strip()
    return text if len(text.split()) >= 3 else task


class BM25:
    """Okapi BM25 over a handful of documents (one per agent)."""

    def __init__(self, docs: Sequence[Sequence[str]], k1: float = _BM25_K1, b: float = _BM25_B) -> None:
        self.k1, self.b = k1, b
        self.tf = [Counter(d) for d in docs]
        self.len = [len(d) for d in docs]
        self.avg = (sum(self.len) / len(docs)) if docs else 1.0
        df: Counter[str] = Counter(w for d in docs for w in set(d))
        n = len(docs)
        self.idf = {w: math.log(1 + (n - c + 0.5) / (c + 0.5)) for w, c in df.items()}

    def scores(self, query: Sequence[str]) -> list[float]:
        terms = set(query) & self.idf.keys()
        out = []
        for tf, length in zip(self.tf, self.len, strict=True):
            s = 0.0
            norm = self.k1 * (1 - self.b + self.b * length / (self.avg or 1.0))
            for w in terms:
                f = tf.get(w, 0)
                if f:
                    s += self.idf[w] * f * (self.k1 + 1) / (f + norm)
            out.append(s)
        return out


# -- agent profiles and the index -----------------------------------------------------------------

@lru_cache(maxsize=4)
def _load_exemplars(path: Path, mtime_ns: int) -> tuple[dict[str, tuple[str, ...]], str]:
    raw = path.read_bytes()
    by_agent: dict[str, list[str]] = {}
    for line in raw.decode("utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            by_agent.setdefault(str(row["agent"]), []).append(str(row["task"]))
    return {k: tuple(v) for k, v in by_agent.items()}, hashlib.sha256(raw).hexdigest()[:16]


def exemplars() -> tuple[dict[str, tuple[str, ...]], str]:
    """Example tasks of the shipped agents, and the hash of the file they come from."""
    try:
        return _load_exemplars(_EXEMPLARS, _EXEMPLARS.stat().st_mtime_ns)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("agent examples unavailable (%s); selecting from descriptions only", exc)
        return {}, ""


@dataclass(frozen=True)
class Profile:
    """What an agent is matched on."""

    name: str
    version: str  # changes whenever the agent file (or its examples) changes
    description: str
    domains: tuple[str, ...]
    examples: tuple[str, ...]
    skills: tuple[str, ...]

    @property
    def texts(self) -> tuple[str, ...]:
        return (self.description, *self.domains, *self.examples)

    def lexical_words(self) -> list[str]:
        parts = [self.name.replace("-", " "), self.description, *self.domains, *self.examples,
                 *(s.replace("-", " ") for s in self.skills)]
        return words(" ".join(parts))


def profiles(agents: Sequence[AgentSpec]) -> list[Profile]:
    by_agent, ex_hash = exemplars()
    out = []
    for spec in agents:
        examples = by_agent.get(spec.name, ()) if spec.source == "shipped" else ()
        version = spec.content_hash + (f"+{ex_hash}" if examples else "")
        out.append(Profile(spec.name, version, spec.description, tuple(spec.domains), examples, tuple(spec.skills)))
    return out


class Index:
    """Lexical index of the agents, plus their vectors once the model is available."""

    def __init__(self, profs: Sequence[Profile]) -> None:
        self.profiles = list(profs)
        self.names = [p.name for p in profs]
        self.bm25 = BM25([p.lexical_words() for p in profs])
        self.matrix: np.ndarray | None = None  # every text vector of every agent, stacked
        self.parts: list[tuple[int, int, int, int]] = []  # per agent: start, n_domains, n_examples, end
        self.encoded: list[str] = []  # agents whose vectors had to be computed (not read from the cache)
        self._lock = threading.Lock()

    def lexical(self, task: str) -> list[float]:
        raw = self.bm25.scores(words(task))
        top = max(raw, default=0.0)
        return [s / top if top > 0 else 0.0 for s in raw]

    def ensure_vectors(self) -> None:
        with self._lock:
            if self.matrix is not None:
                return
            import numpy as np

            s = get_settings()
            home = Path(s.home)
            cache = embeddings.VectorCache(home / "embeddings", embeddings.read_secret(home), "agents")
            groups = [embeddings.Group(p.name, p.version, p.texts) for p in self.profiles]
            vectors = cache.vectors(groups)
            self.encoded = list(cache.rebuilt)
            if cache.rebuilt:
                log.info("encoded %d agent profile(s): %s", len(cache.rebuilt), ", ".join(cache.rebuilt))
            blocks, start = [], 0
            for p in self.profiles:
                blocks.append(vectors[p.name])
                end = start + len(p.texts)
                self.parts.append((start, len(p.domains), len(p.examples), end))
                start = end
            self.matrix = np.concatenate(blocks).astype(np.float32)

    def semantic(self, task: str) -> list[float]:
        """Blend of description, best domain and best examples similarity, per agent, in [0, 1]."""
        import numpy as np

        assert self.matrix is not None
        query = embeddings.encode([prose(task)])[0]
        sims = self.matrix @ query
        out = []
        for start, n_dom, n_ex, end in self.parts:
            desc = float(sims[start])
            dom = sims[start + 1:start + 1 + n_dom]
            best_domain = float(dom.max()) if n_dom else desc
            # An agent without examples (a user's own) is matched on its domain phrases instead.
            pool = sims[start + 1 + n_dom:end] if n_ex else dom
            nearest = float(np.sort(pool)[-_TOP_EXAMPLES:].mean()) if len(pool) else desc
            total = _W_DESC * desc + _W_DOMAIN * best_domain + _W_EXAMPLE * nearest
            out.append(total / (_W_DESC + _W_DOMAIN + _W_EXAMPLE))
        return out


_index_lock = threading.Lock()
_index: tuple[tuple[Any, ...], Index] | None = None
_said_lexical = False
_warming: concurrent.futures.Future[bool] | None = None


def current_index() -> Index:
    """The index of the library as it is now (rebuilt when an agent file changes)."""
    global _index
    agents = library().agents()
    profs = profiles(agents)
    key = (str(Path(get_settings().home).resolve()), tuple((p.name, p.version) for p in profs))
    with _index_lock:
        if _index is None or _index[0] != key:
            _index = (key, Index(profs))
        return _index[1]


def _say_lexical(reason: str) -> None:
    global _said_lexical
    if not _said_lexical:
        _said_lexical = True
        log.info("agent selection is lexical (BM25): %s", reason)


def _method(wait: bool) -> str:
    mode = get_settings().selector
    if mode == "lexical":
        return "lexical"
    if not embeddings.available():
        if mode == "semantic":
            raise ConfigError("selector='semantic' needs the [semantic] extra, which is not installed.",
                              hint="pip install 'claudeforce_nb[semantic]', or set selector='auto'.")
        _say_lexical("the [semantic] extra is not installed (pip install 'claudeforce_nb[semantic]')")
        return "lexical"
    if not wait and not embeddings.is_loaded():
        warm_up(background=True)
        log.info("embedding model still loading; this selection is lexical")
        return "lexical"
    return "hybrid"


def select_agent(task: str, k: int = 3, *, wait: bool = True) -> list[Candidate]:
    """The `k` agents that fit `task` best, best first.

    With the `[semantic]` extra, the first call loads the embedding model (seconds; `warm_up()`
    starts that early, in the background). `wait=False` never blocks on that load: until the
    model is ready, the answer is lexical (and says so in `Candidate.method`)."""
    if not isinstance(task, str) or not task.strip():
        raise EmptyTaskError("The task to choose an agent for is empty.", hint="Describe what you want done.")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise UsageError(f"k must be a positive whole number, got {k!r}.", hint="Use k=3 for the top three agents.")
    index = current_index()
    method = _method(wait)
    lexical = index.lexical(task)
    if method == "hybrid":
        try:
            index.ensure_vectors()
            semantic = index.semantic(task)
        except embeddings.SemanticUnavailable as exc:
            if get_settings().selector == "semantic":
                raise ConfigError(f"selector='semantic' failed: {exc}.", hint="Set selector='auto' or 'lexical'.")\
                    from None
            _say_lexical(str(exc))
            method = "lexical"
    if method == "hybrid":
        total = _W_DESC + _W_DOMAIN + _W_EXAMPLE
        scores = [(total * s + _W_LEXICAL * lx) / (total + _W_LEXICAL) for s, lx in zip(semantic, lexical, strict=True)]
    else:
        scores = lexical
    ranked = sorted(zip(index.names, scores, strict=True), key=lambda p: (-p[1], p[0]))
    return [Candidate(name, round(max(0.0, min(1.0, s)), 4), method) for name, s in ranked[:k]]


def warm_up(background: bool = True) -> concurrent.futures.Future[bool]:
    """Load the embedding model and the agent vectors ahead of the first `select_agent`.

    Returns a Future whose result is True when semantic selection is ready, False when it is not
    available (the lexical selector will answer then). `background=False` does the work now."""
    global _warming
    future: concurrent.futures.Future[bool] = concurrent.futures.Future()
    if get_settings().selector == "lexical" or not embeddings.available():
        future.set_result(False)
        return future
    with _index_lock:
        if _warming is not None and not _warming.done():
            return _warming  # one warm-up at a time; callers share it
        _warming = future

    def run() -> None:
        try:
            embeddings.model()
            current_index().ensure_vectors()
            future.set_result(True)
        except embeddings.SemanticUnavailable as exc:
            _say_lexical(str(exc))
            future.set_result(False)
        except BaseException as exc:  # noqa: BLE001 - reported through the Future
            future.set_exception(exc)

    if background:
        threading.Thread(target=run, name="claudeforce-warm-up", daemon=True).start()
    else:
        run()
    return future
