"""Crash safety across processes: a run SIGKILLed mid-way leaves every store loadable, a torn last
line is skipped and counted (and the next record is not glued onto it), and concurrent processes
writing through `run_agent` lose no rows."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import claudeforce_nb as cf
from claudeforce_nb.core.cache import ResponseCache
from claudeforce_nb.core.orchestrator import run_agent

REPO = Path(__file__).resolve().parent.parent

MAP_SCRIPT = textwrap.dedent("""
    import sys, threading
    from claudeforce_nb.core.orchestrator import run_agent

    items = [f"Write helper function number {i} for parsing dates." for i in range(int(sys.argv[1]))]
    try:  # the memory store, when present, is being written too when the kill comes
        from claudeforce_nb.store import memory
    except ImportError:
        memory = None
    if memory is not None:
        def remember():
            i = 0
            while True:
                memory.add("python-expert", f"remembered session {i} about parsing dates", "an answer")
                i += 1

        threading.Thread(target=remember, daemon=True).start()
    try:
        from claudeforce_nb.core.batch import map_agent
    except ImportError:  # the map engine is optional here: 32 threads do the same job
        map_agent = None
    if map_agent is not None:
        map_agent("python-expert", items, concurrency=32, progress=False)
    else:
        lock = threading.Lock()

        def worker():
            while True:
                with lock:
                    if not items:
                        return
                    task = items.pop()
                run_agent("python-expert", task)

        threads = [threading.Thread(target=worker) for _ in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
""")

WRITER_SCRIPT = textwrap.dedent("""
    import sys
    from claudeforce_nb.core.orchestrator import run_agent

    proc, n = sys.argv[1], int(sys.argv[2])
    for i in range(n):
        r = run_agent("python-expert", f"process {proc} call {i}: explain list comprehensions", cache=False)
        assert r.success, r.error
""")


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDEFORCE_", "ANTHROPIC_"))}
    env.update(CLAUDEFORCE_HOME=str(home), CLAUDEFORCE_BACKEND="simulated", CLAUDEFORCE_SIM_SEED="99",
               PYTHONPATH=str(REPO), **extra)
    return env


def _metrics_file(home: Path) -> Path:
    return home / "metrics" / "executions.jsonl"


def _count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_sigkill_during_32_way_map_leaves_every_store_loadable(home: Path, tmp_path: Path) -> None:
    script = tmp_path / "map_job.py"
    script.write_text(MAP_SCRIPT)
    errors_file = tmp_path / "stderr.txt"  # a file, not a pipe: a full pipe would stall the job
    with errors_file.open("wb") as err:
        proc = subprocess.Popen([sys.executable, str(script), "20000"],
                                env=_env(home, CLAUDEFORCE_SIM_LATENCY_MS="15"), stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 120
        while _count_lines(_metrics_file(home)) < 40 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(random.uniform(0.0, 0.4))  # a random moment, mid-run
        assert proc.poll() is None, f"the job ended before it was killed: {errors_file.read_text()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    raw = _metrics_file(home).read_bytes()
    lines = raw.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with a newline
    for line in lines:
        json.loads(line)  # every complete line is a whole record
    df = cf.metrics()
    assert len(df) == len(lines) >= 40
    assert df.attrs["skipped_lines"] == (1 if torn else 0)

    databases = sorted(p for p in home.rglob("*") if p.suffix in (".sqlite3", ".sqlite", ".db"))
    assert home / "cache" / "responses.sqlite3" in databases
    for db in databases:  # the response cache and, when present, the memory store
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    memory_db = home / "memory" / "agent_memory.sqlite3"
    if memory_db.exists():  # reopens, migrates nothing twice, finds what the killed run stored
        from claudeforce_nb.store.memory import AgentMemory

        store = AgentMemory(memory_db)
        assert store.count() > 0
        assert store.search("parsing dates", agent="python-expert")
        store.add("python-expert", "after the crash", "still writable")
        store.close()
    cache = ResponseCache(home / "cache" / "responses.sqlite3")
    assert len(cache) > 0
    cache.set("after-crash", {"text": "still writable"})
    assert cache.get("after-crash") == {"text": "still writable"}

    # The next session keeps recording, and is answered from the cache the killed run wrote.
    done = set(df.loc[df["success"] & ~df["cached"], "task_hash"].astype(str))
    task = next(t for t in _map_tasks(20000) if hashlib.sha256(t.encode()).hexdigest()[:16] in done)
    after = run_agent("python-expert", task)
    assert after.success and after.cached
    assert len(cf.metrics()) == len(lines) + 1


def _map_tasks(n: int) -> list[str]:
    return [f"Write helper function number {i} for parsing dates." for i in range(n)]


def test_torn_last_line_is_skipped_counted_and_not_glued_to_the_next_record(sim: object, home: Path) -> None:
    run_agent("python-expert", "Explain tuples.")
    path = _metrics_file(home)
    with path.open("ab") as fh:  # what a writer killed halfway through a write() would leave
        fh.write(b'{"timestamp":"2026-01-01T00:00:00+00:00","agent_name":"python-ex')
    df = cf.metrics()
    assert len(df) == 1 and df.attrs["skipped_lines"] == 1
    run_agent("python-expert", "Explain sets.")
    df = cf.metrics()
    assert len(df) == 2, "the record written after the torn line was lost"
    assert df.attrs["skipped_lines"] == 1


@pytest.mark.slow
def test_four_processes_writing_through_run_agent_lose_no_rows(home: Path, tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SCRIPT)
    env = _env(home, CLAUDEFORCE_SIM_SPEED="0", CLAUDEFORCE_CACHE="false")
    procs = [subprocess.Popen([sys.executable, str(script), str(p), "250"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for p in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()[-2000:]
    text = _metrics_file(home).read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.splitlines()]
    assert len(records) == 1000
    assert len({(r["session_id"], r["task_hash"]) for r in records}) == 1000
    assert len({r["session_id"] for r in records}) == 4
    df = cf.metrics()
    assert len(df) == 1000 and df.attrs["skipped_lines"] == 0
    assert not (home / "cache" / "responses.sqlite3").exists()  # cache off: nothing written there
