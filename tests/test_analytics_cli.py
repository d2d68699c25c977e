"""`python -m claudeforce_nb analytics summary|by-agent|costs|trends|export|rollup`: plain tables
with the same numbers as `cf.analytics`, and one line for a bad argument."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from metrics_rows import make_rows, write_rows

from claudeforce_nb.analytics.cli import analytics_main

NOW = datetime.now(timezone.utc)


@pytest.fixture
def rows(home: Path) -> list[dict[str, Any]]:
    old = make_rows(100, seed=41, start=NOW - timedelta(days=20), hours=24)  # 20 days ago
    recent = make_rows(150, seed=42, start=NOW - timedelta(hours=30), hours=29)  # the last 30 hours
    write_rows(home, old + recent)
    return old + recent


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = analytics_main(list(argv))
    except SystemExit as exc:  # argparse's exit for a bad argument
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def recent(rows: list[dict[str, Any]], days: float) -> list[dict[str, Any]]:
    cut = NOW - timedelta(days=days)
    return [r for r in rows if datetime.fromisoformat(r["timestamp"]) >= cut]


def test_summary_prints_the_headline_numbers(rows: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "summary")
    assert code == 0 and err == ""
    ok = sum(r["success"] for r in rows)
    assert "Performance Summary (all recorded calls)" in out
    assert f"Total executions:   {len(rows):,}" in out
    assert f"({ok:,} / {len(rows):,})" in out
    assert f"${sum(r['estimated_cost'] for r in rows):,.4f} USD" in out
    assert "Top agents by usage:" in out and "Model distribution:" in out
    code, out, _ = run(capsys, "summary", "--days", "2")
    assert code == 0 and "(last 2 days)" in out and f"Total executions:   {len(recent(rows, 2)):,}" in out


def test_summary_of_no_calls_says_so(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "summary")
    assert code == 0 and "No calls recorded yet." in out


def test_by_agent_prints_one_row_per_agent(rows: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "by-agent", "--days", "2")
    assert code == 0
    counts = Counter(r["agent_name"] for r in recent(rows, 2))
    title, blank, header, index_name, *table = out.splitlines()
    assert "last 2 days" in title and blank == "" and index_name.strip() == "agent_name"
    assert header.split()[:2] == ["executions", "share"]
    lines = {line.split()[0]: line.split() for line in table}
    assert {a: int(v[1].replace(",", "")) for a, v in lines.items()} == counts
    assert "p95_latency_ms" in header


def test_costs_by_agent_model_and_by_model(rows: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "costs")
    assert code == 0 and f"total ${sum(r['estimated_cost'] for r in rows):,.4f} USD" in out
    assert "agent_name" in out and "model" in out
    code, out, _ = run(capsys, "costs", "--by", "model", "--agent", "sql-expert")
    sql = [r for r in rows if r["agent_name"] == "sql-expert"]
    assert code == 0 and f"total ${sum(r['estimated_cost'] for r in sql):,.4f} USD" in out
    for model, n in Counter(r["model"] for r in sql).items():
        line = next(line for line in out.splitlines() if line.startswith(model))
        assert int(line.split()[1]) == n


def test_negative_amounts_read_minus_dollars(rows: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    # opus calls cost more than the same tokens on the baseline model: a negative saving
    code, out, _ = run(capsys, "costs", "--by", "model")
    opus = next(line for line in out.splitlines() if line.startswith("claude-opus"))
    assert code == 0 and re.search(r" -\$\d", opus) and "$-" not in out


@pytest.mark.parametrize(("interval", "fmt"), [("hourly", "%Y-%m-%d %H:00"), ("daily", "%Y-%m-%d")])
def test_trends_print_a_row_per_period(rows: list[dict[str, Any]], capsys: pytest.CaptureFixture[str],
                                       interval: str, fmt: str) -> None:
    code, out, _ = run(capsys, "trends", "--interval", interval, "--days", "1")
    assert code == 0 and f"Trends, {interval} (last 1 days; times UTC)" in out
    expected = Counter(datetime.fromisoformat(r["timestamp"]).strftime(fmt) for r in recent(rows, 1))
    width = len(datetime(2026, 1, 1).strftime(fmt))
    got = {line[:width]: int(line[width:].split()[0].replace(",", "")) for line in out.splitlines()
           if line[:4].isdigit()}
    assert {k: v for k, v in got.items() if v} == expected


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_export_writes_the_rows(rows: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                fmt: str) -> None:
    target = tmp_path / f"out.{fmt}"
    code, out, _ = run(capsys, "export", "--format", fmt, "--output", str(target), "--days", "2")
    assert code == 0 and f"Wrote {len(recent(rows, 2)):,} rows" in out
    back = {"csv": pd.read_csv, "parquet": pd.read_parquet,
            "json": lambda p: pd.read_json(p, lines=True)}[fmt](target)
    assert sorted(back["task_hash"]) == sorted(r["task_hash"] for r in recent(rows, 2))


def test_export_defaults_to_csv_in_the_working_directory(rows: list[dict[str, Any]],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, "export")
    assert code == 0 and len(pd.read_csv(Path.cwd() / "metrics-export.csv")) == len(rows)


def test_rollup_verb_keeps_the_totals(rows: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "rollup", "--older-than", "7")
    assert code == 0 and "Rolled up 100 call(s)" in out
    code, out, _ = run(capsys, "summary")
    assert f"Total executions:   {len(rows):,}" in out


@pytest.mark.parametrize("argv", [
    ("summary", "--days", "abc"),
    ("summary", "--days", "-3"),
    ("trends", "--interval", "monthly"),
    ("export", "--format", "xml"),
    ("costs", "--by", "colour"),
    ("by-agent", "--verbose"),
    ("bogus",),
    (),
])
def test_a_bad_argument_is_one_line_and_exit_2(home: Path, capsys: pytest.CaptureFixture[str],
                                               argv: tuple[str, ...]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "error" in err
    assert "Traceback" not in err


def test_the_module_entry_point_prints_plain_text(rows: list[dict[str, Any]], home: Path) -> None:
    env = {**os.environ, "CLAUDEFORCE_HOME": str(home)}
    done = subprocess.run([sys.executable, "-m", "claudeforce_nb", "analytics", "summary", "--days", "2"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"Total executions:   {len(recent(rows, 2)):,}" in done.stdout
    assert "\x1b[" not in done.stdout  # plain text, no terminal colour codes
    bad = subprocess.run([sys.executable, "-m", "claudeforce_nb", "analytics", "trends", "--interval", "yearly"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
