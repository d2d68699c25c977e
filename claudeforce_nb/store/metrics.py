"""The metrics log: one JSON line per logical call, appended to
`$CLAUDEFORCE_HOME/metrics/executions.jsonl`, and loaded back as a pandas DataFrame.

Writing: each record (or batch of records) is one `write()` on an O_APPEND descriptor while
holding an exclusive `flock`, so concurrent processes never interleave or lose lines. The log is
rotated only by *renaming* it under that same lock; a writer that opened the old file re-checks
the inode after locking and reopens, so no line lands in a file that is about to be compacted.

Layout of `metrics/` (everything but the live log is produced here or by `store.rollups`):

    executions.jsonl              the live log, append-only, never rewritten in place
    executions.<stamp>.jsonl      a rotated log, waiting for `rollup()` to compact it
    rollups/rollup-<stamp>.parquet  compacted history: daily aggregates of old detail
                                  (`is_rollup=True`, `executions` = calls in the row) plus the
                                  recent detail rows; each names the files it replaced
    .cache/                       disposable columnar cache of each log's complete lines

Loading reads the rollups, then each JSONL file through its columnar cache (Parquet chunks
covering byte ranges of complete lines, keyed by inode and first line), parsing only the tail
appended since the last load. Torn or corrupt lines are skipped, counted in
`df.attrs["skipped_lines"]` and reported once; loading never raises for bad content.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .columnar import FrameBuilder, ipc_batches, parquet_batches, write_ipc

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CATEGORICAL", "COLUMNS", "MetricsLog", "SESSION_ID", "builder", "frame_from_table", "load_metrics",
    "metrics_dir", "now_iso", "schema",
]

log = logging.getLogger("claudeforce_nb.metrics")
SESSION_ID = uuid.uuid4().hex[:12]

# (name, type name) in the order of the DESIGN schema; the log stores timestamps as ISO 8601 text.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("timestamp", "timestamp"),
    ("agent_name", "string"),
    ("task_hash", "string"),
    ("success", "bool"),
    ("execution_time_ms", "float64"),
    ("ttft_ms", "float64"),
    ("model", "string"),
    ("tier", "string"),
    ("input_tokens", "int64"),
    ("output_tokens", "int64"),
    ("cache_read_tokens", "int64"),
    ("cache_write_tokens", "int64"),
    ("total_tokens", "int64"),
    ("estimated_cost", "float64"),
    ("baseline_cost", "float64"),
    ("cached", "bool"),
    ("backend", "string"),
    ("workflow_id", "string"),
    ("step_id", "string"),
    ("error_type", "string"),
    ("attempts", "int64"),
    ("session_id", "string"),
    ("request_id", "string"),
    ("batch", "bool"),
    ("task", "string"),
    ("response", "string"),
)
# Columns every loaded frame also has: a detail row is one call; a rollup row stands for
# `executions` calls of one day (token and cost columns are sums, times are means).
WEIGHT_COLUMNS: tuple[tuple[str, str], ...] = (("executions", "int64"), ("is_rollup", "bool"))
CATEGORICAL = ("agent_name", "model", "tier", "backend", "error_type", "session_id")

LIVE_NAME = "executions.jsonl"
# Parse a long uncached tail in blocks of this many bytes: the block, its parsed table and the
# parser's buffers are what a first load holds on top of the frame (64 MB blocks: +200 MB at 1M rows).
_BLOCK = 16 << 20
_CHUNK = 64 << 20  # ... and cache them in chunks covering about this many bytes of the log
_CACHE_MIN = 4 << 20  # a tail shorter than this is parsed on every load instead of cached
_MAX_CHUNKS = 12  # more cached chunks than this for one file are merged into one
_CACHE_BEHIND = 64 << 20  # row-by-row writers cache the log's tail each time it grows this much
_CACHE_BATCH = 1 << 16  # rows per record batch in a cached chunk (see _rebatch)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def metrics_dir(home: Path) -> Path:
    return Path(home) / "metrics"


# --------------------------------------------------------------------------- writing


_tail_lock = threading.Lock()
_tail_threads: dict[str, threading.Thread] = {}  # the background caching of each log's tail, by path


class MetricsLog:
    """Append-only JSONL log at `path` (handed in; the log never locates itself)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def caching(self) -> threading.Thread | None:
        """The latest background caching of this log's tail (by any MetricsLog of this path)."""
        return _tail_threads.get(os.fspath(self.path))

    def append(self, record: Mapping[str, Any]) -> None:
        self._cache_behind(self._write(_dumps(record)))

    def append_many(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append several records with one locked write (all or, if the process dies, a prefix)."""
        self._cache_behind(self._write(b"".join(_dumps(r) for r in records)))

    def append_table(self, table: Any) -> None:
        """Append the rows of a pyarrow Table or DataFrame that has the metrics columns (bulk
        imports and synthetic data; one locked write per 100,000 rows). The rows are cached in
        columnar form as they are written, so the next load does not parse them back."""
        import pyarrow as pa

        if not isinstance(table, pa.Table):
            table = pa.Table.from_pandas(table, preserve_index=False)
        cols = [name for name, _ in COLUMNS if name in table.column_names]
        for start in range(0, table.num_rows, 100_000):
            part = table.slice(start, 100_000).select(cols)
            self._write(_jsonl(part), after=functools.partial(_cache_written, self.path.parent / ".cache", part))

    def _cache_behind(self, span: tuple[int, int] | None) -> None:
        """Row-by-row writers keep the columnar cache about _CACHE_BEHIND bytes behind the end of
        the log at most: the append that crosses a multiple of it caches the uncached tail in a
        background thread (pyarrow parses without the GIL), so a log that grew call by call over
        months does not make its first load parse all of it."""
        if span is None or span[0] // _CACHE_BEHIND == span[1] // _CACHE_BEHIND:
            return
        key = os.fspath(self.path)
        with _tail_lock:
            running = _tail_threads.get(key)
            if running is not None and running.is_alive():  # it would parse the same bytes again
                return
            t = _tail_threads[key] = threading.Thread(target=cache_tail, args=(self.path,),
                                                      name="claudeforce-metrics-cache", daemon=True)
        t.start()

    def rotate(self) -> Path | None:
        """Rename the live log to `executions.<stamp>.jsonl` under the writers' lock; the next
        append starts a new file. Returns the new name, or None when there was no log."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            _lock(fd)
            if os.fstat(fd).st_size == 0:
                return None
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            target = self.path.with_name(f"{self.path.stem}.{stamp}{self.path.suffix}")
            os.rename(self.path, target)
            return target
        finally:
            os.close(fd)

    def _write(self, data: bytes, after: Callable[[int, int, int], None] | None = None) -> tuple[int, int] | None:
        """Append `data` under the writers' lock; returns the byte range it now fills (None when
        nothing was written). `after(fd, start, end)` runs before the lock is released, unless a
        torn line had to be ended first (that range then begins with a line no cache can hold)."""
        if not data:
            return None
        path = os.fspath(self.path)
        while True:
            try:
                # read access too: the torn-line check below reads the last byte on this descriptor
                fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            except FileNotFoundError:  # the first record: its folder does not exist yet
                self.path.parent.mkdir(parents=True, exist_ok=True)
                continue
            try:
                _lock(fd)
                # The log may have been rotated (renamed) between open and lock: write to the
                # file that is now at `path`, never into the one being compacted.
                st = os.fstat(fd)
                try:
                    same = os.path.samestat(st, os.stat(path))
                except FileNotFoundError:
                    same = False
                if not same:
                    continue
                torn = bool(st.st_size) and _last_byte(fd, st.st_size) != b"\n"
                if torn:
                    # A writer died mid-line: end its torn line, or this record would be glued
                    # onto it and lost too (the loader skips and counts the torn one).
                    data = b"\n" + data
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                start, end = st.st_size + torn, st.st_size + len(data)
                if after is not None and not torn:
                    try:
                        after(fd, start, end)
                    except Exception as exc:  # the rows are written; a cache is only a speed-up
                        log.debug("metrics cache not written on append: %s", exc)
                return start, end
            finally:
                os.close(fd)  # closing releases the lock


def _last_byte(fd: int, size: int) -> bytes:
    """The byte at `size - 1` (appends on an O_APPEND descriptor still go to the end)."""
    try:
        if hasattr(os, "pread"):
            return os.pread(fd, 1, size - 1)
        os.lseek(fd, size - 1, os.SEEK_SET)
        return os.read(fd, 1)
    except OSError:
        return b"\n"  # unreadable: assume whole lines rather than inject a blank one


def _dumps(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(record, separators=(",", ":"), default=str, ensure_ascii=False) + "\n").encode()


def _jsonl(table: Any) -> bytes:
    """The rows of `table` as JSON lines, built column-wise with Arrow kernels (about 50x faster
    than json.dumps per row); values that need more than quote/backslash escaping go through
    json.dumps one by one, so the output is always valid JSON."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return b""
    parts: list[Any] = []
    for i, name in enumerate(table.column_names):
        col = _plain(table.column(name).combine_chunks())
        t = col.type
        if pa.types.is_timestamp(t):
            # a naive cast to text is ~10x faster than strftime; the values are UTC either way
            naive = col.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).cast(pa.timestamp("us"))
            iso = pc.replace_substring(naive.cast(pa.string()), " ", "T", max_replacements=1)
            text = pc.binary_join_element_wise('"', iso, '+00:00"', "")
        elif pa.types.is_boolean(t) or pa.types.is_integer(t):
            text = col.cast(pa.string())
        elif pa.types.is_floating(t):
            text = _finite(col).cast(pa.string())
        elif pa.types.is_string(t) and not pc.any(pc.match_substring_regex(col, "[\\x00-\\x1f\\x7f]")).as_py():
            escaped = pc.replace_substring(pc.replace_substring(col, "\\", "\\\\"), '"', '\\"')
            text = pc.binary_join_element_wise('"', escaped, '"', "")
        else:
            text = pa.array([None if v is None else json.dumps(v, ensure_ascii=False, default=str)
                             for v in col.to_pylist()], pa.string())
        parts += [("{" if i == 0 else ",") + json.dumps(name) + ":", pc.fill_null(text, "null")]
    lines = pc.binary_join_element_wise(*parts, "}\n", "")
    lines = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
    return _concat_values(lines)


def _plain(col: Any) -> Any:
    """A column as _jsonl writes it: dictionary-encoded and large strings become plain strings."""
    import pyarrow as pa

    return col.cast(pa.string()) if pa.types.is_dictionary(col.type) or pa.types.is_large_string(col.type) else col


def _finite(col: Any) -> Any:
    """A float column with NaN and infinities as null (they are not JSON: _jsonl writes null)."""
    import pyarrow.compute as pc

    return pc.if_else(pc.is_finite(col), col, None)


def _concat_values(arr: Any) -> bytes:
    """The concatenated bytes of a string array without nulls (its data buffer, sliced)."""
    import numpy as np

    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset:arr.offset + len(arr) + 1]
    return arr.buffers()[2].to_pybytes()[int(offsets[0]):int(offsets[-1])]


def _lock(fd: int, shared: bool = False) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: appends of one small write are atomic enough on NTFS
        return
    fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)


@contextlib.contextmanager
def compaction_lock(directory: Path, *, shared: bool) -> Iterator[None]:
    """Loads hold this shared, a rollup holds it exclusive: a load never sees half a rollup."""
    try:
        fd = os.open(Path(directory) / ".compaction.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:  # no directory yet (nothing to load) or read-only: nothing to coordinate
        yield
        return
    try:
        _lock(fd, shared=shared)
        yield
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- schema and frames


def schema(*, weights: bool = False) -> Any:
    """The pyarrow schema of detail rows (`weights=True`: plus executions and is_rollup)."""
    import pyarrow as pa

    types = {"string": pa.string(), "bool": pa.bool_(), "float64": pa.float64(), "int64": pa.int64(),
             "timestamp": pa.timestamp("us", tz="UTC")}
    cols = COLUMNS + WEIGHT_COLUMNS if weights else COLUMNS
    return pa.schema([(name, types[t]) for name, t in cols])


def builder(since: Any = None, agents: Sequence[str] | None = None) -> FrameBuilder:
    """A FrameBuilder for metrics frames (a detail row without weights is one call)."""
    return FrameBuilder(schema(weights=True), CATEGORICAL, defaults={"executions": 1, "is_rollup": False},
                        since=since, agents=agents)


def frame_from_table(table: Any) -> pd.DataFrame:
    """A metrics DataFrame from a pyarrow Table with (some of) the metrics columns: tz-aware UTC
    timestamps, categoricals for the low-cardinality columns, `executions`/`is_rollup` present."""
    b = builder()
    b.reserve(table.num_rows)
    b.add_table(table)
    return b.finish()


# --------------------------------------------------------------------------- parsing


_LEADING_NULL = re.compile(rb"\s*null")
_PARSE_BLOCK = 4 << 20  # pyarrow parses blocks of this size in parallel (one block: one core)


def _read_json(buf: bytes, opts: Any) -> Any:
    """pyarrow's parse of `buf`, in parallel blocks; a line longer than a block fails that
    way, so it is parsed again as one block (a bad line then fails again, for the caller)."""
    import pyarrow as pa
    import pyarrow.json as pj

    try:
        return pj.read_json(io.BytesIO(buf), read_options=pj.ReadOptions(block_size=_PARSE_BLOCK),
                            parse_options=opts)
    except pa.ArrowInvalid:
        if len(buf) <= _PARSE_BLOCK:
            raise
    return pj.read_json(io.BytesIO(buf), read_options=pj.ReadOptions(block_size=len(buf) + 1), parse_options=opts)


def _parse_jsonl(raw: bytes) -> tuple[Any, int]:
    """(pyarrow Table, number of skipped lines) for a buffer of complete lines. Fast path:
    pyarrow parses the whole buffer; on a bad line, check each line and parse only the good ones."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    if len(raw) < 4096 and not raw.strip():  # (a long buffer is never all blank; strip would copy it)
        return schema().empty_table(), 0
    opts = pj.ParseOptions(explicit_schema=schema(), unexpected_field_behavior="ignore")
    try:
        if _LEADING_NULL.match(raw):  # pyarrow 26 segfaults on a buffer that starts with `null`
            raise pa.ArrowInvalid("a bare null line")
        table = _read_json(raw, opts)
        missing = table["timestamp"].null_count  # e.g. `{}`: valid JSON, but not a record
        if missing:
            table = table.filter(pc.is_valid(table["timestamp"]))
        return table, missing
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    skipped = 0
    good: list[bytes] = []
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict) or not isinstance(obj.get("timestamp"), str):
                raise ValueError
        except ValueError:
            skipped += 1
            continue
        good.append(json.dumps({k: obj.get(k) for k, _ in COLUMNS}).encode())
    if not good:
        return schema().empty_table(), skipped
    try:
        table = _read_json(b"\n".join(good) + b"\n", opts)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a value of the wrong type: go row by row
        rows, bad = [], 0
        for g in good:
            try:
                rows.append(_read_json(g, opts))
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                bad += 1
        skipped += bad
        table = pa.concat_tables(rows) if rows else schema().empty_table()
    return table, skipped


