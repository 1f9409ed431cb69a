"""The shipped Prometheus rules and Grafana dashboard parse, and name only metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
OUR_METRIC = re.compile(r"\btradeops_[a-z0-9_]+")


def known_metric_names() -> set[str]:
    source = (ROOT / "tradeops" / "metrics.py").read_text() + (ROOT / "dashboard" / "metrics.py").read_text()
    base = set(re.findall(r'"(tradeops_[a-z0-9_]+)"', source))
    out = set(base)
    for name in base:  # exposition suffixes of histograms and counters
        out |= {name + s for s in ("_bucket", "_count", "_sum", "_total")}
    return out


def test_alert_rules_parse_and_use_real_metrics():
    rules = yaml.safe_load((ROOT / "ops" / "prometheus" / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert len(exprs) >= 10 and all(r.get("alert") for g in rules["groups"] for r in g["rules"])
    unknown = {m for e in exprs for m in OUR_METRIC.findall(e)} - known_metric_names()
    assert not unknown, unknown
    scrape = yaml.safe_load((ROOT / "ops" / "prometheus" / "prometheus.yml").read_text())
    assert {j["job_name"] for j in scrape["scrape_configs"]} == {"tradeops-web", "tradeops-processes"}


def test_grafana_dashboard_is_valid_json_with_real_metrics():
    dash = json.loads((ROOT / "ops" / "grafana" / "tradeops-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 15
    unknown = {m for e in exprs for m in OUR_METRIC.findall(e)} - known_metric_names()
    assert not unknown, unknown
