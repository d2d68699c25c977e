"""Response cache: SQLite, process-safe (WAL + busy timeout), TTL and a size cap with LRU eviction.

Each `set` (or `set_many` batch) commits at once (a killed process loses nothing it was told was
stored), but the WAL is copied back into the database file (a checkpoint, which waits for the
disk: ~6 ms every few hundred writes) by a short-lived background thread instead of inside the
write that happens to cross SQLite's automatic threshold: that write runs on the caller's event
loop and would stall every call in flight.

The key is a hash of everything that changes the answer (model, full system prompt, messages,
temperature, max_tokens), so editing an agent or skill file changes the key and a stale answer is
never served. A corrupt database file is moved aside and rebuilt, with one warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["ResponseCache", "cache_key"]

log = logging.getLogger("claudeforce_nb.cache")
# Counting the payload bytes scans the whole table (30 ms at 50,000 entries), so it is not done on
# every write: see ResponseCache._evict.
_RECOUNT_EVERY = 1000
_EVICT_TO = 0.9  # an eviction frees down to this share of the cap, so a full cache is not rescanned at once
# Writes by one ResponseCache between background checkpoints. A write is ~3.5 pages of WAL, so this
# is about SQLite's default automatic checkpoint (1,000 pages).
CHECKPOINT_EVERY = 300
# Built once: json.dumps with options builds a new encoder on every call. Same output.
_KEY_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)
_PAYLOAD_JSON = json.JSONEncoder(separators=(",", ":"))

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    created REAL NOT NULL,
    accessed REAL NOT NULL,
    size INTEGER NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_responses_accessed ON responses(accessed);
"""


def cache_key(params: dict[str, Any]) -> str:
    """Stable hash of the request parameters that determine the answer."""
    relevant = {k: params.get(k) for k in ("model", "system", "messages", "temperature", "max_tokens")}
    blob = _KEY_JSON.encode(relevant)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    def __init__(self, path: Path, *, ttl_s: float = 86400.0, max_mb: float = 100.0,
                 clock: Any = time.time) -> None:
        self.path = Path(path)
        self.ttl_s = ttl_s
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.clock = clock
        self._local = threading.local()
        self._writes = 0
        self._total: int | None = None  # payload bytes at the last count, plus this process's writes since
        self._unchecked = 0  # writes since the last background checkpoint started
        self._checkpointing = threading.Lock()
        self.checkpoints = 0  # background checkpoints completed

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
        return conn

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(2):
            try:
                conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA busy_timeout=10000")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA wal_autocheckpoint=0")  # see _wrote: checkpoints run in the background
                conn.executescript(_SCHEMA)
                return conn
            except sqlite3.DatabaseError:
                if attempt:
                    raise
                self._quarantine()
        raise AssertionError("unreachable")

    def _quarantine(self) -> None:
        bad = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        log.warning("Response cache %s was unreadable; moved it to %s and started a new one.", self.path, bad)
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                p.replace(Path(str(bad) + suffix))

    def _wrote(self, n: int = 1) -> None:
        """Count `n` committed writes; every CHECKPOINT_EVERY, checkpoint the WAL on a background
        thread (PASSIVE: it never blocks readers or writers, in this process or another)."""
        self._unchecked += n
        if self._unchecked < CHECKPOINT_EVERY or not self._checkpointing.acquire(blocking=False):
            return
        self._unchecked = 0
        try:
            threading.Thread(target=self._checkpoint, name="claudeforce-cache-checkpoint", daemon=True).start()
        except RuntimeError:  # interpreter shutting down: the WAL stays valid, the next writer checkpoints
            self._checkpointing.release()

    def _checkpoint(self) -> None:
        try:
            with contextlib.suppress(sqlite3.Error):
                conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
                try:
                    conn.execute("PRAGMA busy_timeout=10000")
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                finally:
                    conn.close()
        finally:
            self._checkpointing.release()

    def _run(self, fn: Any) -> Any:
        try:
            return fn(self._conn())
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                return None  # a busy cache is a miss, never an error
            self._local.conn = None
            self._quarantine()
            return fn(self._conn())

    def get(self, key: str) -> dict[str, Any] | None:
        now = self.clock()

        def op(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute("SELECT created, payload FROM responses WHERE key=?", (key,)).fetchone()
            if row is None:
                return None
            if row[0] < now - self.ttl_s:
                conn.execute("DELETE FROM responses WHERE key=?", (key,))
                self._wrote()
                return None
            conn.execute("UPDATE responses SET accessed=? WHERE key=?", (now, key))
            self._wrote()
            try:
                payload = json.loads(row[1])
            except ValueError:
                return None
            return payload if isinstance(payload, dict) else None

        result: dict[str, Any] | None = self._run(op)
        return result

    def set(self, key: str, payload: dict[str, Any]) -> None:
        self.set_many([(key, payload)])

    def set_many(self, entries: list[tuple[str, dict[str, Any]]]) -> None:
        """Store several answers in one transaction (the answers a map job got in the last 50 ms,
        see `WriteBehind`): one commit instead of one per answer."""
        if not entries:
            return
        now = self.clock()
        rows = [(key, now, now, len(blob), blob)
                for key, payload in entries for blob in (_PAYLOAD_JSON.encode(payload),)]

        def op(conn: sqlite3.Connection) -> None:
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT OR REPLACE INTO responses(key, created, accessed, size, payload) VALUES (?,?,?,?,?)", rows)
                self._evict(conn, sum(r[3] for r in rows), len(rows))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._wrote(len(rows))

        self._run(op)

    def _evict(self, conn: sqlite3.Connection, added: int, writes: int) -> None:
        """Keep the payloads under the cap, least recently used out first. The table is counted
        only when this process's running total (the last count plus its own writes since) would
        pass the cap, or every _RECOUNT_EVERY writes (other processes write too), not on every
        write; an eviction frees down to _EVICT_TO of the cap."""
        before, self._writes = self._writes, self._writes + writes
        estimate = self._total
        if (estimate is not None and estimate + added <= self.max_bytes
                and before // _RECOUNT_EVERY == self._writes // _RECOUNT_EVERY):
            self._total = estimate + added
            return
        total = int(conn.execute("SELECT COALESCE(SUM(size), 0) FROM responses").fetchone()[0])
        if total <= self.max_bytes:
            self._total = total
            return
        excess = total - int(self.max_bytes * _EVICT_TO)
        rows = conn.execute("SELECT key, size FROM responses ORDER BY accessed ASC").fetchall()
        doomed = []
        for key, size in rows:
            if excess <= 0:
                break
            doomed.append((key,))
            excess -= size
            total -= size
        conn.executemany("DELETE FROM responses WHERE key=?", doomed)
        self._total = total

    def clear(self) -> None:
        self._run(lambda conn: conn.execute("DELETE FROM responses"))
        self._total = 0

    def __len__(self) -> int:
        return int(self._run(lambda conn: conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]) or 0)