# --------------------------------------------------------------------------- columnar cache
# `.cache/<key>/<start>-<end>-<skipped>.arrow` holds the parsed rows of bytes [start, end) of the
# log whose identity is <key>. The log is append-only, so a cached range never goes stale; a new
# file at the same path has another inode or first line, hence another key.


def _cache_key(path: Path) -> str | None:
    """Identity of a log file that survives renames (inode) and detects a reused inode (the
    first line, which never changes once written)."""
    with open(path, "rb") as f:
        return _cache_key_fd(f.fileno())


def _cache_key_fd(fd: int) -> str | None:
    st = os.fstat(fd)
    if hasattr(os, "pread"):
        head = os.pread(fd, 1 << 16, 0)
    else:
        os.lseek(fd, 0, os.SEEK_SET)
        head = os.read(fd, 1 << 16)
    end = head.find(b"\n")
    if end < 0:
        return None
    return f"{st.st_dev:x}-{st.st_ino:x}-{hashlib.sha1(head[:end]).hexdigest()[:16]}"


def _chunks(folder: Path) -> list[tuple[int, int, int, Path]]:
    """(start, end, skipped, path) of cached chunks forming a contiguous cover from byte 0."""
    found = []
    for p in folder.glob("*.arrow") if folder.is_dir() else ():
        try:
            start, end, skipped = (int(x) for x in p.stem.split("-"))
        except ValueError:
            continue
        found.append((start, end, skipped, p))
    cover, at = [], 0
    for c in sorted(found):
        if c[0] == at and c[1] > at:
            cover.append(c)
            at = c[1]
    return cover


