"""``manage.py sync_symbols``: refresh ``Symbol`` rows from the broker's instrument list.

Creates or updates precision, tick size, lot step, min/max volume, contract size, currencies and
asset class. New symbols are created DISABLED unless ``--enable`` (enabling one makes the feed
stream it within seconds). Symbols the broker no longer lists are reported, never deleted.
The instrument list is cached in Redis (``md:instruments``) for 60 s, so repeated runs (or several
operators) cost the broker one call a minute.
"""

from __future__ import annotations

import json
from decimal import Decimal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from marketdata import redis_keys as keys
from tradeops import redis_clients
from tradeops.logging import get_logger

log = get_logger(__name__)

_FIELDS = ("digits", "tick_size", "lot_step", "min_volume", "max_volume", "contract_size", "base_currency",
           "quote_currency", "description", "asset_class")


def asset_class_of(inst_type: str, symbol: str) -> str:
    t = (inst_type or "").upper()
    if "CRYPTO" in t:
        return "crypto"
    if "INDEX" in t or "INDICES" in t:
        return "index"
    if "FOREX" in t or t == "FX":
        return "forex"
    if "METAL" in t or symbol.startswith(("XAU", "XAG", "XPT", "XPD")):
        return "metal"
    return "other"


def instrument_rows(instruments) -> list[dict]:
    """Broker instruments → plain dicts of Symbol fields (Decimals as strings: JSON-cacheable)."""
    rows = []
    for i in instruments:
        rows.append({
            "name": i.symbol,
            "digits": int(i.price_precision),
            "tick_size": str(Decimal(1).scaleb(-int(i.price_precision))),
            "lot_step": str(i.volume_step),
            "min_volume": str(i.volume_min),
            "max_volume": str(i.volume_max),
            "contract_size": str(i.contract_size),
            "base_currency": (i.base_currency or "")[:8],
            "quote_currency": (i.quote_currency or "")[:8],
            "description": (i.description or "")[:128],
            "asset_class": asset_class_of(i.type, i.symbol),
        })
    return rows


def fetch_rows(client, redis, use_cache: bool = True) -> tuple[list[dict], bool]:
    """(rows, from_cache)."""
    if use_cache and redis is not None:
        cached = redis.get(keys.INSTRUMENTS_CACHE)
        if cached:
            return json.loads(cached), True
    rows = instrument_rows(client.instruments())
    if redis is not None:
        redis.set(keys.INSTRUMENTS_CACHE, json.dumps(rows), ex=keys.INSTRUMENTS_CACHE_TTL_S)
    return rows, False


def _typed(row: dict) -> dict:
    out = {}
    for f in _FIELDS:
        v = row[f]
        out[f] = Decimal(v) if f in ("tick_size", "lot_step", "min_volume", "max_volume", "contract_size") else v
    return out


def apply_rows(rows: list[dict], *, enable_new: bool = False, progress: bool = True) -> dict:
    """Upsert rows into Symbol. Returns counts and the lists of names per outcome."""
    from marketdata.models import Symbol

    existing = {s.name: s for s in Symbol.objects.all()}
    result = {"created": [], "updated": [], "unchanged": [], "skipped": [], "unlisted": []}
    for row in tqdm(rows, desc="instruments", unit="sym", disable=not progress):
        name = row["name"]
        values = _typed(row)
        if values["min_volume"] <= 0 or values["max_volume"] < values["min_volume"] or values["lot_step"] <= 0:
            result["skipped"].append(name)
            log.warning("sync_symbols_skipped", symbol=name, reason="invalid volume limits")
            continue
        current = existing.get(name)
        if current is None:
            Symbol.objects.create(name=name, enabled=enable_new, **values)
            result["created"].append(name)
            continue
        changed = [f for f, v in values.items() if getattr(current, f) != v]
        if changed:
            for f in changed:
                setattr(current, f, values[f])
            current.save(update_fields=[*changed, "updated_at"])
            result["updated"].append(name)
        else:
            result["unchanged"].append(name)
    listed = {r["name"] for r in rows}
    result["unlisted"] = sorted(set(existing) - listed)
    return result


class Command(BaseCommand):
    help = "Create/update Symbol rows from the broker's instruments (new ones disabled unless --enable)."

    def add_arguments(self, parser):
        parser.add_argument("--enable", action="store_true", help="enable newly created symbols")
        parser.add_argument("--no-cache", action="store_true", help="ignore the 60 s Redis cache of the list")
        parser.add_argument("--base-url", default=None, help="override FEED_BASE_URL")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def handle(self, *args, **opts):
        from matchtrader.client import MatchTraderClient
        from matchtrader.errors import BrokerError
        from matchtrader.trader_client import TraderApiClient

        base_url = opts["base_url"] or settings.FEED_BASE_URL
        if settings.FEED_TRADER_API_TOKEN:  # the feed reads through the Trader API: so does this
            client = TraderApiClient(base_url, settings.FEED_TRADER_API_TOKEN, user_agent="tradeops-sync/1.0",
                                     label="sync_symbols")
        else:
            client = MatchTraderClient(base_url, settings.FEED_EMAIL, settings.FEED_PASSWORD, settings.FEED_BROKER_ID,
                                       user_agent="tradeops-sync/1.0")
        redis = redis_clients.shared("default")
        try:
            rows, cached = fetch_rows(client, redis, use_cache=not opts["no_cache"])
        except BrokerError as exc:
            raise CommandError(f"could not list instruments from {base_url}: {exc}") from exc
        result = apply_rows(rows, enable_new=opts["enable"], progress=not opts["quiet"])
        self.stdout.write(
            f"{len(rows)} instruments ({'cache' if cached else 'broker'}): created {len(result['created'])}, "
            f"updated {len(result['updated'])}, unchanged {len(result['unchanged'])}, "
            f"skipped {len(result['skipped'])}"
        )
        if result["created"]:
            state = "enabled" if opts["enable"] else "disabled"
            self.stdout.write(f"new ({state}): {', '.join(result['created'])}")
        if result["unlisted"]:
            self.stdout.write(f"no longer listed by the broker (left as they are): {', '.join(result['unlisted'])}")
