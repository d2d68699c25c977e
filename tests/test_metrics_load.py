"""`cf.metrics()`: filters, dtypes, bad lines skipped and reported once, and loads that run while
another thread or process keeps appending."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from metrics_rows import iso, log_path, make_rows, write_rows

import claudeforce_nb as cf
from claudeforce_nb.errors import UsageError
from claudeforce_nb.store.metrics import CATEGORICAL, MetricsLog, load_metrics

NOW = datetime.now(timezone.utc)


def test_frame_has_tz_aware_timestamps_categoricals_and_numeric_types(home: Path) -> None:
    write_rows(home, make_rows(50, seed=1))
    df = cf.metrics()
    assert isinstance(df["timestamp"].dtype, pd.DatetimeTZDtype) and str(df["timestamp"].dt.tz) == "UTC"
    for column in ("agent_name", "model", "tier", "backend", "error_type"):
        assert isinstance(df[column].dtype, pd.CategoricalDtype), column
    assert set(CATEGORICAL) >= {"agent_name", "model"}
    assert df["success"].dtype == bool and df["cached"].dtype == bool
    for column in ("input_tokens", "output_tokens", "total_tokens", "attempts", "executions"):
        assert df[column].dtype == "int64", column
    assert df["estimated_cost"].dtype == "float64" and df["execution_time_ms"].dtype == "float64"
    assert (df["executions"] == 1).all() and not df["is_rollup"].any()
    df.loc[0, "input_tokens"] = -1  # the frame is the user's to change (not read-only Arrow memory)
    assert df.loc[0, "input_tokens"] == -1


def test_days_since_and_agents_filter_rows(home: Path) -> None:
    rows = make_rows(200, seed=2, start=NOW - timedelta(days=10), hours=10 * 24)
    write_rows(home, rows)

    def stamps(pred: object) -> list[str]:
        return sorted(r["task_hash"] for r in rows if pred(r))  # type: ignore[operator]

    def t(r: dict[str, object]) -> datetime:
        return datetime.fromisoformat(str(r["timestamp"]))

    assert len(cf.metrics()) == 200
    cut = NOW - timedelta(days=3)
    assert sorted(cf.metrics(days=3)["task_hash"]) == stamps(lambda r: t(r) >= cut)
    since = NOW - timedelta(days=5)
    assert sorted(cf.metrics(since=since)["task_hash"]) == stamps(lambda r: t(r) >= since)
    naive = since.replace(tzinfo=None)  # naive times are UTC
    assert sorted(cf.metrics(since=naive)["task_hash"]) == stamps(lambda r: t(r) >= since)
    day = (NOW - timedelta(days=4)).strftime("%Y-%m-%d")
    midnight = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
    assert sorted(cf.metrics(since=day)["task_hash"]) == stamps(lambda r: t(r) >= midnight)
    assert sorted(cf.metrics(agents="sql-expert")["task_hash"]) == stamps(lambda r: r["agent_name"] == "sql-expert")
    two = ["sql-expert", "data-analyst"]
    both = cf.metrics(days=3, agents=two)
    assert sorted(both["task_hash"]) == stamps(lambda r: r["agent_name"] in two and t(r) >= cut)
    assert set(both["agent_name"]) <= set(two)
    assert len(cf.metrics(agents=["nobody"])) == 0


def test_bad_filters_are_one_line_usage_errors(home: Path) -> None:
    with pytest.raises(UsageError, match="days must be a non-negative number"):
        cf.metrics(days=-1)
    with pytest.raises(UsageError, match="not a date or time"):
        cf.metrics(since="last tuesday-ish")


def test_torn_last_line_and_corrupt_lines_are_skipped_counted_and_reported_once(
        home: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = make_rows(20, seed=3)
    path = write_rows(home, rows[:10])
    with path.open("ab") as f:
        f.write(b"{\"timestamp\": \"2026-01-01T00:00:00+00:00\", \"agent_na\n")  # cut mid-record
        f.write(b"[1, 2, 3]\n")  # valid JSON, not a record
        f.write(b"\xff\xfe not json at all\n")
    write_rows(home, rows[10:])
    with path.open("ab") as f:
        f.write(b"{\"timestamp\": \"2026-01-0")  # a writer killed mid-line: the torn last line
    with caplog.at_level(logging.WARNING, logger="claudeforce_nb.metrics"):
        first = cf.metrics()
        second = cf.metrics()
    assert list(first["task_hash"]) == [r["task_hash"] for r in rows]
    assert first.attrs["skipped_lines"] == 4 and second.attrs["skipped_lines"] == 4
    warnings = [r.getMessage() for r in caplog.records if "Skipped" in r.getMessage()]
    assert len(warnings) == 1 and "Skipped 4" in warnings[0]
    # the next append ends the torn line first, so nothing new is lost
    write_rows(home, make_rows(1, seed=4))
    assert len(cf.metrics()) == 21


def test_a_log_of_only_garbage_loads_empty_without_raising(home: Path) -> None:
    path = log_path(home)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"null\n\x00\x00\n{}\n{\"timestamp\": 5}\n")
    df = cf.metrics()
    assert len(df) == 0 and df.attrs["skipped_lines"] == 4


def test_cached_load_equals_an_uncached_parse_after_more_appends(home: Path) -> None:
    cf.demo.synthetic_metrics(9000, seed=5, write=True)  # > 4 MB: the loader caches it in columns
    first = cf.metrics()
    assert (log_path(home).parent / ".cache").is_dir()
    write_rows(home, make_rows(30, seed=6))
    cached = cf.metrics()
    fresh = load_metrics(log_path(home), cache=False)
    assert len(first) == 9000 and len(cached) == 9030
    pd.testing.assert_frame_equal(cached, fresh)


def _is_prefix(loaded: list[str], written: list[str]) -> bool:
    return loaded == written[:len(loaded)]


LOADS = 20  # loads made while the writer keeps appending
AHEAD = 40  # appends the writer may make per load: it never finishes before the loads do


def test_loading_while_a_thread_appends_sees_whole_records_in_order(home: Path) -> None:
    cf.demo.synthetic_metrics(9000, seed=7, write=True)  # > 4 MB: loads go through the columnar cache
    base = list(cf.metrics()["task_hash"])
    rows = make_rows(5 * AHEAD * (LOADS + 2), seed=8)
    log = MetricsLog(log_path(home))
    stop = threading.Event()
    appended = [0]
    seen: list[int] = []

    def writer() -> None:
        for n, i in enumerate(range(0, len(rows), 5)):
            while n > AHEAD * (len(seen) + 1) and not stop.is_set():
                time.sleep(0.001)
            if stop.is_set():
                break
            log.append_many(rows[i:i + 5])
            appended[0] = i + 5

    thread = threading.Thread(target=writer)
    thread.start()
    written = base + [r["task_hash"] for r in rows]
    try:
        while len(seen) < LOADS:
            df = cf.metrics()
            hashes = list(df["task_hash"])
            assert _is_prefix(hashes, written)  # whole records, none lost or reordered
            assert df.attrs["skipped_lines"] <= 1  # at most the line being written right now
            seen.append(len(hashes))
    finally:
        stop.set()
        thread.join()
    assert seen == sorted(seen) and len(set(seen)) > 1
    final = cf.metrics()
    assert list(final["task_hash"]) == written[:len(base) + appended[0]] and final.attrs["skipped_lines"] == 0


WRITER = """
import os, sys, time
from metrics_rows import make_rows, write_rows
home, go, stop, progress, ahead = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
rows = make_rows(20000, seed=9)
open(go, "w").close()