def _cache_write(folder: Path, name: str, batches: Iterable[Any]) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_ipc(batches, schema(), folder / name)
        return True
    except OSError as exc:  # a read-only home still loads, just without the cache
        log.debug("metrics cache not written: %s", exc)
        return False


def _rebatch(batches: Iterable[Any], rows: int = _CACHE_BATCH) -> Iterator[Any]:
    """The same rows in batches of about `rows`: the parser hands out ~7,000-row batches (one per
    4 MB block), and a load adds a cached chunk batch by batch, at a cost per batch (a million
    rows in 143 batches load ~2x slower than in 16). Larger batches than 65,536 rows load no
    faster and raise a load's peak memory (~+30 MB at 131,072). One batch is copied at a time."""
    import pyarrow as pa

    group: list[Any] = []
    n = 0
    for b in batches:
        group.append(b)
        n += b.num_rows
        if n >= rows:
            yield group[0] if len(group) == 1 else pa.concat_batches(group)
            group, n = [], 0
    if group:
        yield group[0] if len(group) == 1 else pa.concat_batches(group)


def _merge(folder: Path, cover: list[tuple[int, int, int, Path]]) -> list[tuple[int, int, int, Path]]:
    """Join many small cached chunks of one log into one (streamed, batch by batch)."""
    start, end, bad = cover[0][0], cover[-1][1], sum(c[2] for c in cover)
    name = f"{start}-{end}-{bad}.arrow"
    if not _cache_write(folder, name, _rebatch(b for c in cover for b in ipc_batches(c[3]))):
        return cover
    for c in cover:
        c[3].unlink(missing_ok=True)
    return [(start, end, bad, folder / name)]


