"""Agent memory: past sessions (task → result) in SQLite, found again by *relevance*.

The original kept sessions in SQLite and handed the latest rows to the prompt; here a search
ranks sessions by FTS5 BM25 over the task text (and the result), the same agent's sessions
first, so an old session on the same problem beats last hour's unrelated ones. Text is stored
only when memory is used on purpose: `run_agent(..., memory=True)` or `cf.memory.add(...)`.

Storage: `$CLAUDEFORCE_HOME/memory/agent_memory.sqlite3` (WAL, busy timeout, so several
kernels can share it), the original `sessions` table and indexes, an external-content FTS5
index kept in sync by triggers, and schema changes as an ordered list of small migration
functions recorded in `_migrations`. Searches go through an LRU cache that is dropped on any
write — ours, or another connection's (noticed through `PRAGMA data_version`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = [
    "MIGRATIONS", "AgentMemory", "Session", "add", "clear", "default_memory", "memory_context", "search",
]

log = logging.getLogger("claudeforce_nb.memory")


@dataclass(frozen=True)
class Session:
    """One remembered call. `score`: BM25 relevance of the last search (higher is better)."""

    id: int
    agent_name: str
    task: str
    result: str | None
    success: bool
    timestamp: str
    metadata: dict[str, Any]
    score: float = 0.0


# --------------------------------------------------------------------------- schema


def _m001_sessions(db: sqlite3.Connection) -> None:
    db.execute("""CREATE TABLE IF NOT EXISTS sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        agent_name TEXT NOT NULL,
        task TEXT NOT NULL,
        task_hash TEXT NOT NULL,
        result TEXT,
        success INTEGER NOT NULL,
        timestamp TEXT NOT NULL,
        metadata TEXT)""")


def _m002_indexes(db: sqlite3.Connection) -> None:
    for column in ("agent_name", "task_hash", "timestamp", "success"):
        db.execute(f"CREATE INDEX IF NOT EXISTS idx_{column} ON sessions({column})")


def _m003_fts(db: sqlite3.Connection) -> None:
    # `agent_key` makes "this agent's sessions" an index lookup inside the full-text query.
    db.execute("ALTER TABLE sessions ADD COLUMN agent_key TEXT "
               "GENERATED ALWAYS AS ('ag' || replace(agent_name, '-', '')) VIRTUAL")
    # External content: the text lives once, in `sessions`; triggers keep the index in step.
    # No stemmer, so the terms of a query can be looked up in the index's vocabulary as they are.
    db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS sessions_fts USING fts5(task, result, agent_key, "
               "content='sessions', content_rowid='id', tokenize='unicode61 remove_diacritics 2')")
    db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS sessions_vocab USING fts5vocab(sessions_fts, row)")
    # (one statement each: executescript() would commit the migration's transaction half-way)
    db.execute(_INSERT_TRIGGER)
    db.execute("CREATE TRIGGER IF NOT EXISTS sessions_ad AFTER DELETE ON sessions BEGIN "
               f"{_FTS_DELETE} END")
    db.execute(f"CREATE TRIGGER IF NOT EXISTS sessions_au AFTER UPDATE ON sessions BEGIN {_FTS_DELETE} "
               f"{_FTS_INSERT} END")
    db.execute("INSERT INTO sessions_fts(sessions_fts) VALUES ('rebuild')")  # index rows from before FTS


_FTS_COLS = "rowid, task, result, agent_key"
_FTS_DELETE = (f"INSERT INTO sessions_fts(sessions_fts, {_FTS_COLS}) "
               "VALUES ('delete', old.id, old.task, old.result, old.agent_key);")
_FTS_INSERT = f"INSERT INTO sessions_fts({_FTS_COLS}) VALUES (new.id, new.task, new.result, new.agent_key);"
_INSERT_TRIGGER = f"CREATE TRIGGER IF NOT EXISTS sessions_ai AFTER INSERT ON sessions BEGIN {_FTS_INSERT} END"


def _m004_agent_recent_index(db: sqlite3.Connection) -> None:
    db.execute("CREATE INDEX IF NOT EXISTS idx_agent_timestamp ON sessions(agent_name, timestamp)")


def _m005_drop_vocab(db: sqlite3.Connection) -> None:
    # Document counts now come from capped MATCH queries: fts5vocab walks a word's whole posting
    # list (0.7 ms for a word in 20% of 100k sessions) and knows no identifier like `parse_dates`.
    db.execute("DROP TABLE IF EXISTS sessions_vocab")


MIGRATIONS: tuple[tuple[str, Callable[[sqlite3.Connection], None]], ...] = (
    ("0001_sessions", _m001_sessions),
    ("0002_indexes", _m002_indexes),
    ("0003_fts5_task_result", _m003_fts),
    ("0004_agent_recent_index", _m004_agent_recent_index),
    ("0005_drop_fts_vocab", _m005_drop_vocab),
)


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply the migrations not yet recorded in `_migrations`, in order; returns their names."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    applied = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone() is None:
                fn(db)  # another process may have applied it while we waited for the lock
                db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, _now()))
                applied.append(name)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return applied


# --------------------------------------------------------------------------- search terms

# The index's words (FTS5 unicode61, remove_diacritics 2): letters and digits, "_" and punctuation
# separate them, matched without case or accents. Queries are split the same way.
_WORD = re.compile(r"[^\W_]+")
_STOP = frozenset("""a an the to of for in on and or with that this it is be are was were my me please can
could would should you your how what why when where do does did i we our into from by as at so if not
no yes but about all any some use using make write give show help want need get just than then there
these those them they their its also via per each one""".split())
_MAX_TERMS = 24
POSTING_BUDGET = 1500  # sessions scored per search: keeps p95 under a millisecond at 100k sessions
_MAX_COUNTS = 50_000  # cached document counts kept before starting over


def _fold(text: str) -> str:
    """Lower case without diacritics ("Résumé" -> "resume"), as the index stores words."""
    text = text.lower()
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def _words(text: str) -> set[str]:
    """Every word of `text` as the index sees it."""
    return set(_WORD.findall(_fold(text)))


def query_terms(task: str) -> list[str]:
    """The words of `task` worth matching: no stop words, no single characters, no repeats."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(_fold(task)):
        if len(word) > 1 and word not in _STOP and not word.isdigit():
            seen.setdefault(word, None)
    return list(seen)[:_MAX_TERMS]


