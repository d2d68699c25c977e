"""The metrics log: one JSON line per logical call, appended to
`$CLAUDEFORCE_HOME/metrics/executions.jsonl`, and loaded back as a pandas DataFrame.

Each record is written with a single `write()` on an O_APPEND descriptor while holding an
exclusive `flock`, so concurrent processes never interleave or lose lines. Loading skips torn or
corrupt lines, counts them and reports them once; it never raises for bad content.
"""

from __future__ import annotations

import io
import json
import logging
import os
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "MetricsLog", "SESSION_ID", "load_metrics", "metrics_dir", "now_iso"]

log = logging.getLogger("claudeforce_nb.metrics")
SESSION_ID = uuid.uuid4().hex[:12]

# (name, pyarrow type name) in the order of the DESIGN schema.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("timestamp", "string"),
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


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def metrics_dir(home: Path) -> Path:
    return Path(home) / "metrics"


class MetricsLog:
    """Append-only JSONL log at `path` (handed in; the log never locates itself)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, record: Mapping[str, Any]) -> None:
        data = (json.dumps(record, separators=(",", ":"), default=str, ensure_ascii=False) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            _lock(fd)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        finally:
            os.close(fd)  # closing releases the lock

    def append_many(self, records: Iterable[Mapping[str, Any]]) -> None:
        for r in records:
            self.append(r)


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: appends of one small write are atomic enough on NTFS
        return
    fcntl.flock(fd, fcntl.LOCK_EX)


def _schema() -> Any:
    import pyarrow as pa

    types = {"string": pa.string(), "bool": pa.bool_(), "float64": pa.float64(), "int64": pa.int64()}
    return pa.schema([(name, types[t]) for name, t in COLUMNS])


def _parse_jsonl(raw: bytes) -> tuple[Any, int]:
    """(pyarrow Table, number of skipped lines). Fast path: pyarrow parses the whole buffer; on a
    bad line, fall back to checking each line and parsing only the good ones."""
    import pyarrow as pa
    import pyarrow.json as pj

    skipped = 0
    if raw and not raw.endswith(b"\n"):  # a torn last line (writer killed or still writing)
        cut = raw.rfind(b"\n") + 1
        raw, skipped = raw[:cut], 1
    if not raw.strip():
        return _schema().empty_table(), skipped
    opts = pj.ParseOptions(explicit_schema=_schema(), unexpected_field_behavior="ignore")
    ropts = pj.ReadOptions(block_size=1 << 24)
    try:
        return pj.read_json(io.BytesIO(raw), read_options=ropts, parse_options=opts), skipped
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
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
        return _schema().empty_table(), skipped
    try:
        table = pj.read_json(io.BytesIO(b"\n".join(good) + b"\n"), read_options=ropts, parse_options=opts)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a value of the wrong type: go row by row
        rows, bad = [], 0
        for g in good:
            try:
                rows.append(pj.read_json(io.BytesIO(g), parse_options=opts))
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                bad += 1
        skipped += bad
        table = pa.concat_tables(rows) if rows else _schema().empty_table()
    return table, skipped


def to_frame(table: Any) -> pd.DataFrame:
    import pandas as pd

    df = table.to_pandas()
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True, format="ISO8601")
    for col in ("agent_name", "model", "tier", "backend", "error_type"):
        df[col] = df[col].astype("category")
    return df


_reported: set[tuple[str, int]] = set()


def load_metrics(path: Path) -> pd.DataFrame:
    """All records of the log at `path` (and its rotated siblings) as a DataFrame."""
    import pyarrow as pa

    path = Path(path)
    files = sorted(path.parent.glob(path.stem + "*.jsonl")) if path.parent.is_dir() else []
    tables, skipped = [], 0
    for f in files:
        try:
            raw = f.read_bytes()
        except OSError:
            continue
        table, bad = _parse_jsonl(raw)
        tables.append(table)
        skipped += bad
    table = pa.concat_tables(tables) if tables else _schema().empty_table()
    if skipped and (str(path), skipped) not in _reported:
        _reported.add((str(path), skipped))
        log.warning("Skipped %d torn or corrupt line(s) in %s (the rest loaded).", skipped, path)
    df = to_frame(table)
    df.attrs["skipped_lines"] = skipped
    return df
