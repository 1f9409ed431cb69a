"""Create the simulation-mode accounts of the database (and the feed's login) on the simulator.

The simulator keeps its accounts in memory, so every simulator start needs them again. Each
account is created with the ``systemUuid`` the database already holds (``seed_demo`` gives demo
accounts a deterministic one; an account without one gets a fresh uuid saved here first), so:

- creating an account twice is a no-op on the simulator's side (idempotent), and
- cached broker sessions and stored ``system_uuid``s stay valid across simulator restarts, and
- a Trader API account's token (entered in the admin) is registered with the simulator, so the
  account trades through the Trader API beside the Platform API ones.

``provision_simulator(base_url)`` is called by ``manage.py run_simulator --provision-from-db``
(in a background thread once the server listens, then again every few seconds to pick up
accounts added in the admin) and by ``manage.py provision_simulator``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

import requests
from django.conf import settings
from django.db import close_old_connections

from tradeops.logging import get_logger

log = get_logger(__name__)

# uuid5 namespace of the demo/feed system uuids (any fixed uuid works; this one is ours).
SIM_NAMESPACE = uuid.UUID("7a1c9a52-8e0f-4b59-9d0e-3f6c2a1b5e77")
DEFAULT_BALANCE = Decimal("10000")
BATCH = 500


def system_uuid_for(name: str) -> str:
    """The deterministic simulator uuid of an account name (or of the feed's e-mail)."""
    return str(uuid.uuid5(SIM_NAMESPACE, name))


@dataclass
class ProvisionResult:
    created: int = 0  # accounts POSTed to the simulator (new or already there: it is idempotent)
    accounts: list[str] = field(default_factory=list)
    feed: bool = False


class SimulatorUnavailable(RuntimeError):
    pass


def _simulation_accounts(exclude_uuids=()):
    from accounts.models import Account

    qs = Account.objects.filter(mode=Account.Mode.SIMULATION).order_by("pk")
    missing = list(qs.filter(system_uuid=""))
    for account in missing:
        # Adopt a uuid now so the simulator and the database agree from the first login.
        Account.objects.filter(pk=account.pk, system_uuid="").update(system_uuid=system_uuid_for(account.name))
    return list(qs.exclude(system_uuid__in=list(exclude_uuids))) if exclude_uuids else list(qs)


def _payload(account) -> dict:
    item = {
        "email": account.email,
        "password": account.password,
        "broker_id": account.broker_id or "0",
        "balance": str(account.balance if account.balance is not None else DEFAULT_BALANCE),
        "leverage": 100,
        "currency": account.currency or "USD",
        "systemUuid": account.system_uuid,
    }
    if getattr(account, "api", "platform") == "trader":
        # A Trader API account has no login: the simulator gets a placeholder one (never used) and
        # accepts the token entered in the admin, with both scopes (a read-only token is tried by
        # issuing one through /_sim/trader-tokens instead).
        item["email"] = account.email or f"{account.system_uuid}@trader-api.sim"
        item["password"] = account.password or uuid.uuid4().hex
        if account.trader_api_token:
            item["traderApiToken"] = account.trader_api_token
    return item


def _feed_payload() -> dict | None:
    email = getattr(settings, "FEED_EMAIL", "")
    password = getattr(settings, "FEED_PASSWORD", "")
    if not email or not password:
        return None
    return {
        "email": email, "password": password, "broker_id": getattr(settings, "FEED_BROKER_ID", "0") or "0",
        "balance": "1000", "leverage": 100, "currency": "USD", "systemUuid": system_uuid_for(f"feed:{email}"),
    }


def wait_until_up(base_url: str, timeout_s: float, http=None) -> None:
    """Poll the simulator's ``/_sim/health`` until it answers (or raise SimulatorUnavailable)."""
    http = http or requests
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        try:
            r = http.get(base_url.rstrip("/") + "/_sim/health", timeout=2)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except requests.RequestException as exc:
            last = exc.__class__.__name__
        if time.monotonic() >= deadline:
            raise SimulatorUnavailable(f"simulator at {base_url} did not answer within {timeout_s:g}s ({last})")
        time.sleep(0.25)


def provision_simulator(base_url: str, *, include_feed: bool = True, known: set[str] | None = None,
                        http=None, progress=None) -> ProvisionResult:
    """POST every simulation-mode account (not in ``known``) to ``{base_url}/_sim/accounts``.

    ``known``: system uuids already provisioned by this caller (skipped; updated in place), so
    a periodic call costs one cheap query when nothing changed. ``progress``: optional callable
    receiving the number of accounts done after each batch. Raises SimulatorUnavailable when the
    simulator does not answer, RuntimeError when it refuses the accounts.
    """
    from accounts.models import Account

    http = http or requests.Session()
    known = known if known is not None else set()
    url = base_url.rstrip("/") + "/_sim/accounts"
    result = ProvisionResult()
    batch_items: list[dict] = []
    if include_feed and (feed := _feed_payload()) is not None and feed["systemUuid"] not in known:
        batch_items.append(feed)
        result.feed = True
    accounts = _simulation_accounts(exclude_uuids=known)
    items = batch_items + [_payload(a) for a in accounts]
    names = {a.system_uuid: a.name for a in accounts}
    for start in range(0, len(items), BATCH):
        chunk = items[start:start + BATCH]
        try:
            r = http.post(url, json={"accounts": chunk}, timeout=30)
        except requests.RequestException as exc:
            raise SimulatorUnavailable(f"simulator at {base_url} unreachable: {exc.__class__.__name__}") from exc
        if r.status_code != 201:
            raise RuntimeError(f"simulator refused the accounts: HTTP {r.status_code} {r.text[:200]}")
        for created in r.json().get("accounts", []):
            su, trading_id = created.get("systemUuid"), created.get("tradingAccountId")
            known.add(su)
            if su in names:
                result.accounts.append(names[su])
                if trading_id:
                    # The simulator numbers trading accounts itself: keep the database in step.
                    Account.objects.filter(system_uuid=su).exclude(trading_account_id=str(trading_id)).update(
                        trading_account_id=str(trading_id))
        result.created += len(chunk)
        if progress is not None:
            progress(len(chunk))
    if result.created:
        log.info("simulator_provisioned", accounts=len(result.accounts), feed=result.feed, url=base_url)
    return result


def provision_forever(base_url: str, stop, interval_s: float = 5.0, startup_timeout_s: float = 60.0) -> None:
    """Background loop for ``run_simulator --provision-from-db``: wait for the server, provision
    everything, then pick up new simulation accounts every ``interval_s`` until ``stop`` is set.
    Errors are logged and retried: the simulator keeps serving whatever happens here."""
    known: set[str] = set()
    http = requests.Session()
    try:
        wait_until_up(base_url, startup_timeout_s, http=http)
    except SimulatorUnavailable as exc:
        log.error("simulator_provision_gave_up", error=str(exc))
        return
    while not stop.is_set():
        try:
            provision_simulator(base_url, known=known, http=http)
        except Exception as exc:  # noqa: BLE001 - database not migrated yet, simulator busy: retry
            log.warning("simulator_provision_failed", error=f"{exc.__class__.__name__}: {str(exc)[:200]}")
        finally:
            close_old_connections()
        stop.wait(interval_s)
