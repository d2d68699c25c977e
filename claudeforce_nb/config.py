"""Settings, resolved in one place: keyword overrides > CLAUDEFORCE_* environment variables >
`[tool.claudeforce]` in ./pyproject.toml > defaults.

`get_settings()` is cheap enough for every call: it re-resolves only when the environment, the
working directory or the overrides changed, so a test or a notebook that sets a variable sees it
at once without a restart.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["Settings", "configure", "get_settings", "pinned_settings", "reset_settings", "TIERS"]

TIERS = ("haiku", "sonnet", "opus")


@dataclass(frozen=True)
class Settings:
    """Every knob of the toolkit. Field `x` is read from env `CLAUDEFORCE_X`."""

    backend: str | None = None  # "anthropic" | "simulated" | None = auto (key present → anthropic)
    home: Path = Path(".claudeforce")
    default_model: str | None = None  # None: the router chooses
    baseline_model: str = "claude-sonnet-5-5"  # savings are measured against this model
    haiku_model: str = "claude-haiku-5-5"
    sonnet_model: str = "claude-sonnet-5-5"
    opus_model: str = "claude-opus-5-5"
    max_tokens: int = 4096
    stream: bool = True  # notebook default
    cache: bool = True  # response cache on by default
    cache_ttl_s: float = 24 * 3600.0
    cache_max_mb: float = 100.0
    concurrency: int = 16  # workflows and map_agent
    max_retries: int = 2  # the SDK's own retries
    timeout_s: float = 600.0
    record_text: bool = False  # opt-in: store prompt/answer text in metrics and memory
    short_errors: bool = True
    pricing_file: Path | None = None  # user price overrides (TOML, same layout as pricing.toml)
    agents_dirs: tuple[Path, ...] = (Path("agents"),)
    skills_dirs: tuple[Path, ...] = (Path("skills"),)
    workflows_dirs: tuple[Path, ...] = (Path("workflows"),)
    skills_mode: str = "progressive"  # "progressive" | "all" | "none"
    selector: str = "auto"  # agent selection: "auto" (semantic when installed) | "semantic" | "lexical"
    prompt_caching: bool = True  # send the system prompt with cache_control
    retention_days: int = 30  # metrics detail older than this is rolled up
    circuit_failures: int = 5  # consecutive failures that open a model's breaker
    circuit_cooldown_s: float = 30.0
    budget_usd: float | None = None  # default budget for map jobs
    sim_latency_ms: float | None = None
    sim_speed: float = 0.05
    sim_faults: str = ""
    sim_seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def tier_model(self, tier: str) -> str:
        if tier not in TIERS:
            raise ConfigError(f"Unknown tier '{tier}'.", hint="Use haiku, sonnet or opus.")
        return str(getattr(self, f"{tier}_model"))

    @property
    def resolved_backend(self) -> str:
        if self.backend is not None:
            return self.backend
        return "anthropic" if os.environ.get("ANTHROPIC_API_KEY") else "simulated"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **_coerce_all(changes, source="argument"))


_FIELDS = {f.name: f for f in fields(Settings) if f.name != "extra"}
_lock = threading.Lock()
_overrides: dict[str, Any] = {}
_cache: tuple[tuple[Any, ...], Settings] | None = None


def _coerce(name: str, value: Any, source: str) -> Any:
    if name not in _FIELDS:
        known = ", ".join(sorted(_FIELDS))
        raise ConfigError(f"Unknown setting '{name}' (from {source}).", hint=f"Known settings: {known}.")
    default = getattr(Settings, name, None)
    annotation = str(_FIELDS[name].type)
    try:
        if value is None or (isinstance(value, str) and value == "" and "None" in annotation):
            if "None" in annotation:
                return None
            raise ValueError("a value is required")
        if "tuple[Path" in annotation:
            if isinstance(value, str):
                value = [p for p in value.split(os.pathsep) if p]
            return tuple(Path(p).expanduser() for p in value)
        if "Path" in annotation:
            return Path(value).expanduser()
        if "bool" in annotation:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if "int" in annotation and "float" not in annotation:
            return int(value)
        if "float" in annotation:
            return float(value)
        if name == "backend":
            value = str(value).strip().lower()
            if value not in ("anthropic", "simulated"):
                raise ValueError("expected 'anthropic' or 'simulated'")
            return value
        if name == "skills_mode" and value not in ("progressive", "all", "none"):
            raise ValueError("expected progressive, all or none")
        if name == "selector" and value not in ("auto", "semantic", "lexical"):
            raise ValueError("expected auto, semantic or lexical")
        return value if default is None or isinstance(value, type(default)) else type(default)(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"Setting '{name}' from {source} has a bad value {value!r}: {exc}.",
            hint="Fix or remove it.",
        ) from None


def _coerce_all(values: dict[str, Any], source: str) -> dict[str, Any]:
    return {k: _coerce(k, v, source) for k, v in values.items()}


def _pyproject_table(cwd: Path) -> dict[str, Any]:
    path = cwd / "pyproject.toml"
    if not path.is_file():
        return {}
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}
    table = data.get("tool", {}).get("claudeforce", {})
    return {k.replace("-", "_"): v for k, v in table.items()} if isinstance(table, dict) else {}


def _env_values() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in os.environ.items():
        if key.startswith("CLAUDEFORCE_"):
            name = key[len("CLAUDEFORCE_"):].lower()
            if name in _FIELDS:
                out[name] = value
    return out


def _fingerprint() -> tuple[Any, ...]:
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("CLAUDEFORCE_")))
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = ""
    return env, cwd, bool(os.environ.get("ANTHROPIC_API_KEY")), tuple(sorted(_overrides.items()))


def get_settings() -> Settings:
    """The settings in force now."""
    global _cache
    pinned = _pinned.get()
    if pinned is not None:
        return pinned
    key = _fingerprint()
    cached = _cache
    if cached is not None and cached[0] == key:
        return cached[1]
    with _lock:
        values: dict[str, Any] = {}
        values.update(_coerce_all(_pyproject_table(Path.cwd()), "pyproject.toml [tool.claudeforce]"))
        values.update(_coerce_all(_env_values(), "the environment"))
        values.update(_overrides)
        settings = Settings(**values)
        _cache = (key, settings)
        return settings


_pinned: contextvars.ContextVar[Settings | None] = contextvars.ContextVar("cf_pinned_settings", default=None)


@contextlib.contextmanager
def pinned_settings(settings: Settings | None = None) -> Iterator[Settings]:
    """Hold the settings fixed inside this block (this thread or task, and the tasks it starts).

    A long job (map_agent over thousands of items) resolves them once: checking the environment
    on every one of the ~10 lookups per call costs more than the rest of the call's bookkeeping.
    """
    pinned = settings or get_settings()
    token = _pinned.set(pinned)
    try:
        yield pinned
    finally:
        _pinned.reset(token)


def configure(**overrides: Any) -> Settings:
    """Override settings for this process (highest precedence). `configure(x=None)` is allowed
    for fields that accept None; `reset_settings()` drops every override."""
    coerced = _coerce_all(overrides, "configure()")
    with _lock:
        _overrides.update(coerced)
    return get_settings()


def reset_settings() -> None:
    global _cache
    with _lock:
        _overrides.clear()
        _cache = None
