"""The JSONL metrics log: concurrent processes never interleave or lose lines; loading skips torn
and corrupt lines, counts them and keeps the rest."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from claudeforce_nb.store.metrics import COLUMNS, MetricsLog, load_metrics, now_iso

WRITER = """
import sys
from claudeforce_nb.store.metrics import MetricsLog, now_iso
path, proc, n, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
import os, time
while not os.path.exists(go):  # start together, so the appends really race
    time.sleep(0.001)
log = MetricsLog(path)
for i in range(n):
    # sizes from small to well past PIPE_BUF (4096), where unlocked appends could tear
    log.append({"timestamp": now_iso(), "agent_name": f"proc-{proc}", "task_hash": f"{proc}-{i}",
                "success": True, "input_tokens": i, "padding": "x" * (97 * i % 9000)})
"""


def record(i: int, **extra: Any) -> dict[str, Any]:
    return {"timestamp": now_iso(), "agent_name": "python-expert", "task_hash": f"h{i}", "success": True,
            "execution_time_ms": 12.5, "model": "claude-haiku-5-5", "input_tokens": 10 + i, "output_tokens": 5,
            "estimated_cost": 0.001, "cached": False, "attempts": 1, **extra}


def test_four_processes_appending_250_records_each_leave_exactly_1000_intact_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics" / "executions.jsonl"
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(p), "250", str(go)])
             for p in range(4)]
    go.touch()
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    lines = raw.decode().splitlines()
    assert len(lines) == 1000
    parsed = [json.loads(line) for line in lines]  # every line is one whole record
    assert {r["task_hash"] for r in parsed} == {f"{p}-{i}" for p in range(4) for i in range(250)}
    assert all(len(r["padding"]) == 97 * int(r["task_hash"].split("-")[1]) % 9000 for r in parsed)
    df = load_metrics(path)
    assert len(df) == 1000 and df.attrs["skipped_lines"] == 0


def test_append_writes_one_compact_line_per_record(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "m" / "executions.jsonl")
    log.append(record(1))
    log.append_many([record(2), record(3)])
    lines = log.path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["task_hash"] for line in lines] == ["h1", "h2", "h3"]
    assert all(": " not in line for line in lines)


def test_log_file_is_private_to_the_user(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "executions.jsonl")
    log.append(record(1))
    assert log.path.stat().st_mode & 0o077 == 0


def test_loaded_frame_has_the_schema_columns_and_types(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "executions.jsonl")
    for i in range(3):
        log.append(record(i))
    df = load_metrics(log.path)
    assert {name for name, _ in COLUMNS} <= set(df.columns)
    assert str(df["timestamp"].dt.tz) == "UTC"
    assert df["input_tokens"].tolist() == [10, 11, 12]
    assert df["success"].dtype == bool
    assert df.attrs["skipped_lines"] == 0


def test_torn_last_line_is_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = MetricsLog(tmp_path / "executions.jsonl")
    log.append(record(1))
    log.append(record(2))
    with log.path.open("ab") as f:
        f.write(json.dumps(record(3)).encode()[:40])  # a writer killed mid-line
    with caplog.at_level(logging.WARNING, logger="claudeforce_nb.metrics"):
        df = load_metrics(log.path)
    assert df["task_hash"].tolist() == ["h1", "h2"]
    assert df.attrs["skipped_lines"] == 1
    assert len([r for r in caplog.records if "Skipped 1" in r.getMessage()]) == 1


def test_corrupt_middle_line_is_skipped_and_the_rest_loaded(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "executions.jsonl")
    log.append(record(1))
    with log.path.open("ab") as f:
        f.write(b'{"timestamp": "2026-01-01T00:00:00+00:00", "agent_na\n')
        f.write(b"\x00\x00\x00 binary junk\n")
    log.append(record(2))
    df = load_metrics(log.path)
    assert df["task_hash"].tolist() == ["h1", "h2"]
    assert df.attrs["skipped_lines"] == 2


def test_line_with_a_wrongly_typed_value_is_skipped(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "executions.jsonl")
    log.append(record(1))
    log.append(record(2, input_tokens="many"))
    log.append(record(3))
    df = load_metrics(log.path)
    assert df["task_hash"].tolist() == ["h1", "h3"]
    assert df.attrs["skipped_lines"] == 1


def test_unknown_fields_are_ignored_and_missing_ones_are_null(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "executions.jsonl")
    log.append({"timestamp": now_iso(), "agent_name": "a", "from_the_future": [1, 2]})
    df = load_metrics(log.path)
    assert len(df) == 1 and df["model"].isna().all()
    assert "from_the_future" not in df.columns


def test_missing_log_loads_as_an_empty_frame(tmp_path: Path) -> None:
    df = load_metrics(tmp_path / "nothing" / "executions.jsonl")
    assert len(df) == 0 and {name for name, _ in COLUMNS} <= set(df.columns)
    assert df.attrs["skipped_lines"] == 0


def test_append_after_a_torn_line_starts_a_new_line(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "executions.jsonl")
    log.append(record(1))
    with log.path.open("ab") as f:
        f.write(json.dumps(record(2)).encode()[:30])  # a writer killed mid-line
    log.append(record(3))
    df = load_metrics(log.path)
    assert df["task_hash"].tolist() == ["h1", "h3"]
    assert df.attrs["skipped_lines"] == 1


def test_first_append_creates_the_folders(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "a" / "b" / "executions.jsonl")
    log.append(record(1))
    assert len(log.path.read_text(encoding="utf-8").splitlines()) == 1
