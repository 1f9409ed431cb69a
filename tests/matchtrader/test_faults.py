import pytest

from matchtrader.simulator.config import SimConfig
from matchtrader.simulator.faults import FaultConfig, FaultInjector


def test_same_seed_same_fault_decisions():
    a = FaultInjector(FaultConfig(p_5xx=0.3, latency_jitter_ms=50), seed=11)
    b = FaultInjector(FaultConfig(p_5xx=0.3, latency_jitter_ms=50), seed=11)
    seq_a = [(a.roll("p_5xx"), a.latency_s()) for _ in range(200)]
    seq_b = [(b.roll("p_5xx"), b.latency_s()) for _ in range(200)]
    assert seq_a == seq_b
    hits = sum(h for h, _ in seq_a)
    assert 30 < hits < 90 and a.counts["p_5xx"] == hits


def test_scope_and_validation():
    f = FaultInjector(FaultConfig(scope="write"))
    assert f.in_scope(True) and not f.in_scope(False)
    with pytest.raises(ValueError):
        f.update({"p_lost": -0.1})
    with pytest.raises(ValueError):
        f.update({"lost_mode": "explode"})
    with pytest.raises(ValueError):
        f.update({"rate_limit_per_min": 1.5})
    assert f.update({"p_lost": 0.5}).p_lost == 0.5 and f.config.scope == "write"


def test_config_flat_fault_kwargs():
    cfg = SimConfig.from_kwargs(seed=3, p_5xx=0.2, token_ttl_s=5, replay={"US500": "backtesting:GOOG"})
    assert cfg.faults.p_5xx == 0.2 and cfg.faults.token_ttl_s == 5 and "US500" in cfg.symbols
    with pytest.raises(TypeError):
        SimConfig.from_kwargs(bogus=1)
