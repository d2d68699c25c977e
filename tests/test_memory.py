"""Agent memory: relevance (FTS5 BM25, same agent first) rather than the latest rows, a store
that several connections share (WAL, busy timeout), a query cache dropped on any write, and
`run_agent(memory=True)` injecting relevant past sessions within a token budget."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

import claudeforce_nb as cf
from claudeforce_nb.errors import UsageError
from claudeforce_nb.simulator import Simulator
from claudeforce_nb.store.memory import MIGRATIONS, AgentMemory, memory_context

OLD = "2025-01-05T10:00:00.000000+00:00"

FILLER = [
    "write a haiku about autumn leaves", "explain list comprehensions to a beginner",
    "draft release notes for version two", "rename variables in the billing module",
    "summarise yesterday's standup", "convert this YAML config to TOML",
]


@pytest.fixture
def store(tmp_path: Path) -> AgentMemory:
    mem = AgentMemory(tmp_path / "memory.sqlite3")
    yield mem  # type: ignore[misc]
    mem.close()


def tasks(found: list) -> list[str]:  # type: ignore[type-arg]
    return [s.task for s in found]


def test_a_relevant_old_session_beats_recent_irrelevant_ones(store: AgentMemory) -> None:
    store.add("python-expert", "parse ISO 8601 timestamps with timezone offsets in pandas",
              "use pd.to_datetime(..., utc=True)", timestamp=OLD)
    for i in range(60):  # an hour of unrelated work, all newer
        store.add("python-expert", f"{FILLER[i % len(FILLER)]} (take {i})", "done")
    found = store.search("how do I parse timestamps with a timezone offset", agent="python-expert", k=3)
    assert found[0].task.startswith("parse ISO 8601 timestamps") and found[0].timestamp == OLD
    assert found[0].result == "use pd.to_datetime(..., utc=True)"
    assert store.recent("python-expert", k=3)[0].task != found[0].task  # what "latest rows" would have given


def test_more_matching_terms_rank_higher_and_scores_descend(store: AgentMemory) -> None:
    store.add("sql-expert", "optimise a slow postgres join on the orders table", "add an index")
    store.add("sql-expert", "postgres backup schedule", "pg_dump nightly")
    store.add("sql-expert", "join two dataframes", "pd.merge")
    store.add("sql-expert", "bake sourdough bread", "long proof")
    found = store.search("slow postgres join on orders", agent="sql-expert", k=5)
    assert found[0].task == "optimise a slow postgres join on the orders table"
    assert "bake sourdough bread" not in tasks(found)  # shares no word with the question
    assert [s.score for s in found] == sorted((s.score for s in found), reverse=True)
    assert all(s.score > 0 for s in found)


def test_the_same_agents_sessions_come_first(store: AgentMemory) -> None:
    store.add("sql-expert", "fix the deadlock in the nightly batch job transaction", "lock order")
    store.add("python-expert", "deadlock in the batch job", "use a timeout")
    store.add("data-engineer", "nightly batch job deadlock transaction fix", "retry")
    mine = store.search("deadlock in the nightly batch job transaction", agent="python-expert", k=3)
    assert mine[0].agent_name == "python-expert"
    assert {s.agent_name for s in mine[1:]} == {"sql-expert", "data-engineer"}
    anyone = store.search("deadlock in the nightly batch job transaction", k=3)
    assert anyone[0].agent_name != "python-expert"  # without an agent, pure relevance
    assert len(store.search("deadlock transaction", agent="python-expert", k=1)) == 1


def test_k_limits_and_unknown_words_find_nothing(store: AgentMemory) -> None:
    for i in range(10):
        store.add("python-expert", f"profile the slow loop number {i}", "use cProfile")
    assert len(store.search("profile the slow loop", k=4)) == 4
    assert store.search("profile the slow loop", k=0) == []
    assert store.search("quantum entanglement", k=4) == []


def test_plural_and_singular_find_each_other(store: AgentMemory) -> None:
    store.add("test-engineer", "write fixtures for the payment tests", "conftest.py")
    assert tasks(store.search("payment test fixture")) == ["write fixtures for the payment tests"]


def test_identifiers_with_underscores_are_searched_by_their_parts(store: AgentMemory) -> None:
    # FTS splits `parse_iso_stamp` into words; the query must look up the same words
    store.add("python-expert", "fix parse_iso_stamp in loader_utils: it drops the offset", "keep tzinfo", timestamp=OLD)
    for i in range(30):
        store.add("python-expert", f"{FILLER[i % len(FILLER)]} (take {i})", "done")
    found = store.search("what broke parse_iso_stamp?", agent="python-expert", k=3)
    assert tasks(found)[:1] == ["fix parse_iso_stamp in loader_utils: it drops the offset"]


def test_a_word_first_seen_after_a_search_is_found(store: AgentMemory) -> None:
    assert store.search("zeppelin mooring") == []  # remembered as unknown words ...
    store.add("data-analyst", "plot zeppelin flight paths", "plotly scatter_geo")
    assert tasks(store.search("zeppelin mooring")) == ["plot zeppelin flight paths"]  # ... until a session has them


def test_common_words_only_are_scored_over_their_newest_sessions(store: AgentMemory,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from claudeforce_nb.store import memory

    monkeypatch.setattr(memory, "POSTING_BUDGET", 5)  # 100k sessions' proportions, scaled down
    ids = [store.add("devops-engineer", f"deploy the service to region {i}", "ok") for i in range(12)]
    rare = store.add("devops-engineer", "deploy the kubernetes service", "helm")
    found = store.search("deploy service", k=10)
    assert {s.id for s in found} <= set(ids[-4:] + [rare]) and len(found) == 5  # the newest five
    assert [s.id for s in store.search("deploy kubernetes service", k=1)] == [rare]  # a rare word wins


def test_accented_words_match_with_or_without_accents(store: AgentMemory) -> None:
    store.add("documentation-writer", "translate the café menu résumé", "done")
    assert tasks(store.search("cafe resume")) == ["translate the café menu résumé"]
    assert tasks(store.search("Café RÉSUMÉ")) == ["translate the café menu résumé"]


def test_compatibility_characters_are_searched_as_the_index_stores_them(store: AgentMemory) -> None:
    # the index strips accents but keeps ligatures, superscripts and full-width letters as typed
    for word in ("\ufb01le", "x\u00b2", "\uff21\uff22\uff23"):
        task = f"rename the {word} column"
        store.add("python-expert", task, "done")
        assert tasks(store.search(word)) == [task]


@pytest.mark.parametrize("query", [
    "", "   ", '"', '""', "'", "*", "a*", "NEAR", "NEAR(a b, 2)", "AND", "OR NOT", "a AND OR NOT b",
    '"unterminated phrase', "col:val", "task: parse", "^start", "(", ")", "(()", "-x", "+", "{task result}:x",
    "émigré naïve", "日本語のテキスト", "x" * 5000, "\x00\x01", "DROP TABLE sessions; --", "parse * dates",
])
def test_odd_queries_never_raise(store: AgentMemory, query: str) -> None:
    store.add("python-expert", 'parse dates NEAR "quoted" words * and more', "ok")
    for agent in (None, "python-expert", 'we"ird', "", "*", "a b"):
        found = store.search(query, agent=agent, k=3)
        assert isinstance(found, list)
    assert store.count() == 1  # nothing was dropped


def test_operator_words_are_searched_as_plain_words(store: AgentMemory) -> None:
    store.add("python-expert", "the NEAR operator in full text search", "ok")
    store.add('we"ird', "parse dates quickly", "ok")
    assert tasks(store.search("near operator")) == ["the NEAR operator in full text search"]
    assert [s.agent_name for s in store.search("parse dates", agent='we"ird')] == ['we"ird']


def test_the_database_uses_wal_and_waits_for_a_busy_writer(store: AgentMemory) -> None:
    other = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.execute("BEGIN IMMEDIATE")  # another kernel holds the write lock ...
    other.execute("INSERT INTO sessions (agent_name, task, task_hash, success, timestamp) "
                  "VALUES ('sql-expert', 'tune the vacuum settings', 'x', 1, '2026-01-01')")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    try:
        started = time.monotonic()
        store.add("python-expert", "write while another connection writes", "ok")  # ... so this waits
        waited = time.monotonic() - started
    finally:
        release.join()
        other.close()
    assert waited > 0.1 and store.count() == 2
    assert tasks(store.search("vacuum settings")) == ["tune the vacuum settings"]


def test_a_write_drops_cached_searches(store: AgentMemory) -> None:
    store.add("python-expert", "cache the results of an expensive function", "functools.lru_cache")
    first = store.search("expensive function results cache")
    assert store.search("expensive function results cache") == first  # answered again, same
    store.add("python-expert", "cache expensive function results in memory with an lru cache", "functools.cache")
    assert len(store.search("expensive function results cache")) == 2
    store.clear("python-expert")
    assert store.search("expensive function results cache") == []


def test_another_connections_write_drops_cached_searches(store: AgentMemory, tmp_path: Path) -> None:
    store.add("python-expert", "retry flaky network calls with backoff", "tenacity")
    assert len(store.search("retry network calls backoff")) == 1
    assert store.search("exponential jitter") == []
    other = AgentMemory(store.path)  # another kernel on the same file
    try:
        other.add("python-expert", "exponential backoff for network retry", "sleep 2**n")
    finally:
        other.close()
    assert len(store.search("retry network calls backoff")) == 2
    assert tasks(store.search("exponential jitter")) == ["exponential backoff for network retry"]


def test_the_query_cache_is_bounded(tmp_path: Path) -> None:
    mem = AgentMemory(tmp_path / "small.sqlite3", cache_size=3)
    try:
        mem.add("python-expert", "alpha beta gamma delta epsilon", "ok")
        for word in ("alpha", "beta", "gamma", "delta", "epsilon"):
            assert len(mem.search(word)) == 1
        assert len(mem._cache) == 3
    finally:
        mem.close()


def test_migrations_are_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    first = AgentMemory(path)
    first.add("python-expert", "remember me across reopen", "ok")
    first.close()
    again = AgentMemory(path)
    try:
        assert again.migrations() == [name for name, _ in MIGRATIONS]
        assert tasks(again.search("remember reopen")) == ["remember me across reopen"]
    finally:
        again.close()


def test_an_empty_task_is_a_usage_error(store: AgentMemory) -> None:
    with pytest.raises(UsageError, match="needs a task"):
        store.add("python-expert", "   ")


def test_module_api_uses_the_home_folder(home: Path) -> None:
    cf.memory.add("sql-expert", "index the customer email column", "CREATE INDEX ...")
    cf.memory.add("python-expert", "validate customer email addresses", "use a regex sparingly")
    assert (home / "memory" / "agent_memory.sqlite3").exists()
    found = cf.memory.search("customer email index", agent="sql-expert", k=5)
    assert [s.agent_name for s in found] == ["sql-expert", "python-expert"]
    assert len(cf.memory.search("customer email", k=1)) == 1
    assert cf.memory.clear("sql-expert") == 1
    assert [s.agent_name for s in cf.memory.search("customer email")] == ["python-expert"]


def test_context_stays_within_the_token_budget_and_skips_failures(store: AgentMemory) -> None:
    store.add("python-expert", "speed up the pandas groupby in the report", "x" * 20_000)
    store.add("python-expert", "speed up pandas groupby apply", "vectorise it", success=False)
    for budget in (80, 200, 800):
        text = memory_context("python-expert", "speed up pandas groupby", budget_tokens=budget, memory=store)
        assert text is not None and text.startswith("Relevant past sessions")
        assert len(text) <= budget * 4 + 4  # ~4 characters per token
        assert "vectorise it" not in text  # only successes are reused
    assert memory_context("python-expert", "knit a scarf", memory=store) is None
    assert memory_context("python-expert", "speed up pandas groupby", budget_tokens=0, memory=store) is None


def last_prompt(sim: Simulator) -> str:
    content = sim.history[-1]["messages"][-1]["content"]
    return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)


def test_run_agent_with_memory_remembers_successes_and_injects_them(home: Path, sim: Simulator) -> None:
    task = "Write a function that parses ISO 8601 dates with time zones."
    sim.enqueue(text="Use datetime.fromisoformat and keep the offset.")
    first = cf.run_agent("python-expert", task, memory=True, cache=False)
    assert first.success and "Relevant past sessions" not in last_prompt(sim)  # nothing to recall yet
    assert cf.memory.default_memory().count("python-expert") == 1
    assert cf.memory.search("parse ISO dates")[0].result == "Use datetime.fromisoformat and keep the offset."

    second = cf.run_agent("python-expert", "Parse ISO 8601 dates that carry a time zone offset.", memory=True,
                          cache=False)
    prompt = last_prompt(sim)
    assert second.success and prompt.startswith("Relevant past sessions")
    assert task in prompt and "Use datetime.fromisoformat and keep the offset." in prompt
    assert prompt.rstrip().endswith("Parse ISO 8601 dates that carry a time zone offset.")

    cf.run_agent("python-expert", "Draw an ASCII cat.", memory=True, cache=False)
    assert "Relevant past sessions" not in last_prompt(sim)  # nothing relevant: nothing injected


def test_run_agent_without_memory_neither_reads_nor_writes_it(home: Path, sim: Simulator) -> None:
    cf.memory.add("python-expert", "parse ISO 8601 dates with time zones", "fromisoformat")
    cf.run_agent("python-expert", "Parse ISO 8601 dates with time zones, please.", cache=False)
    assert "Relevant past sessions" not in last_prompt(sim)
    assert cf.memory.default_memory().count() == 1


def test_a_failed_call_is_not_remembered(home: Path, sim: Simulator) -> None:
    sim.enqueue(fault="429", times=10)  # rate limited past every retry
    result = cf.run_agent("python-expert", "Explain the GIL.", memory=True, cache=False)
    assert not result.success
    assert cf.memory.default_memory().count() == 0