def _as_parsed(table: Any) -> tuple[Any, int] | None:
    """What parsing the JSON lines of `table` gives (schema(), rows without a timestamp dropped
    and counted), built from the table itself; None if a column's type would not survive the
    trip through JSON unchanged (the log is then left for a load to parse)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kinds = {"string": pa.types.is_string, "bool": pa.types.is_boolean, "int64": pa.types.is_integer,
             "float64": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
             "timestamp": pa.types.is_timestamp}
    target = schema()
    cols = []
    for (name, kind), field in zip(COLUMNS, target, strict=True):
        if name not in table.column_names:
            cols.append(pa.nulls(table.num_rows, field.type))
            continue
        col = _plain(table.column(name))
        if not kinds[kind](col.type) and not pa.types.is_null(col.type):
            return None
        cols.append((_finite(col) if pa.types.is_floating(col.type) else col).cast(field.type))
    parsed = pa.Table.from_arrays(cols, schema=target)
    missing = parsed["timestamp"].null_count
    if missing:
        parsed = parsed.filter(pc.is_valid(parsed["timestamp"]))
    return parsed, missing


def _cache_written(cache_root: Path, table: Any, fd: int, start: int, end: int) -> None:
    """Cache the rows of `table`, just written as bytes [start, end) of the log open on `fd`, if
    the cache already covers the log up to `start` (otherwise the next load parses from the gap)."""
    key = _cache_key_fd(fd)
    if key is None:
        return
    folder = cache_root / key
    cover = _chunks(folder)
    if (cover[-1][1] if cover else 0) != start:
        return
    parsed = _as_parsed(table)
    if parsed is not None:
        table, skipped = parsed
        _cache_write(folder, f"{start}-{end}-{skipped}.arrow", _rebatch(table.to_batches(max_chunksize=_CACHE_BATCH)))


def cache_tail(path: Path) -> None:
    """Parse and cache the uncached tail of the log at `path` (whole lines, at least _CACHE_MIN
    bytes), without building a frame; errors are logged, never raised (a background job)."""
    path = Path(path)
    try:
        with compaction_lock(path.parent, shared=True):
            _read_log(path, path.parent / ".cache", None)
    except (OSError, _Restart) as exc:
        log.debug("metrics tail not cached: %s", exc)
    except Exception:  # noqa: BLE001 - a speed-up that failed must not surface in a user's cell
        log.debug("metrics tail not cached", exc_info=True)


def _read_log(path: Path, cache_root: Path | None, out: FrameBuilder | None) -> tuple[int, int]:
    """Add the rows of one JSONL log to `out`, through its columnar cache; returns
    (corrupt lines skipped, torn last lines)."""
    key = _cache_key(path) if cache_root is not None else None
    folder = cache_root / key if cache_root is not None and key is not None else None
    skipped = at = 0
    cover = _chunks(folder) if folder is not None else []
    if folder is not None and len(cover) > _MAX_CHUNKS:
        cover = _merge(folder, cover)
    for _start, end, bad, chunk in cover:
        try:
            if out is not None:  # (None: only caching the tail)
                batches = list(ipc_batches(chunk)) if chunk.stat().st_size < _BLOCK else ipc_batches(chunk)
                for b in batches:
                    out.add(b)
        except (OSError, ValueError):  # pruned by another process mid-read: start the load again
            log.debug("metrics cache chunk %s vanished mid-load; loading again", chunk)
            raise _Restart from None
        skipped += bad
        at = end
    torn = 0
    # Parsed blocks wait here until they cover _CHUNK bytes, then become one cached chunk: small
    # blocks keep a first load's memory low without leaving a cache of many small files.
    pending: list[Any] = []
    chunk_start, chunk_bad = at, 0

    def flush() -> None:
        nonlocal chunk_start, chunk_bad
        if folder is not None and at - chunk_start >= _CACHE_MIN:
            _cache_write(folder, f"{chunk_start}-{at}-{chunk_bad}.arrow",
                         _rebatch(b for t in pending for b in t.to_batches(max_chunksize=_CACHE_BATCH)))
            chunk_start, chunk_bad = at, 0
            pending.clear()

    with open(path, "rb") as f:
        f.seek(at)
        while True:
            raw = f.read(_BLOCK)
            if not raw:
                break
            cut = raw.rfind(b"\n") + 1
            if cut == 0:  # no newline in a whole block: a torn last line, or one huge line
                more = f.read()
                if b"\n" not in more:
                    torn = 1
                    break
                raw, cut = raw + more, len(raw) + more.rfind(b"\n") + 1
            f.seek(at + cut)
            table, bad = _parse_jsonl(raw[:cut])
            del raw
            if out is not None:
                out.add_table(table)
            skipped += bad
            at += cut
            if folder is not None:
                pending.append(table)
                chunk_bad += bad
                if at - chunk_start >= _CHUNK:
                    flush()
            del table
    flush()
    return skipped, torn


class _Restart(Exception):
    """A cache file vanished mid-load (another process compacted): load again from scratch."""


def _prune_cache(cache_root: Path) -> None:
    """Drop the cache of logs that are gone (compacted by a rollup, or deleted by hand)."""
    if not cache_root.is_dir():
        return
    keep = set()
    for f in cache_root.parent.glob("*.jsonl"):
        with contextlib.suppress(OSError):
            keep.add(_cache_key(f))
    for entry in cache_root.iterdir():
        if entry.is_dir() and entry.name not in keep:
            shutil.rmtree(entry, ignore_errors=True)


# --------------------------------------------------------------------------- loading


def consumed_by(path: Path) -> set[str]:
    """Names (relative to the metrics folder) of the files a rollup file replaced."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"claudeforce.consumed")
    return set(json.loads(raw)) if raw else set()


