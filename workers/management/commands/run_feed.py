"""``manage.py run_feed``: the market-data feed process (Procfile ``feed``).

Subscribes to every enabled ``Symbol`` (picking up admin changes within ``FEED_SYMBOLS_POLL_S``),
writes ticks, quotes, depth, bars and health to Redis (``marketdata.redis_keys``). SIGTERM/SIGINT
finish the current batch, flush and exit 0. See ``workers/feed.py``.

Simulation: the simulator has no built-in feed login. With ``FEED_SIM_AUTO_ACCOUNT`` (default on in
simulation mode) this command creates ``FEED_EMAIL``/``FEED_PASSWORD`` on the simulator through
``POST /_sim/accounts`` (idempotent; the same deterministic system uuid as
``run_simulator --provision-from-db`` uses) before connecting.
"""

from __future__ import annotations

import time

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tradeops import metrics
from tradeops.logging import get_logger
from workers.feed import check_dedicated_data_login, FeedConfig, FeedWorker
from workers.stopping import StopOnSignal

log = get_logger(__name__)


def ensure_sim_feed_account(cfg: FeedConfig, timeout: float = 5.0) -> bool:
    """Create the feed login on the simulator (idempotent). False if the simulator is not there
    (the transport then keeps retrying its connection with backoff)."""
    from workers.sim_provision import system_uuid_for

    body = {"accounts": [{
        "email": cfg.email, "password": cfg.password, "broker_id": cfg.broker_id or "0", "balance": "1000",
        "leverage": 100, "currency": "USD", "systemUuid": system_uuid_for(f"feed:{cfg.email}"),
    }]}
    try:
        r = requests.post(cfg.base_url.rstrip("/") + "/_sim/accounts", json=body, timeout=timeout)
    except requests.RequestException as exc:
        log.warning("feed_sim_account_unreachable", url=cfg.base_url, error=type(exc).__name__)
        return False
    if r.status_code >= 400:
        log.warning("feed_sim_account_refused", url=cfg.base_url, status=r.status_code)
        return False
    return True


class Command(BaseCommand):
    help = "Run the market-data feed: broker quotes/trades/depth → Redis (ticks, bars, book, health)."

    def add_arguments(self, parser):
        parser.add_argument("--transport", choices=("websocket", "polling"), default=None,
                            help="override FEED_TRANSPORT (default: %s)" % settings.FEED_TRANSPORT)
        parser.add_argument("--base-url", default=None, help="override FEED_BASE_URL")
        parser.add_argument("--no-warmup", action="store_true", help="skip loading 1 m history from REST candles")

    def handle(self, *args, **options):
        metrics.serve("feed")  # this process type's /metrics port (tradeops/metrics.py)
        overrides = {}
        if options["transport"]:
            overrides["transport"] = options["transport"]
        if options["base_url"]:
            overrides["base_url"] = options["base_url"]
        cfg = FeedConfig.from_settings(**overrides)
        if cfg.transport not in ("websocket", "polling"):
            raise CommandError(f"FEED_TRANSPORT must be 'websocket' or 'polling', not {cfg.transport!r}")
        if not cfg.email or not cfg.password:
            raise CommandError("FEED_EMAIL and FEED_PASSWORD must be set (the feed's broker login)")
        try:
            check_dedicated_data_login(cfg.email, cfg.base_url)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        stopper = StopOnSignal().install()
        stop = stopper.event
        if settings.FEED_SIM_AUTO_ACCOUNT and settings.SIMULATION_MODE:
            # Started together with the simulator (make run): wait until it answers instead of
            # streaming into a gap and reconnecting on every start.
            deadline = time.monotonic() + settings.FEED_WAIT_FOR_BROKER_S
            while not ensure_sim_feed_account(cfg, timeout=2.0) and not stop.is_set():
                if time.monotonic() > deadline:
                    log.warning("feed_simulator_not_answering", url=cfg.base_url,
                                waited_s=settings.FEED_WAIT_FOR_BROKER_S)
                    break
                stop.wait(1.0)
            if stop.is_set():
                log.info("feed_signal", signal=stopper.received)
                self.stdout.write("feed stopped")
                return

        worker = FeedWorker(cfg, warmup=not options["no_warmup"])
        self.stdout.write(f"feed: {cfg.transport} from {cfg.base_url} → {settings.REDIS_URL.rsplit('@', 1)[-1]}")
        worker.run(stop)
        if stopper.received:
            log.info("feed_signal", signal=stopper.received)
        if worker.lease_lost:
            raise CommandError("another feed took over the lease (this one stalled longer than FEED_LEASE_TTL_S); "
                               "exiting so the supervisor restarts it as a standby")
        self.stdout.write("feed stopped")
