"""Prices per million tokens, checked against hand-computed dollars for every current model."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from claudeforce_nb.config import configure
from claudeforce_nb.errors import ConfigError
from claudeforce_nb.pricing import Pricing, Usage, cost_usd, get_pricing, tier_of

CURRENT = ("claude-haiku-5-5", "claude-sonnet-5-5", "claude-opus-5-5")
MIX = Usage(input_tokens=1234, output_tokens=567, cache_read_tokens=8910, cache_write_tokens=1112,
            cache_write_1h_tokens=1314)
# By hand, in USD: tokens × price per MTok / 1e6, for the MIX above.
#   haiku : 1234×0.10 + 567×0.50 + 8910×0.01 + 1112×0.125 + 1314×0.20 = 897.8 µ$
#   sonnet: 1234×2    + 567×10   + 8910×0.20 + 1112×2.50  + 1314×4    = 17956 µ$
#   opus  : 1234×4    + 567×20   + 8910×0.40 + 1112×5     + 1314×8    = 35912 µ$
MIX_COST = {"claude-haiku-5-5": 0.0008978, "claude-sonnet-5-5": 0.017956, "claude-opus-5-5": 0.035912}


@pytest.mark.parametrize(("model", "input_usd", "output_usd"),
                         [("claude-haiku-5-5", 0.10, 0.50), ("claude-sonnet-5-5", 2.0, 10.0),
                          ("claude-opus-5-5", 4.0, 20.0)])
def test_one_million_tokens_cost_the_list_price(model: str, input_usd: float, output_usd: float) -> None:
    pricing = get_pricing()
    assert pricing.cost(model, Usage(input_tokens=1_000_000)) == pytest.approx(input_usd)
    assert pricing.cost(model, Usage(output_tokens=1_000_000)) == pytest.approx(output_usd)
    assert pricing.cost(model, Usage(input_tokens=1000, output_tokens=1000)) == pytest.approx(
        (input_usd + output_usd) / 1000)


@pytest.mark.parametrize("model", CURRENT)
def test_mixed_usage_with_cache_tokens_matches_the_hand_computed_cost(model: str) -> None:
    assert get_pricing().cost(model, MIX) == pytest.approx(MIX_COST[model], rel=1e-12)
    assert cost_usd(model, MIX) == pytest.approx(MIX_COST[model], rel=1e-12)


@pytest.mark.parametrize("model", CURRENT)
def test_batch_discount_halves_the_cost(model: str) -> None:
    assert get_pricing().batch_discount == 0.5
    assert get_pricing().cost(model, MIX, batch=True) == pytest.approx(MIX_COST[model] / 2, rel=1e-12)


@pytest.mark.parametrize("model", CURRENT)
def test_cache_prices_relate_to_the_input_price(model: str) -> None:
    p = get_pricing().models[model]
    assert p.cache_read == pytest.approx(p.input * 0.1)
    assert p.cache_write_5m == pytest.approx(p.input * 1.25)
    assert p.cache_write_1h == pytest.approx(p.input * 2.0)
    assert not p.legacy


def test_each_token_kind_is_priced_separately() -> None:
    pricing = get_pricing()
    p = pricing.models["claude-sonnet-5-5"]
    kinds = {"cache_read_tokens": p.cache_read, "cache_write_tokens": p.cache_write_5m,
             "cache_write_1h_tokens": p.cache_write_1h}
    for field, price in kinds.items():
        assert pricing.cost("claude-sonnet-5-5", Usage(**{field: 2_000_000})) == pytest.approx(2 * price)


def test_usage_total_counts_every_kind() -> None:
    assert MIX.total == 1234 + 567 + 8910 + 1112 + 1314


def test_legacy_generations_are_priced_and_marked() -> None:
    models = get_pricing().models
    for generation in ("4-5", "4-6", "4-8"):
        legacy = [m for m in models.values() if m.model.endswith(generation)]
        assert legacy and all(m.legacy and m.input > 0 and m.output > m.input for m in legacy)


def test_pricing_has_an_effective_date() -> None:
    assert get_pricing().effective_date[:4].isdigit()


def test_unknown_model_costs_none_with_exactly_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    pricing = Pricing.load()
    with caplog.at_level(logging.WARNING, logger="claudeforce_nb.pricing"):
        assert pricing.cost("claude-imaginary-9", MIX) is None
        assert pricing.cost("claude-imaginary-9", MIX, batch=True) is None
        assert pricing.cost("claude-imaginary-9", Usage(output_tokens=5)) is None
    warnings = [r for r in caplog.records if "claude-imaginary-9" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert not pricing.is_known("claude-imaginary-9")
    assert tier_of("claude-imaginary-9") is None


def test_known_model_never_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="claudeforce_nb.pricing"):
        Pricing.load().cost("claude-opus-5-5", MIX)
    assert caplog.records == []


@pytest.mark.parametrize(("dated", "tier"), [("claude-haiku-5-5-20261001", "haiku"),
                                             ("claude-opus-5-5-20261015", "opus"),
                                             ("claude-sonnet-4-5-20250929", "sonnet")])
def test_dated_model_ids_use_their_family_price(dated: str, tier: str) -> None:
    pricing = get_pricing()
    family = dated.rsplit("-", 1)[0]
    assert pricing.is_known(dated)
    assert tier_of(dated) == tier
    assert pricing.cost(dated, MIX) == pricing.cost(family, MIX)


def test_user_file_overrides_prices_and_adds_models(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        'batch_discount = 0.4\n'
        '[models."claude-sonnet-5-5"]\ninput = 3.0\n'
        '[models."my-proxy-model"]\ntier = "haiku"\ninput = 1.0\noutput = 2.0\n'
        'cache_write_5m = 1.25\ncache_write_1h = 2.0\ncache_read = 0.1\n',
        encoding="utf-8",
    )
    configure(pricing_file=path)
    pricing = get_pricing()
    assert pricing.models["claude-sonnet-5-5"].input == 3.0
    assert pricing.models["claude-sonnet-5-5"].output == 10.0  # untouched fields keep the shipped price
    assert pricing.cost("claude-sonnet-5-5", Usage(input_tokens=1_000_000), batch=True) == pytest.approx(1.2)
    assert pricing.cost("my-proxy-model", Usage(output_tokens=500_000)) == pytest.approx(1.0)
    assert tier_of("my-proxy-model") == "haiku"


def test_removing_the_override_restores_shipped_prices(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text('[models."claude-opus-5-5"]\noutput = 99.0\n', encoding="utf-8")
    configure(pricing_file=path)
    assert get_pricing().models["claude-opus-5-5"].output == 99.0
    configure(pricing_file=None)
    assert get_pricing().models["claude-opus-5-5"].output == 20.0


@pytest.mark.parametrize("content", ['[models."x"\n', '[models."half-model"]\ntier = "haiku"\ninput = 1.0\n',
                                     '[models."claude-opus-5-5"]\ninput = "cheap"\n'])
def test_bad_user_file_is_a_one_line_config_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Pricing.load(path)
    assert "\n" not in str(info.value)


def test_missing_user_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nowhere.toml"):
        Pricing.load(tmp_path / "nowhere.toml")