def loads():
    try:
        with open(progress) as f:
            return int(f.read() or 0)
    except (OSError, ValueError):
        return 0

for n, i in enumerate(range(0, len(rows), 10)):
    while n > ahead * (loads() + 1) and not os.path.exists(stop):
        time.sleep(0.001)
    if os.path.exists(stop):
        break
    write_rows(home, rows[i:i + 10])
"""


def test_loading_while_another_process_appends_never_raises(home: Path, tmp_path: Path) -> None:
    write_rows(home, make_rows(100, seed=10))
    go, stop, progress = tmp_path / "started", tmp_path / "stop", tmp_path / "loads"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(home), str(go), str(stop), str(progress),
                             str(AHEAD)], env=env)
    written = [r["task_hash"] for r in make_rows(100, seed=10) + make_rows(20000, seed=9)]
    seen = []
    try:
        deadline = time.monotonic() + 60
        while not go.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        while len(seen) < LOADS and proc.poll() is None:
            df = cf.metrics()
            hashes = list(df["task_hash"])
            assert _is_prefix(hashes, written)
            assert df.attrs["skipped_lines"] <= 1
            seen.append(len(hashes))
            progress.write_text(str(len(seen)))
    finally:
        stop.touch()
        assert proc.wait(timeout=60) == 0
    assert len(seen) == LOADS  # the writer was still appending when the last load ran
    assert seen == sorted(seen) and len(set(seen)) > 1
    final = list(cf.metrics()["task_hash"])
    assert final == written[:len(final)] and len(final) > 100


def test_timestamps_with_offsets_are_converted_to_utc(home: Path) -> None:
    row = make_rows(1, seed=11)[0]
    local = datetime(2026, 2, 1, 12, 0, tzinfo=timezone(timedelta(hours=5)))
    write_rows(home, [dict(row, timestamp=local.isoformat()), dict(row, timestamp=iso(local))])
    df = cf.metrics()
    assert list(df["timestamp"]) == [pd.Timestamp("2026-02-01 07:00", tz="UTC")] * 2


def test_long_logs_parse_in_blocks_cache_in_chunks_and_merge_them(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the sizes of a million-row log, scaled down: blocks grouped into cached chunks, an uncached
    # short tail, a line longer than a block next to a bad one, and a merge once there are too many chunks
    from claudeforce_nb.store import metrics

    monkeypatch.setattr(metrics, "_BLOCK", 32 << 10)
    monkeypatch.setattr(metrics, "_CHUNK", 64 << 10)
    monkeypatch.setattr(metrics, "_PARSE_BLOCK", 8 << 10)  # pyarrow's blocks: smaller than some lines
    monkeypatch.setattr(metrics, "_CACHE_MIN", 8 << 10)
    monkeypatch.setattr(metrics, "_MAX_CHUNKS", 3)
    path = log_path(home)
    cache = path.parent / ".cache"
    counts: list[int] = []
    for seed in range(6):
        write_rows(home, make_rows(150, seed=100 + seed))  # ~80 KB: several blocks per load
        if seed == 3:
            write_rows(home, make_rows(1, seed=99, error_type="x" * (100 << 10)))  # one line longer than a block
            write_rows(home, make_rows(1, seed=98, input_tokens="many"))  # and a bad one beside it
        df = cf.metrics()
        pd.testing.assert_frame_equal(df, load_metrics(path, cache=False))
        chunks = list(cache.glob("*/*.arrow"))
        counts.append(len(chunks))
        assert 0 < len(chunks) <= 3 + 3  # at most one merged chunk, the unmerged ones and this load's new ones
    assert any(b < a for a, b in zip(counts, counts[1:], strict=False))  # a merge shrank the cache
    assert len(df) == 6 * 150 + 1 and df.attrs["skipped_lines"] == 1
    assert df["error_type"].astype(str).str.len().max() == 100 << 10


# -- the cache kept in step with writes ------------------------------------------------------


def _cover(path: Path) -> list[tuple[int, int, int, Path]]:
    from claudeforce_nb.store import metrics

    key = metrics._cache_key(path)
    assert key is not None
    return metrics._chunks(path.parent / ".cache" / key)


def _no_parsing(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the bytes the loader parses from here on."""
    from claudeforce_nb.store import metrics

    parsed: list[int] = []
    real = metrics._parse_jsonl

    def counting(raw: bytes) -> tuple[object, int]:
        parsed.append(len(raw))
        return real(raw)

    monkeypatch.setattr(metrics, "_parse_jsonl", counting)
    return parsed