def _phrase(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def _variant(term: str) -> str:
    """The singular or plural twin of a word ("tests" <-> "test"): recall without a stemmer."""
    return term[:-1] if term.endswith("s") and len(term) > 3 else term + "s"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


# --------------------------------------------------------------------------- the store


class AgentMemory:
    """Sessions in the SQLite file at `path` (handed in; the store never locates itself)."""

    def __init__(self, path: Path, *, cache_size: int = 256, timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA cache_size=-32000")  # 32 MB of pages: the index stays hot
        self._db.execute("PRAGMA mmap_size=268435456")
        with self._lock:
            migrate(self._db)
        self._cache: OrderedDict[tuple[Any, ...], tuple[Session, ...]] = OrderedDict()
        self._cache_size = cache_size
        self._version = self._data_version()
        self._dfs: dict[str, int] = {}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def migrations(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT name FROM _migrations ORDER BY name")]

    def _data_version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def _invalidate(self, texts: tuple[str | None, ...] | None = None, *, deleted: bool = False) -> None:
        """Drop cached searches, and the word counts a write may have changed: after adding a
        session, those of its words (`texts`); after inserts we did not see (a bulk insert,
        another connection), all but the counts already past POSTING_BUDGET, which inserts only
        raise; after a delete, all."""
        self._cache.clear()
        if deleted:
            self._dfs.clear()
        elif texts is None:
            self._dfs = {w: n for w, n in self._dfs.items() if n > POSTING_BUDGET}
        else:
            for text in texts:
                for word in _words(text or ""):
                    if self._dfs.get(word, 0) <= POSTING_BUDGET:
                        self._dfs.pop(word, None)

    # ---------------------------------------------------------------- writes
    def add(self, agent: str, task: str, result: str | None = None, success: bool = True,
            metadata: Mapping[str, Any] | None = None, *, timestamp: str | None = None) -> int:
        """Remember one session; returns its id."""
        from ..errors import UsageError

        if not isinstance(task, str) or not task.strip():
            raise UsageError("A memory needs a task text; got an empty one.")
        row = (agent, task, hashlib.sha256(task.encode()).hexdigest()[:16], result, int(bool(success)),
               timestamp or _now(), json.dumps(dict(metadata or {}), default=str))
        with self._lock:
            cur = self._db.execute("INSERT INTO sessions (agent_name, task, task_hash, result, success, timestamp, "
                                   "metadata) VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            self._invalidate((task, result))
            return int(cur.lastrowid or 0)

    def add_many(self, rows: list[tuple[str, str, str | None, bool]]) -> int:
        """Bulk insert (agent, task, result, success) rows in one transaction (imports, benchmarks)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # the write lock: no other insert can miss the index
            try:
                first = int(self._db.execute("SELECT coalesce(max(id), 0) FROM sessions").fetchone()[0])
                bulk = len(rows) > 1000  # index the batch in one pass instead of row by row
                if bulk:
                    self._db.execute("DROP TRIGGER sessions_ai")
                self._db.executemany(
                    "INSERT INTO sessions (agent_name, task, task_hash, result, success, timestamp, metadata) "
                    "VALUES (?, ?, ?, ?, ?, ?, '{}')",
                    [(a, t, hashlib.sha256(t.encode()).hexdigest()[:16], r, int(bool(s)), _now())
                     for a, t, r, s in rows])
                if bulk:
                    self._db.execute(f"INSERT INTO sessions_fts({_FTS_COLS}) SELECT id, task, result, agent_key "
                                     "FROM sessions WHERE id > ?", (first,))
                    self._db.execute(_INSERT_TRIGGER)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._invalidate()
            return len(rows)

    def clear(self, agent: str | None = None) -> int:
        """Forget every session (or one agent's); returns how many were removed."""
        with self._lock:
            if agent is None:
                n = self._db.execute("SELECT count(*) FROM sessions").fetchone()[0]
                self._db.execute("DELETE FROM sessions")
                self._db.execute("INSERT INTO sessions_fts(sessions_fts) VALUES ('rebuild')")
            else:
                n = self._db.execute("DELETE FROM sessions WHERE agent_name = ?", (agent,)).rowcount
            self._invalidate(deleted=True)
            return int(n)

    def count(self, agent: str | None = None) -> int:
        with self._lock:
            if agent is None:
                return int(self._db.execute("SELECT count(*) FROM sessions").fetchone()[0])
            return int(self._db.execute("SELECT count(*) FROM sessions WHERE agent_name = ?", (agent,)).fetchone()[0])

    # ---------------------------------------------------------------- reads
    def search(self, task: str, agent: str | None = None, k: int = 5, *, successful_only: bool = False
               ) -> list[Session]:
        """The `k` sessions most relevant to `task` (BM25 over task and result text), sessions
        of `agent` first; [] when no word of `task` was ever seen."""
        terms = query_terms(task)
        if not terms or k <= 0:
            return []
        key = (tuple(terms), agent, k, successful_only)
        with self._lock:
            version = self._data_version()
            if version != self._version:  # another connection wrote since our last look
                self._version = version
                self._invalidate()
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return list(hit)
            found = self._query(terms, agent, k, successful_only)
            self._cache[key] = tuple(found)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return found

    def _df(self, term: str) -> int:
        """How many sessions contain `term`, counted up to POSTING_BUDGET + 1 (past that, the
        exact number changes no plan). Cached until a session with the word is added."""
        found = self._dfs.get(term)
        if found is None:
            if len(self._dfs) >= _MAX_COUNTS:
                self._dfs.clear()
            found = self._dfs[term] = int(self._db.execute(
                "SELECT count(*) FROM (SELECT 1 FROM sessions_fts WHERE sessions_fts MATCH ? LIMIT ?)",
                (_phrase(term), POSTING_BUDGET + 1)).fetchone()[0])
        return found

    def _plan(self, terms: list[str]) -> tuple[list[str], int]:
        """(terms to score, lowest rowid to look at). BM25 costs time per matching session, so
        score the rarest terms whose sessions fit POSTING_BUDGET — common words add little to
        BM25 anyway. When even the rarest term is common, look at its latest sessions only."""
        known = sorted((self._df(t), t) for t in terms)
        keep: list[str] = []
        total = 0
        for df, term in known:
            if df == 0:
                continue
            if keep and total + df > POSTING_BUDGET:
                break
            keep.append(term)
            total += df
        if total <= POSTING_BUDGET:
            return keep, 0
        row = self._db.execute("SELECT rowid FROM sessions_fts WHERE sessions_fts MATCH ? ORDER BY rowid DESC "
                               "LIMIT 1 OFFSET ?", (_phrase(keep[0]), POSTING_BUDGET - 1)).fetchone()
        return keep, int(row[0]) if row else 0

    def _query(self, terms: list[str], agent: str | None, k: int, successful_only: bool) -> list[Session]:
        keep, floor = self._plan(terms + [_variant(t) for t in terms])
        if not keep:
            return []
        any_word = " OR ".join(_phrase(t) for t in keep)
        ok = " AND s.success = 1" if successful_only else ""
        # The ranking runs inside FTS first (CROSS JOIN keeps that order), then fetches the few
        # winners' rows. bm25(): lower is better; task counts more than result, agent_key not at all.
        sql = ("SELECT s.id, s.agent_name, s.task, s.result, s.success, s.timestamp, s.metadata, f.rank FROM "
               "(SELECT rowid AS id, bm25(sessions_fts, 1.0, 0.3, 0.0) AS rank FROM sessions_fts "
               "WHERE sessions_fts MATCH ? AND rowid >= ?) AS f CROSS JOIN sessions AS s ON s.id = f.id "
               f"WHERE 1{ok} {{extra}} ORDER BY f.rank LIMIT ?")
        rows: list[Any] = []
        if agent is not None:
            match = f'agent_key : {_phrase("ag" + agent.replace("-", ""))} AND ({any_word})'
            rows = self._db.execute(sql.format(extra="AND s.agent_name = ?"), (match, floor, agent, k)).fetchall()
        if len(rows) < k:
            extra, args = ("AND s.agent_name IS NOT ?", (any_word, floor, agent, k - len(rows))) \
                if agent is not None else ("", (any_word, floor, k))
            rows += self._db.execute(sql.format(extra=extra), args).fetchall()
        return [Session(r[0], r[1], r[2], r[3], bool(r[4]), r[5], json.loads(r[6] or "{}"), -float(r[7]))
                for r in rows]

    def recent(self, agent: str | None = None, k: int = 5) -> list[Session]:
        """The latest sessions (what the original injected), newest first."""
        with self._lock:
            sql = "SELECT id, agent_name, task, result, success, timestamp, metadata FROM sessions "
            rows = (self._db.execute(sql + "WHERE agent_name = ? ORDER BY timestamp DESC LIMIT ?", (agent, k))
                    if agent is not None else self._db.execute(sql + "ORDER BY timestamp DESC LIMIT ?", (k,)))
            return [Session(r[0], r[1], r[2], r[3], bool(r[4]), r[5], json.loads(r[6] or "{}")) for r in rows]


# --------------------------------------------------------------------------- module API

_stores: dict[str, AgentMemory] = {}
_stores_lock = threading.Lock()


def default_memory() -> AgentMemory:
    """The memory of the current `CLAUDEFORCE_HOME` (`memory/agent_memory.sqlite3`)."""
    from ..config import get_settings

    path = (get_settings().home / "memory" / "agent_memory.sqlite3").resolve()
    with _stores_lock:
        store = _stores.get(str(path))
        if store is None:
            store = _stores[str(path)] = AgentMemory(path)
        return store


def search(task: str, agent: str | None = None, k: int = 5) -> list[Session]:
    """The `k` past sessions most relevant to `task`, those of `agent` first."""
    return default_memory().search(task, agent=agent, k=k)


def add(agent: str, task: str, result: str | None = None, success: bool = True,
        metadata: Mapping[str, Any] | None = None) -> int:
    """Remember a session (stores the task and result text: calling this is the opt-in)."""
    return default_memory().add(agent, task, result, success, metadata)


def clear(agent: str | None = None) -> int:
    """Forget all sessions, or one agent's. Returns how many were removed."""
    return default_memory().clear(agent)


def _tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)  # ~4 characters per token: a budget, not a bill


def memory_context(agent: str, task: str, budget_tokens: int = 800, k: int = 5,
                   memory: AgentMemory | None = None) -> str | None:
    """Past successful sessions relevant to `task` (this agent's first), formatted to prepend to
    the prompt and cut to about `budget_tokens`; None when nothing relevant is remembered."""
    store = memory or default_memory()
    found = store.search(task, agent=agent, k=k, successful_only=True)
    if not found or budget_tokens <= 0:
        return None
    head = "Relevant past sessions from memory (most relevant first); reuse what still applies:"
    parts, used = [head], _tokens(head)
    for s in found:
        entry = f"\n\n## Past task ({s.agent_name})\n{s.task.strip()}\n## Result\n{(s.result or '').strip()}"
        room = budget_tokens - used
        if room <= 40:
            break
        if _tokens(entry) > room:
            entry = entry[: room * 4 - 1].rstrip() + "…"
        parts.append(entry)
        used += _tokens(entry)
    return "".join(parts) if len(parts) > 1 else None
