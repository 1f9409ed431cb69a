"""StrategyParams: defaults, JSON round trip, clear validation errors."""

import dataclasses
import json

import pytest

from signals.strategy import DEFAULT_PARAMS, StrategyParams, StrategyParamsError


def test_round_trip_through_json():
    params = StrategyParams.from_dict({"surge_min_ratio": 4, "cooldown_ms": 30_000, "require_ema_trend": True})
    restored = StrategyParams.from_dict(json.loads(json.dumps(params.to_dict())))
    assert restored == params
    assert params.surge_min_ratio == 4.0 and isinstance(params.surge_min_ratio, float)  # JSON 4 -> 4.0


def test_empty_or_none_overrides_are_the_defaults():
    assert StrategyParams.from_dict({}) == DEFAULT_PARAMS == StrategyParams.from_dict(None)


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_PARAMS.cooldown_ms = 1  # type: ignore[misc]


def test_unknown_key_is_named_with_the_valid_ones():
    with pytest.raises(StrategyParamsError, match=r"unknown strategy parameter\(s\): surge_ratio; valid: .*surge_min_ratio"):
        StrategyParams.from_dict({"surge_ratio": 3})


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"surge_min_ratio": 0.5}, r"surge_min_ratio: 0.5 must be >= 1.0"),
        ({"min_buy_ratio": 1.5}, r"min_buy_ratio: 1.5 must be <= 1.0"),
        ({"sl_atr_mult": 0}, r"sl_atr_mult: 0 must be > 0.0"),
        ({"cooldown_ms": 1.5}, r"cooldown_ms: expected int, got 1.5 \(float\)"),
        ({"cooldown_ms": True}, r"cooldown_ms: expected int, got True \(bool\)"),
        ({"surge_min_zscore": "3"}, r"surge_min_zscore: expected float, got '3' \(str\)"),
        ({"surge_min_zscore": float("nan")}, r"surge_min_zscore: expected float"),
        ({"use_swing_levels": 1}, r"use_swing_levels: expected bool, got 1 \(int\)"),
        ({"volume_source": "trades"}, r"volume_source: 'trades' must be one of auto, volume, ticks"),
        ({"recent_window_s": 1}, r"recent_window_s: 1 must be >= 2"),
        ({"ema_fast": 30}, r"ema_fast \(30\) must be < ema_slow \(21\)"),
        ({"rsi_oversold": 85.0}, r"rsi_oversold \(85.0\) must be < rsi_overbought \(80.0\)"),
        ({"min_baseline_s": 400}, r"min_baseline_s \(400\) must be <= baseline_window_s \(300\)"),
    ],
)
def test_invalid_values_give_clear_errors(overrides, message):
    with pytest.raises(StrategyParamsError, match=message):
        StrategyParams.from_dict(overrides)


def test_direct_construction_is_validated_too():
    with pytest.raises(StrategyParamsError, match="max_staleness_ms"):
        StrategyParams(max_staleness_ms=0)


def test_every_field_is_documented_with_a_default():
    described = StrategyParams.describe()
    assert set(described) == {f.name for f in dataclasses.fields(StrategyParams)}
    for name, info in described.items():
        assert info["doc"], name
        assert info["default"] == getattr(DEFAULT_PARAMS, name)


def test_every_parameter_is_in_the_analysis_doc():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "signals" / "ANALYSIS.md").read_text()
    missing = [name for name in StrategyParams.describe() if f"| `{name}` |" not in doc]
    assert not missing, f"document these in signals/ANALYSIS.md: {missing}"
