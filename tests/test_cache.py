"""The response cache: hits, TTL, LRU under a size cap, invalidation on agent edits, opting out,
and recovery from a corrupt database file."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from claudeforce_nb import definitions
from claudeforce_nb.config import configure
from claudeforce_nb.core import cache as cache_module
from claudeforce_nb.core.cache import ResponseCache, cache_key
from claudeforce_nb.core.orchestrator import metrics_log, response_cache, run_agent
from claudeforce_nb.pricing import Usage, get_pricing
from claudeforce_nb.simulator import Simulator

TASK = "Write a function that merges two sorted lists."
AGENT = """---
name: list-helper
description: Helps with Python lists.
domains: [lists]
skills: []
{extra}---
# List helper

{body}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in metrics_log().path.read_text(encoding="utf-8").splitlines()]


def user_agent(tmp_path: Path, body: str = "You help with lists.", extra: str = "") -> Path:
    folder = tmp_path / "user-agents"
    folder.mkdir(exist_ok=True)
    path = folder / "list-helper.md"
    path.write_text(AGENT.format(body=body, extra=extra), encoding="utf-8")
    configure(agents_dirs=[folder])
    return path


def test_second_identical_call_is_a_cache_hit_with_zero_cost_and_the_saving(sim: Simulator) -> None:
    first = run_agent("python-expert", TASK)
    second = run_agent("python-expert", TASK)
    assert not first.cached and second.cached
    assert second.text == first.text
    assert (second.input_tokens, second.output_tokens) == (first.input_tokens, first.output_tokens)
    assert second.cost_usd == 0.0 and second.attempts == 0
    assert second.baseline_cost_usd == pytest.approx(first.baseline_cost_usd)
    assert second.extra["saved_usd"] == pytest.approx(first.cost_usd)
    assert len(sim.history) == 1
    hit_row = rows()[1]
    assert hit_row["cached"] is True and hit_row["estimated_cost"] == 0.0
    assert hit_row["baseline_cost"] == pytest.approx(first.baseline_cost_usd) and hit_row["baseline_cost"] > 0


def test_hit_saving_is_priced_from_the_stored_tokens(sim: Simulator) -> None:
    first = run_agent("python-expert", TASK, model="opus")
    hit = run_agent("python-expert", TASK, model="opus")
    usage = Usage(first.input_tokens, first.output_tokens, first.cache_read_tokens, first.cache_write_tokens)
    assert hit.extra["saved_usd"] == pytest.approx(get_pricing().cost("claude-opus-5-5", usage))


def test_hit_streams_the_whole_text_to_on_text(sim: Simulator) -> None:
    first = run_agent("python-expert", TASK)
    seen: list[str] = []
    hit = run_agent("python-expert", TASK, stream=True, on_text=seen.append)
    assert hit.cached and "".join(seen) == first.text


def test_model_task_and_max_tokens_are_part_of_the_key(sim: Simulator) -> None:
    other = "opus" if run_agent("python-expert", TASK).tier != "opus" else "haiku"
    assert not run_agent("python-expert", TASK, model=other).cached
    assert not run_agent("python-expert", TASK + " Use recursion.").cached
    assert not run_agent("python-expert", TASK, max_tokens=999).cached
    assert len(sim.history) == 4


def test_cache_false_bypasses_reading_and_writing(sim: Simulator) -> None:
    run_agent("python-expert", TASK, cache=False)
    assert not run_agent("python-expert", TASK, cache=False).cached
    assert not run_agent("python-expert", TASK).cached
    assert len(sim.history) == 3


def test_cache_setting_off_bypasses(sim: Simulator) -> None:
    configure(cache=False)
    run_agent("python-expert", TASK)
    assert not run_agent("python-expert", TASK).cached


def test_agent_front_matter_cache_false_bypasses(sim: Simulator, tmp_path: Path) -> None:
    user_agent(tmp_path, extra="cache: false\n")
    run_agent("list-helper", TASK)
    assert not run_agent("list-helper", TASK).cached
    assert len(sim.history) == 2


