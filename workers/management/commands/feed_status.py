"""``manage.py feed_status``: the feed's health from Redis, as a table or JSON.

Exit status: 0 healthy or degraded; 1 stale (no heartbeat, heartbeat or newest tick older than
``--max-age``). Degraded: alive, but with reconnect gaps in the last minute (status line and
``"status"`` in the JSON say so).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

from django.conf import settings
from django.core.management.base import BaseCommand

from marketdata import redis_keys as keys
from marketdata.health import read_gaps, read_health
from tradeops import redis_clients


def _age(value):
    return "-" if value is None else f"{value:.1f}s"


def _utc(ms) -> str:
    """Epoch milliseconds as a UTC time a person reads (with the milliseconds)."""
    try:
        dt = datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{dt.microsecond // 1000:03d} UTC"


class Command(BaseCommand):
    help = "Show the market-data feed's health (per symbol and process); exit 1 if it is stale."

    def add_arguments(self, parser):
        parser.add_argument("--max-age", type=float, default=settings.FEED_MAX_AGE_S,
                            help="seconds after which the feed counts as stale (default %(default)s)")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.add_argument("--gaps", type=int, default=5, help="show the N newest recorded gaps")

    def handle(self, *args, **opts):
        client = redis_clients.shared("default")
        health = read_health(client)
        problems = health.problems(opts["max_age"])
        gaps = read_gaps(client, opts["gaps"]) if opts["gaps"] else []
        raw = client.get(keys.FEED_LEASE)
        lease_holder = raw.decode() if raw else None
        if opts["json"]:
            out = health.to_dict()
            out.update(lease_holder=lease_holder, status="stale" if problems else (
                           "degraded" if health.degraded() else "ok"),
                       stale=bool(problems), problems=problems, max_age_s=opts["max_age"],
                       stale_symbols=health.stale_symbols(opts["max_age"]), recent_gaps=gaps)
            self.stdout.write(json.dumps(out, indent=2, default=str))
        else:
            self._table(health, problems, gaps, opts["max_age"], lease_holder)
        if problems:
            sys.exit(1)

    def _table(self, health, problems, gaps, max_age, lease_holder):
        p = health.process
        w = self.stdout.write
        if not health.present:
            w("feed: no health record in Redis")
        else:
            w(f"feed pid {p.get('pid')}  transport {p.get('transport') or '-'}  connection "
              f"{p.get('connection') or '-'}  heartbeat {_age(health.heartbeat_age_s)} ago")
            w(f"  ticks {p.get('ticks', 0):,}  rate {p.get('ingest_rate', 0):,.0f}/s  lag {p.get('lag_ms', 0):.1f} ms "
              f"(max {p.get('lag_max_ms', 0)})  write lag {p.get('write_lag_ms', 0):.1f} ms")
            w(f"  reconnects {p.get('reconnects', 0)}  malformed {p.get('malformed', 0)}  out-of-order "
              f"{p.get('out_of_order', 0)}  gaps {p.get('gaps', 0)}  redis errors {p.get('redis_errors', 0)}  "
              f"buffered {p.get('buffered', 0)}  dropped {p.get('dropped', 0)}")
        w(f"  lease (the one active feed) held by {lease_holder or 'nobody'}")
        header = f"{'symbol':<14}{'last tick':>11}{'ticks':>11}{'lag ms':>9}{'malformed':>11}{'ooo':>6}{'gaps':>6}"
        w(header)
        w("-" * len(header))
        stale = set(health.stale_symbols(max_age))
        for name in health.subscribed or sorted(health.symbols):
            s = health.symbols.get(name)
            if s is None:
                w(f"{name:<14}{'-':>11}")
                continue
            flag = "  STALE" if name in stale else ""
            lag = "-" if s.lag_ms is None else f"{s.lag_ms:.0f}"
            w(f"{name:<14}{_age(s.age_s(health.now_ms)):>11}{s.ticks:>11,}{lag:>9}{s.malformed:>11}"
              f"{s.out_of_order:>6}{s.gaps:>6}{flag}")
        for g in gaps:
            span = ""
            try:
                span = f" ({(int(g.get('to_ms')) - int(g.get('from_ms'))) / 1000:.1f}s)"
            except (TypeError, ValueError):
                pass
            w(f"gap {g.get('reason')}: {g.get('symbols', '')[:60]} from {_utc(g.get('from_ms'))} to "
              f"{_utc(g.get('to_ms'))}{span} missed {g.get('missed') or '?'}")
        degraded = health.degraded()
        w("status: " + ("STALE: " + "; ".join(problems) if problems
                        else "DEGRADED: " + "; ".join(degraded) if degraded else "ok"))