def test_bulk_appends_are_cached_as_written_so_the_first_load_parses_nothing(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from claudeforce_nb.store import metrics

    monkeypatch.setattr(metrics, "_CACHE_MIN", 1 << 30)  # the loader itself would cache nothing
    table = cf.demo.synthetic_metrics(2500, seed=8)
    table.loc[3, "execution_time_ms"] = float("nan")  # written as null: the cache must agree
    table.loc[5, "timestamp"] = pd.NaT  # a line without a timestamp: skipped and counted
    MetricsLog(log_path(home)).append_table(table)
    cover = _cover(log_path(home))
    assert cover and cover[0][0] == 0 and cover[-1][1] == log_path(home).stat().st_size
    parsed_by_hand = load_metrics(log_path(home), cache=False)
    parsed = _no_parsing(monkeypatch)
    df = cf.metrics()
    assert parsed == []  # every row came from the cache written with them
    pd.testing.assert_frame_equal(df, parsed_by_hand)
    assert len(df) == 2499 and df.attrs["skipped_lines"] == 1


def test_bulk_append_after_uncached_rows_or_a_torn_line_leaves_them_to_the_loader(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from claudeforce_nb.store import metrics

    monkeypatch.setattr(metrics, "_CACHE_MIN", 1 << 30)
    write_rows(home, make_rows(20, seed=1))  # not cached: a bulk chunk after it would leave a gap
    MetricsLog(log_path(home)).append_table(cf.demo.synthetic_metrics(300, seed=2))
    assert _cover(log_path(home)) == []
    with open(log_path(home), "ab") as f:
        f.write(b'{"timestamp": "2026-11-2')  # a writer died mid-line
    MetricsLog(log_path(home)).append_table(cf.demo.synthetic_metrics(300, seed=3))
    assert _cover(log_path(home)) == []
    df = cf.metrics()
    pd.testing.assert_frame_equal(df, load_metrics(log_path(home), cache=False))
    assert len(df) == 620 and df.attrs["skipped_lines"] == 1


def test_a_tail_still_being_cached_is_not_cached_twice_at_once(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from claudeforce_nb.store import metrics

    monkeypatch.setattr(metrics, "_CACHE_BEHIND", 16 << 10)
    gate = threading.Event()
    runs: list[Path] = []
    monkeypatch.setattr(metrics, "cache_tail", lambda path: (runs.append(path), gate.wait(30)))
    log = MetricsLog(log_path(home))
    for row in make_rows(200, seed=2):  # ~100 KB: six crossings while the first caching still runs
        log.append(row)
    gate.set()
    assert log.caching is not None
    log.caching.join(timeout=30)
    assert len(runs) == 1


def test_cached_chunks_hold_few_large_batches(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.ipc as ipc

    from claudeforce_nb.store import metrics

    monkeypatch.setattr(metrics, "_PARSE_BLOCK", 64 << 10)  # the parser's output: many small batches
    monkeypatch.setattr(metrics, "_CACHE_MIN", 64 << 10)
    write_rows(home, make_rows(3000, seed=9))
    df = cf.metrics()
    (chunk,) = [c[3] for c in _cover(log_path(home))]
    with ipc.open_file(chunk) as reader:
        assert reader.num_record_batches == 1 and reader.get_batch(0).num_rows == 3000
    pd.testing.assert_frame_equal(df, cf.metrics())


def test_a_column_that_would_not_survive_json_is_not_cached_from_the_table(home: Path) -> None:
    table = cf.demo.synthetic_metrics(200, seed=4)
    table["input_tokens"] = "many"  # text where the log has integers: the loader skips these lines
    MetricsLog(log_path(home)).append_table(table)
    assert _cover(log_path(home)) == []
    df = cf.metrics()
    assert len(df) == 0 and df.attrs["skipped_lines"] == 200


def test_row_by_row_writers_keep_the_cache_close_behind_the_end_of_the_log(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from claudeforce_nb.store import metrics

    monkeypatch.setattr(metrics, "_CACHE_BEHIND", 48 << 10)
    monkeypatch.setattr(metrics, "_CACHE_MIN", 8 << 10)
    log = MetricsLog(log_path(home))
    started: list[threading.Thread] = []
    for seed in range(12):  # ~6 KB a write, as many processes' calls would add it
        for row in make_rows(12, seed=seed):
            log.append(row)
            if log.caching is not None and (not started or started[-1] is not log.caching):
                started.append(log.caching)
                log.caching.join(timeout=30)  # (calls come slower than a tail is cached)
    size = log_path(home).stat().st_size
    assert len(started) == size // (48 << 10) >= 1  # one background caching per 48 KB crossed
    covered = _cover(log_path(home))[-1][1]
    assert covered >= (size // (48 << 10)) * (48 << 10) - (8 << 10)
    parsed = _no_parsing(monkeypatch)
    df = cf.metrics()
    assert sum(parsed) == size - covered < 48 << 10  # only the tail since the last crossing
    monkeypatch.undo()
    pd.testing.assert_frame_equal(df, load_metrics(log_path(home), cache=False))
    assert len(df) == 12 * 12