def test_editing_the_agent_file_invalidates(sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(definitions, "_RECHECK_S", 0.0)  # look at the files on every call
    path = user_agent(tmp_path, body="You help with lists.")
    run_agent("list-helper", TASK)
    assert run_agent("list-helper", TASK).cached
    path.write_text(AGENT.format(body="You help with lists, tersely, in one code block.", extra=""),
                    encoding="utf-8")
    after_edit = run_agent("list-helper", TASK)
    assert not after_edit.cached
    assert "tersely" in sim.history[-1]["system"][0]["text"]
    assert run_agent("list-helper", TASK).cached


def test_failures_and_truncated_answers_are_not_cached(sim: Simulator) -> None:
    configure(max_retries=0)
    sim.enqueue(fault="500")
    assert not run_agent("python-expert", TASK).success
    assert not run_agent("python-expert", TASK).cached  # the failure left nothing behind
    run_agent("python-expert", TASK, max_tokens=10)
    assert not run_agent("python-expert", TASK, max_tokens=10).cached


def test_entry_expires_after_its_ttl(tmp_path: Path) -> None:
    clock = Clock()
    cache = ResponseCache(tmp_path / "c.sqlite3", ttl_s=60.0, clock=clock)
    cache.set("k", {"text": "hello"})
    clock.now += 59
    assert cache.get("k") == {"text": "hello"}
    clock.now += 2
    assert cache.get("k") is None
    assert len(cache) == 0  # the expired entry is dropped, not just hidden


def test_reading_does_not_extend_the_ttl(tmp_path: Path) -> None:
    clock = Clock()
    cache = ResponseCache(tmp_path / "c.sqlite3", ttl_s=60.0, clock=clock)
    cache.set("k", {"text": "hello"})
    for _ in range(3):
        clock.now += 25
        cache.get("k")
    assert cache.get("k") is None


def test_size_cap_evicts_the_least_recently_used(tmp_path: Path) -> None:
    clock = Clock()
    payload = {"text": "x" * 1000}
    size = len(json.dumps(payload, separators=(",", ":")))
    cache = ResponseCache(tmp_path / "c.sqlite3", max_mb=(2.5 * size) / (1024 * 1024), clock=clock)
    cache.set("a", payload)
    clock.now += 1
    cache.set("b", payload)
    clock.now += 1
    assert cache.get("a") is not None  # a is now more recently used than b
    clock.now += 1
    cache.set("c", payload)
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None
    assert len(cache) == 2


def test_writes_do_not_count_the_whole_table_each_time(tmp_path: Path) -> None:
    """Counting the payload bytes is a full table scan (30 ms at 50,000 entries): a map job writes
    once per item, so the count runs when the cap may be reached, not on every write."""
    cache = ResponseCache(tmp_path / "c.sqlite3")
    scans: list[str] = []
    cache._conn().set_trace_callback(lambda sql: scans.append(sql) if "SUM(size)" in sql else None)
    for i in range(300):
        cache.set(f"k{i}", {"text": f"answer {i}"})
    assert len(scans) == 1 and len(cache) == 300


def test_set_many_stores_all_in_one_commit_and_keeps_the_cap(tmp_path: Path) -> None:
    payload = {"text": "x" * 1000}
    size = len(json.dumps(payload, separators=(",", ":")))
    cache = ResponseCache(tmp_path / "c.sqlite3", max_mb=(20 * size) / (1024 * 1024))
    commits: list[str] = []
    cache._conn().set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    cache.set_many([(f"a{i}", {"text": f"answer {i}"}) for i in range(12)])
    assert len(commits) == 1 and len(cache) == 12 and cache.get("a7") == {"text": "answer 7"}
    for k in range(5):  # 5 x 8 entries of `size` bytes: evicted down under the 20-entry cap
        cache.set_many([(f"b{k}-{i}", payload) for i in range(8)])
    assert len(cache) <= 20 and cache.get("b4-7") == payload and cache.get("a0") is None


def test_a_full_cache_frees_a_margin_and_stays_under_the_cap(tmp_path: Path) -> None:
    payload = {"text": "x" * 1000}
    size = len(json.dumps(payload, separators=(",", ":")))
    cache = ResponseCache(tmp_path / "c.sqlite3", max_mb=(20 * size) / (1024 * 1024))
    scans: list[str] = []
    cache._conn().set_trace_callback(lambda sql: scans.append(sql) if "SUM(size)" in sql else None)
    for i in range(100):
        cache.set(f"k{i}", payload)
        assert len(cache) <= 20
    assert cache.get("k99") is not None and cache.get("k0") is None
    assert len(scans) < 100 // 2  # each eviction leaves room for the next writes


def test_an_entry_larger_than_the_cap_is_not_kept(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite3", max_mb=100 / (1024 * 1024))
    cache.set("big", {"text": "y" * 500})
    assert cache.get("big") is None


def test_cache_survives_a_new_instance_on_the_same_file(tmp_path: Path) -> None:
    ResponseCache(tmp_path / "c.sqlite3").set("k", {"text": "kept"})
    assert ResponseCache(tmp_path / "c.sqlite3").get("k") == {"text": "kept"}


def test_corrupt_cache_file_is_quarantined_and_rebuilt(sim: Simulator, home: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    db = home / "cache" / "responses.sqlite3"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a sqlite database, it is garbage" * 100)
    with caplog.at_level(logging.WARNING, logger="claudeforce_nb.cache"):
        first = run_agent("python-expert", TASK)
    assert first.success and not first.cached
    assert any("unreadable" in r.getMessage() for r in caplog.records)
    assert list(db.parent.glob("responses.sqlite3.corrupt-*"))
    assert run_agent("python-expert", TASK).cached
    assert len(response_cache()) == 1


def test_key_ignores_parameters_that_do_not_change_the_answer() -> None:
    base = {"model": "m", "system": "s", "messages": [{"role": "user", "content": "t"}], "max_tokens": 10}
    assert cache_key(base) == cache_key({**base, "metadata": {"user_id": "u1"}})
    assert cache_key(base) != cache_key({**base, "system": "s2"})


def test_key_is_the_hash_of_the_sorted_compact_json_so_existing_caches_stay_valid() -> None:
    params = {"model": "m", "system": [{"type": "text", "text": "Sé bref ✓", "cache_control": {"type": "ephemeral"}}],
              "messages": [{"role": "user", "content": "t\n"}], "max_tokens": 10, "temperature": 0.5,
              "metadata": {"user_id": "u1"}, "extra": Path("p")}
    relevant = {k: params.get(k) for k in ("model", "system", "messages", "temperature", "max_tokens")}
    blob = json.dumps(relevant, sort_keys=True, separators=(",", ":"), default=str)
    assert cache_key(params) == hashlib.sha256(blob.encode()).hexdigest()
    assert cache_key({**params, "system": Path("s")}) == cache_key({**params, "system": "s"})  # default=str


def _rows_in_main_file(db: Path, tmp_path: Path) -> int:
    """Entries in the database file alone, without its WAL: what a checkpoint has copied back."""
    copy = tmp_path / "main-only.sqlite3"
    shutil.copyfile(db, copy)
    conn = sqlite3.connect(copy)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
    except sqlite3.OperationalError:  # the table itself is still only in the WAL
        return 0
    finally:
        conn.close()


def test_writes_leave_checkpoints_to_a_background_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint waits for the disk; inside a write it would stall the caller's event loop."""
    monkeypatch.setattr(cache_module, "CHECKPOINT_EVERY", 20)
    db = tmp_path / "c.sqlite3"
    cache = ResponseCache(db)
    for i in range(19):
        cache.set(f"k{i}", {"text": f"answer {i}"})
    assert cache.checkpoints == 0 and _rows_in_main_file(db, tmp_path) == 0  # the write path never checkpoints
    assert cache._conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    cache.set("k19", {"text": "answer 19"})
    assert cache._checkpointing.acquire(timeout=60)  # held by the checkpoint thread until it is done
    cache._checkpointing.release()
    assert cache.checkpoints == 1 and _rows_in_main_file(db, tmp_path) == 20
    assert len(cache) == 20 and cache.get("k0") == {"text": "answer 0"}
