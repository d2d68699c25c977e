"""Columnar plumbing for the metrics store: Arrow record batches in, one pandas DataFrame out, with
bounded memory; and the Arrow IPC files of the load cache.

Why not `pa.concat_tables(...).to_pandas()`: that holds every Arrow buffer *and* the pandas copy
at once (about 550 MB peak for a million rows), and zero-copy conversion would hand users
read-only arrays. `FrameBuilder` copies each batch into small owned numpy pieces as it arrives
(the batch is freed straight away), then joins the pieces one column at a time, so the peak is
about the final frame plus one column (about 300 MB for a million rows, interpreter included).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FrameBuilder", "ipc_batches", "parquet_batches", "write_ipc", "write_parquet"]

BATCH_ROWS = 131_072


def _atomic(target: Path) -> Path:
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")


def write_ipc(batches: Any, schema: Any, target: Path) -> None:
    """Write record batches to an Arrow IPC file (LZ4), atomically: readers never see half a file."""
    import pyarrow as pa

    tmp = _atomic(target)
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema, options=options) as writer:
            for b in batches:
                writer.write_batch(b)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_parquet(table: Any, target: Path, metadata: dict[str, str] | None = None) -> None:
    """Write a Parquet file atomically, with optional key/value metadata."""
    import pyarrow.parquet as pq

    if metadata:
        meta = dict(table.schema.metadata or {})
        meta.update({k.encode(): v.encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(meta)
    tmp = _atomic(target)
    try:
        pq.write_table(table, tmp, compression="zstd", row_group_size=BATCH_ROWS)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def ipc_batches(path: Path) -> Iterator[Any]:
    """The record batches of an IPC file, read one at a time (not memory-mapped: mapped pages
    would all count as resident)."""
    import pyarrow as pa

    with pa.OSFile(str(path), "rb") as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def parquet_batches(path: Path) -> Iterator[Any]:
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as f:
        yield from f.iter_batches(batch_size=BATCH_ROWS, use_threads=False)


class _Buffer:
    """A growable numpy column. `np.empty` pages are only made resident when written, so a
    generous capacity costs address space, not memory; growth doubles (rare with a good hint)."""

    def __init__(self, dtype: Any, capacity: int) -> None:
        import numpy as np

        self.data = np.empty(max(capacity, 1024), dtype=dtype)
        self.size = 0

    def extend(self, values: Any) -> None:
        import numpy as np

        end = self.size + len(values)
        if end > len(self.data):
            grown = np.empty(max(end, 2 * len(self.data)), dtype=self.data.dtype)
            grown[:self.size] = self.data[:self.size]
            self.data = grown
        self.data[self.size:end] = values
        self.size = end

    def array(self) -> Any:
        return self.data[:self.size]


class FrameBuilder:
    """Collects record batches of the metrics schema (any subset of its columns, any string
    flavour) and builds the DataFrame. `since` / `agents` filter rows on the way in;
    `capacity` is a hint of the number of rows to come (an overestimate is cheap)."""

    def __init__(self, schema: Any, categorical: Sequence[str], *, defaults: dict[str, Any] | None = None,
                 since: Any = None, agents: Sequence[str] | None = None, capacity: int = 0) -> None:
        self.schema = schema
        self.categorical = set(categorical)
        self.defaults = defaults or {}
        self.since = since
        self.agents = list(agents) if agents is not None else None
        self.capacity = capacity
        self.buffers: dict[str, _Buffer] = {}
        self.strings: dict[str, list[Any]] = {}
        self.codes: dict[str, dict[str, int]] = {name: {} for name in self.categorical}
        self.rows = 0

    def reserve(self, rows: int) -> None:
        """Raise the capacity hint before the first batch."""
        self.capacity = max(self.capacity, rows)

    def add_table(self, table: Any) -> None:
        for batch in table.to_batches(max_chunksize=BATCH_ROWS):
            self.add(batch)

    def add(self, batch: Any) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        batch = self._filter(batch)
        n = batch.num_rows
        if n == 0:
            return
        names = set(batch.schema.names)
        for f in self.schema:
            t = f.type
            if f.name not in names and f.name in self.defaults:
                self._buffer(f.name, t.to_pandas_dtype()).extend(_full(n, self.defaults[f.name]))
                continue
            col = batch.column(f.name) if f.name in names else pa.nulls(n, t)
            if f.name in self.categorical:
                self._buffer(f.name, "int32").extend(self._codes(f.name, col, pa, pc))
            elif pa.types.is_string(t) or pa.types.is_large_string(t):
                if not pa.types.is_string(col.type):
                    col = col.cast(pa.string())
                # the cast copies, so the batch can be freed; pandas' str dtype is large_string
                self.strings.setdefault(f.name, []).append(col.cast(pa.large_string()))
            elif pa.types.is_timestamp(t):
                us = col.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
                self._buffer(f.name, "int64").extend(us.to_numpy(zero_copy_only=False))
            else:
                if col.type != t:
                    col = col.cast(t)
                if pa.types.is_integer(t) or pa.types.is_boolean(t):
                    col = pc.fill_null(col, 0 if pa.types.is_integer(t) else False)
                self._buffer(f.name, t.to_pandas_dtype()).extend(col.to_numpy(zero_copy_only=False))
        self.rows += n

    def _buffer(self, name: str, dtype: Any) -> _Buffer:
        buf = self.buffers.get(name)
        if buf is None:
            buf = self.buffers[name] = _Buffer(dtype, self.capacity)
        return buf

    def _filter(self, batch: Any) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        mask = None
        if self.since is not None and "timestamp" in batch.schema.names:
            ts = batch.column("timestamp")
            mask = pc.greater_equal(ts, pa.scalar(self.since, ts.type))
        if self.agents is not None and "agent_name" in batch.schema.names:
            names = batch.column("agent_name")
            if pa.types.is_dictionary(names.type):
                names = names.cast(pa.string())
            hit = pc.is_in(names.cast(pa.string()), value_set=pa.array(self.agents, pa.string()))
            mask = hit if mask is None else pc.and_(mask, hit)
        return batch if mask is None else batch.filter(pc.fill_null(mask, False))

    def _codes(self, name: str, col: Any, pa: Any, pc: Any) -> Any:
        import numpy as np

        if not pa.types.is_dictionary(col.type):
            col = pc.dictionary_encode(col.cast(pa.string()))
        known = self.codes[name]
        values = col.dictionary.cast(pa.string()).to_pylist()
        lut = np.array([known.setdefault(v, len(known)) for v in values] + [-1], dtype=np.int32)
        idx = pc.fill_null(col.indices.cast(pa.int32()), len(values)).to_numpy(zero_copy_only=False)
        return lut[idx]

    def finish(self) -> pd.DataFrame:
        import numpy as np
        import pandas as pd
        import pyarrow as pa

        out: dict[str, Any] = {}
        for f in self.schema:
            t = f.type
            if f.name in self.categorical:
                codes = self.buffers.pop(f.name).array() if self.rows else np.array([], dtype=np.int32)
                categories = pd.Index(list(self.codes[f.name]), dtype="str")
                out[f.name] = pd.Categorical.from_codes(codes, categories=categories)
            elif pa.types.is_string(t) or pa.types.is_large_string(t):
                chunks = self.strings.pop(f.name, [])
                out[f.name] = pd.array(pa.chunked_array(chunks, pa.large_string()) if chunks else [], dtype="str")
            elif pa.types.is_timestamp(t):
                us = self.buffers.pop(f.name).array() if self.rows else np.array([], dtype=np.int64)
                out[f.name] = pd.DatetimeIndex(us.view("M8[us]")).tz_localize("UTC").array
            else:
                out[f.name] = self.buffers.pop(f.name).array() if self.rows \
                    else np.array([], dtype=t.to_pandas_dtype())
        return pd.DataFrame(out, copy=False)


def _full(n: int, value: Any) -> Any:
    import numpy as np

    return np.full(n, value)
