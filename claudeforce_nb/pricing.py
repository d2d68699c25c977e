"""Absolute prices per model and token kind, and the one function that turns tokens into USD.

Prices live in `pricing.toml` (per *million* tokens: the original product divided per-thousand
prices by a million and was off by 1000x). A user file with the same layout overrides entries.
An unknown model costs `None` with one warning, never a silent wrong number.
"""

from __future__ import annotations

import logging
import re
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .config import get_settings
from .errors import ConfigError

__all__ = ["ModelPrice", "Pricing", "Usage", "cost_usd", "get_pricing", "tier_of"]

log = logging.getLogger("claudeforce_nb.pricing")
_DATE_SUFFIX = re.compile(r"-\d{8}$")
_KINDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")


@dataclass(frozen=True)
class ModelPrice:
    model: str
    tier: str
    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float
    legacy: bool = False


@dataclass(frozen=True)
class Usage:
    """Token counts as the Messages API reports them: `input_tokens` excludes cached tokens."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0  # 5-minute cache writes
    cache_write_1h_tokens: int = 0

    @property
    def total(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
            + self.cache_write_1h_tokens
        )


class Pricing:
    def __init__(self, models: dict[str, ModelPrice], batch_discount: float, effective_date: str) -> None:
        self.models = models
        self.batch_discount = batch_discount
        self.effective_date = effective_date
        self._warned: set[str] = set()

    @classmethod
    def load(cls, user_file: Path | None = None) -> Pricing:
        data = tomllib.loads((Path(__file__).with_name("pricing.toml")).read_text(encoding="utf-8"))
        if user_file is not None:
            try:
                user = tomllib.loads(Path(user_file).read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(
                    f"Cannot read pricing file {user_file}: {exc}.",
                    hint="Fix the TOML or unset the pricing_file setting.",
                ) from None
            for key in ("batch_discount", "effective_date"):
                if key in user:
                    data[key] = user[key]
            for name, entry in user.get("models", {}).items():
                data["models"][name] = {**data["models"].get(name, {}), **entry}
        models: dict[str, ModelPrice] = {}
        for name, entry in data["models"].items():
            try:
                models[name] = ModelPrice(
                    model=name,
                    tier=str(entry["tier"]),
                    legacy=bool(entry.get("legacy", False)),
                    **{k: float(entry[k]) for k in _KINDS},
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(
                    f"Pricing entry for '{name}' is incomplete ({exc}).",
                    hint=f"Give tier and {', '.join(_KINDS)} in USD per million tokens.",
                ) from None
        return cls(models, float(data.get("batch_discount", 0.5)), str(data.get("effective_date", "")))

    def price(self, model: str) -> ModelPrice | None:
        found = self.models.get(model) or self.models.get(_DATE_SUFFIX.sub("", model))
        if found is None and model not in self._warned:
            self._warned.add(model)
            log.warning(
                "No price known for model %r: its cost is recorded as null. "
                "Add it to a pricing file (setting pricing_file).",
                model,
            )
        return found

    def is_known(self, model: str) -> bool:
        return model in self.models or _DATE_SUFFIX.sub("", model) in self.models

    def cost(self, model: str, usage: Usage, *, batch: bool = False) -> float | None:
        p = self.price(model)
        if p is None:
            return None
        micro = (
            usage.input_tokens * p.input
            + usage.output_tokens * p.output
            + usage.cache_read_tokens * p.cache_read
            + usage.cache_write_tokens * p.cache_write_5m
            + usage.cache_write_1h_tokens * p.cache_write_1h
        )
        total = micro / 1_000_000
        return total * self.batch_discount if batch else total


_lock = threading.Lock()
_loaded: tuple[Path | None, Pricing] | None = None


def get_pricing() -> Pricing:
    global _loaded
    user_file = get_settings().pricing_file
    current = _loaded
    if current is not None and current[0] == user_file:
        return current[1]
    with _lock:
        pricing = Pricing.load(user_file)
        _loaded = (user_file, pricing)
        return pricing


def cost_usd(model: str, usage: Usage, *, batch: bool = False) -> float | None:
    return get_pricing().cost(model, usage, batch=batch)


def tier_of(model: str) -> str | None:
    p = get_pricing().models.get(model) or get_pricing().models.get(_DATE_SUFFIX.sub("", model))
    return p.tier if p else None