def sources(directory: Path, stem: str = "executions") -> tuple[list[Path], list[Path]]:
    """(rollup files, JSONL logs) that currently hold the metrics of `directory`, leaving out
    files a rollup has already replaced (left behind if the process died before deleting them)."""
    folder = directory / "rollups"
    rollups = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    consumed: set[str] = set()
    for r in rollups:
        with contextlib.suppress(OSError, ValueError):
            consumed |= consumed_by(r)
    rollups = [r for r in rollups if f"rollups/{r.name}" not in consumed]
    logs = [p for p in sorted(directory.glob(f"{stem}*.jsonl")) if p.name not in consumed]
    return rollups, logs


_reported: set[tuple[str, int]] = set()


def load_metrics(path: Path, *, since: Any = None, agents: Sequence[str] | None = None,
                 cache: bool = True) -> pd.DataFrame:
    """All records of the log at `path`, its rotated siblings and the rollups beside it, as a
    DataFrame (only rows with timestamp >= `since` and agent in `agents`, when given).
    `cache=False` parses the logs without reading or writing the columnar cache."""
    return load_unlocked(path, since=since, agents=agents, cache=cache, lock=True)


def load_unlocked(path: Path, *, since: Any = None, agents: Sequence[str] | None = None, cache: bool = True,
                  lock: bool = False, files: tuple[list[Path], list[Path]] | None = None) -> pd.DataFrame:
    """`load_metrics` for a caller that already holds the compaction lock (a rollup); `files`:
    only these (rollup files, JSONL logs) instead of everything `sources()` finds."""
    path = Path(path)
    directory = path.parent
    for attempt in range(3):
        out = builder(since, agents)
        skipped = 0
        try:
            if directory.is_dir():
                skipped = _load_into(out, directory, path.stem, cache and attempt < 2, lock, files)
            break
        except _Restart:
            continue
    if skipped and (str(path), skipped) not in _reported:
        _reported.add((str(path), skipped))
        log.warning("Skipped %d torn or corrupt line(s) in %s (the rest loaded).", skipped, path)
    df = out.finish()
    df.attrs["skipped_lines"] = skipped
    return df


