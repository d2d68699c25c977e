"""Rollups and retention: old detail becomes daily rows without changing a total, the rolled-up
days stay in `cf.metrics()` and `trends()`, and the live log is rotated, never rewritten."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from metrics_rows import log_path, make_rows, write_rows

import claudeforce_nb as cf
from claudeforce_nb.errors import UsageError
from claudeforce_nb.store.metrics import MetricsLog

NOW = datetime.now(timezone.utc)


@pytest.fixture
def rows(home: Path) -> list[dict[str, Any]]:
    rows = make_rows(600, seed=21, start=NOW - timedelta(days=60), hours=60 * 24 - 1)
    write_rows(home, rows)
    return rows


def cutoff(days: float) -> datetime:
    return (NOW - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)


def totals(df: pd.DataFrame) -> tuple[int, float, float, int, int]:
    s = cf.analytics.summary(df)
    return s["executions"], round(s["total_cost_usd"], 9), round(s["baseline_cost_usd"], 9), s["total_tokens"], \
        s["attempts"]


def test_rollup_keeps_every_total_and_folds_old_days_into_daily_rows(rows: list[dict[str, Any]]) -> None:
    before = cf.metrics()
    report = cf.analytics.rollup(older_than_days=30)
    after = cf.metrics()
    cut = cutoff(30)
    old = [r for r in rows if datetime.fromisoformat(r["timestamp"]) < cut]
    assert report.calls_rolled_up == len(old) > 0
    assert report.detail_rows_kept == len(rows) - len(old)
    assert totals(after) == totals(before)
    assert after["executions"].sum() == len(rows) and len(after) < len(before)
    rolled = after[after["is_rollup"]]
    assert len(rolled) == report.rollup_rows_added
    assert (rolled["timestamp"] < cut).all() and (rolled["timestamp"] == rolled["timestamp"].dt.floor("D")).all()
    assert not after.loc[after["timestamp"] < cut, "is_rollup"].eq(False).any()  # no old detail left
    detail = after[~after["is_rollup"]]
    assert sorted(detail["task_hash"]) == sorted(r["task_hash"] for r in rows if r not in old)
    # old detail is gone from disk: only the rollup file holds it now
    assert not list(log_path(cf.get_settings().home).parent.glob("executions*.jsonl"))


def test_tables_over_rolled_up_days_are_unchanged(rows: list[dict[str, Any]]) -> None:
    before = cf.metrics()
    cf.analytics.rollup(older_than_days=30)
    after = cf.metrics()
    for b, a in ((cf.analytics.trends(before, "daily"), cf.analytics.trends(after, "daily")),
                 (cf.analytics.trends(before, "weekly"), cf.analytics.trends(after, "weekly"))):
        pd.testing.assert_index_equal(b.index, a.index)
        assert list(a["executions"]) == list(b["executions"])
        assert list(a["cost_usd"].round(9)) == list(b["cost_usd"].round(9))
        assert list(a["total_tokens"]) == list(b["total_tokens"])
        assert list(a["success_rate"].round(9).fillna(-1)) == list(b["success_rate"].round(9).fillna(-1))
    pd.testing.assert_series_equal(cf.analytics.by_agent(after)["executions"].sort_index(),
                                   cf.analytics.by_agent(before)["executions"].sort_index())
    cb, ca = cf.analytics.costs(before), cf.analytics.costs(after)
    assert ca["cost_usd"].sort_index().round(9).equals(cb["cost_usd"].sort_index().round(9))
    assert ca["executions"].sort_index().equals(cb["executions"].sort_index())
    sb, sa = cf.analytics.savings(before), cf.analytics.savings(after)
    assert sa["saved_usd"] == pytest.approx(sb["saved_usd"])
    assert sa["cache_saved_usd"] == pytest.approx(sb["cache_saved_usd"])
    s = cf.analytics.summary(after)
    assert s["success_rate"] == pytest.approx(cf.analytics.summary(before)["success_rate"])


def test_filters_still_see_rolled_up_days(rows: list[dict[str, Any]]) -> None:
    cf.analytics.rollup(older_than_days=30)
    day = cutoff(45)
    since = cf.metrics(since=day.strftime("%Y-%m-%d"))
    assert since["executions"].sum() == sum(datetime.fromisoformat(r["timestamp"]) >= day for r in rows)
    assert since["is_rollup"].any()
    sql = cf.metrics(agents="sql-expert")
    assert sql["executions"].sum() == sum(r["agent_name"] == "sql-expert" for r in rows)
    assert set(sql["agent_name"]) == {"sql-expert"}


def test_a_second_rollup_counts_nothing_twice(rows: list[dict[str, Any]], home: Path) -> None:
    before = totals(cf.metrics())
    first = cf.analytics.rollup(older_than_days=30)
    write_rows(home, make_rows(40, seed=22, start=NOW - timedelta(hours=5), hours=4))
    second = cf.analytics.rollup(older_than_days=10)
    after = cf.metrics()
    assert after["executions"].sum() == len(rows) + 40
    assert totals(after)[0] == before[0] + 40
    between = [r for r in rows if cutoff(30) <= datetime.fromisoformat(r["timestamp"]) < cutoff(10)]
    assert second.calls_rolled_up == len(between)
    assert first.path is not None and f"rollups/{first.path.name}" in second.files_replaced
    assert [p.name for p in (home / "metrics" / "rollups").glob("*.parquet")] == [second.path.name]  # type: ignore[union-attr]


def test_files_a_rollup_replaced_are_ignored_if_left_behind(rows: list[dict[str, Any]], home: Path) -> None:
    # a crash between writing the rollup and deleting what it replaced must not double count
    raw = log_path(home).read_bytes()
    report = cf.analytics.rollup(older_than_days=30)
    rotated = [n for n in report.files_replaced if n.endswith(".jsonl")]
    assert len(rotated) == 1
    (home / "metrics" / rotated[0]).write_bytes(raw)
    assert cf.metrics()["executions"].sum() == len(rows)
    cf.analytics.rollup(older_than_days=10)  # ... and stays ignored once its rollup is replaced too
    assert cf.metrics()["executions"].sum() == len(rows)
    assert not (home / "metrics" / rotated[0]).exists()


def test_rotation_renames_the_live_log_and_never_rewrites_it(rows: list[dict[str, Any]], home: Path) -> None:
    path = log_path(home)
    raw = path.read_bytes()
    with path.open("rb") as reader:  # a process that has the log open while the rollup runs
        inode = os.fstat(reader.fileno()).st_ino
        cf.analytics.rollup(older_than_days=30)
        assert reader.read() == raw  # the bytes it had open were never truncated or rewritten
        write_rows(home, make_rows(5, seed=23))
        assert path.stat().st_ino != inode  # appends after the rollup start a fresh file
    assert cf.metrics()["executions"].sum() == len(rows) + 5


def test_appends_racing_a_rollup_are_all_kept(rows: list[dict[str, Any]], home: Path) -> None:
    extra = make_rows(400, seed=24, start=NOW - timedelta(minutes=30), hours=0.4)
    log = MetricsLog(log_path(home))
    started = threading.Event()

    def writer() -> None:
        for i, r in enumerate(extra):
            log.append(r)
            if i == 20:
                started.set()
            time.sleep(0.0005)  # keep appending for the whole rollup

    thread = threading.Thread(target=writer)
    thread.start()
    started.wait(10)
    cf.analytics.rollup(older_than_days=30)
    thread.join()
    df = cf.metrics()
    assert df["executions"].sum() == len(rows) + len(extra)
    assert set(r["task_hash"] for r in extra) <= set(df["task_hash"])


def rollup_while_a_writer_starts(monkeypatch: pytest.MonkeyPatch, late: list[dict[str, Any]],
                                 older_than_days: float) -> Any:
    """Roll up while a writer starts the new live log (with `late`) the moment the old one is renamed."""
    rotate = MetricsLog.rotate

    def rotate_then_append(self: MetricsLog) -> Path | None:
        renamed = rotate(self)
        MetricsLog(self.path).append_many(late)
        return renamed

    with monkeypatch.context() as patch:
        patch.setattr(MetricsLog, "rotate", rotate_then_append)
        return cf.analytics.rollup(older_than_days=older_than_days)


def test_a_log_started_right_after_the_rotation_is_neither_compacted_nor_hidden(
        rows: list[dict[str, Any]], home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the race above, made deterministic: a writer starts the new live log the moment the
    # rollup has renamed the old one
    late = make_rows(30, seed=25, start=NOW - timedelta(minutes=10), hours=0.1)
    report = rollup_while_a_writer_starts(monkeypatch, late, older_than_days=30)
    assert "executions.jsonl" not in report.files_replaced
    assert log_path(home).exists()  # the live log is the writers', never compacted away
    write_rows(home, make_rows(5, seed=26))
    df = cf.metrics()
    assert df["executions"].sum() == len(rows) + 30 + 5
    assert df["task_hash"].value_counts().max() == 1  # no call counted twice


def test_a_live_log_an_older_rollup_listed_is_not_inherited_and_deleted(
        rows: list[dict[str, Any]], home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # rollups written before the live log was left out could list `executions.jsonl` as replaced;
    # the next rollup inherits what they replaced, but must not delete a live log a writer just started
    import json

    import pyarrow.parquet as pq

    from claudeforce_nb.store.columnar import write_parquet
    from claudeforce_nb.store.metrics import consumed_by

    first = cf.analytics.rollup(older_than_days=30)
    assert first.path is not None
    names = sorted(consumed_by(first.path) | {"executions.jsonl"})
    write_parquet(pq.read_table(first.path), first.path, {"claudeforce.consumed": json.dumps(names)})
    late = make_rows(30, seed=27, start=NOW - timedelta(minutes=10), hours=0.1)
    report = rollup_while_a_writer_starts(monkeypatch, late, older_than_days=10)
    assert "executions.jsonl" not in report.files_replaced
    assert log_path(home).exists()
    assert cf.metrics()["executions"].sum() == len(rows) + 30


def test_rollup_of_an_empty_home_does_nothing(home: Path) -> None:
    report = cf.analytics.rollup(older_than_days=1)
    assert report.calls_rolled_up == 0 and report.path is None and "0 call(s)" in str(report)
    assert len(cf.metrics()) == 0


def test_retention_setting_is_the_default_age(rows: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDEFORCE_RETENTION_DAYS", "50")
    report = cf.analytics.rollup()
    assert report.cutoff == cutoff(50)
    assert report.calls_rolled_up == sum(datetime.fromisoformat(r["timestamp"]) < cutoff(50) for r in rows)
    cf.configure(retention_days=20)  # configure() beats the environment
    assert cf.analytics.rollup().cutoff == cutoff(20)
    assert cf.analytics.rollup(older_than_days=40).cutoff == cutoff(40)  # the argument beats both
    assert cf.metrics()["executions"].sum() == len(rows)


def test_rollup_rejects_a_negative_age(home: Path) -> None:
    with pytest.raises(UsageError, match="non-negative"):
        cf.analytics.rollup(older_than_days=-3)