def _row_estimate(rollups: list[Path], logs: list[Path]) -> int:
    """An upper estimate of the rows to come (a log line is rarely under 300 bytes)."""
    import pyarrow.parquet as pq

    rows = 0
    for r in rollups:
        with contextlib.suppress(OSError, ValueError):
            rows += pq.read_metadata(r).num_rows
    for f in logs:
        with contextlib.suppress(OSError):
            rows += f.stat().st_size // 300 + 1
    return rows


def _load_into(out: FrameBuilder, directory: Path, stem: str, cache: bool, lock: bool,
               files: tuple[list[Path], list[Path]] | None) -> int:
    import pyarrow as pa

    cache_root = directory / ".cache" if cache else None
    skipped = 0
    with compaction_lock(directory, shared=True) if lock else contextlib.nullcontext():
        rollups, logs = files if files is not None else sources(directory, stem)
        out.reserve(_row_estimate(rollups, logs))
        for r in rollups:
            try:
                for b in parquet_batches(r):
                    out.add(b)
            except (OSError, pa.ArrowInvalid) as exc:
                log.warning("Could not read rollup %s (%s); its rows are missing from this load.", r, exc)
        for f in logs:
            try:
                bad, torn = _read_log(f, cache_root, out)
            except FileNotFoundError:
                continue
            skipped += bad + torn
        if cache_root is not None:
            _prune_cache(cache_root)
    return skipped
