"""The data migrations of the engine redesign, run for real on the test database: halted accounts get
a cause, stored not-sent reasons of the old words get the one vocabulary's."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("accounts", "0002_equity_snapshot"), ("orders", "0004_dispatch_pending_signals")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def latest():
    executor = MigrationExecutor(connection)
    return [key for key in executor.loader.graph.leaf_nodes() if key[0] in ("accounts", "orders")]


@pytest.fixture
def old_schema():
    apps = migrate(BEFORE)
    yield apps
    migrate(latest())


def test_halted_accounts_get_a_cause_and_old_reasons_the_new_words(old_schema):
    Account = old_schema.get_model("accounts", "Account")
    Symbol = old_schema.get_model("marketdata", "Symbol")
    Order = old_schema.get_model("orders", "Order")
    common = dict(platform_url="http://127.0.0.1:1", email="m@example.com", password="x")
    ok = Account.objects.create(name="mig-ok", **common)
    by_hand = Account.objects.create(name="mig-op", halted=True, halt_reason="halted from the admin by boss", **common)
    drift = Account.objects.create(name="mig-rec", halted=True,
                                   halt_reason="reconciliation: broker has 1 position(s)/order(s) matching no order",
                                   **common)
    symbol = Symbol.objects.create(name="MIGUSD", base_currency="MIG", quote_currency="USD")
    rows = {}
    for n, (reason, purpose) in enumerate([("trading_disabled", "open"), ("close_failed", "close"),
                                           ("max_open_positions", "open"), ("NO_MONEY", "open")]):
        rows[reason] = Order.objects.create(account=ok, symbol=symbol, side="BUY", volume=1, purpose=purpose,
                                            idempotency_key=f"mig:{n}", status="skipped", reason=reason).pk

    apps = migrate(latest())
    Account = apps.get_model("accounts", "Account")
    Order = apps.get_model("orders", "Order")
    causes = dict(Account.objects.filter(name__startswith="mig-").values_list("name", "halt_cause"))
    assert causes == {"mig-ok": "", "mig-op": "operator", "mig-rec": "reconciliation"}
    assert set(Account.objects.filter(name__startswith="mig-").values_list("restriction", flat=True)) == {"none"}
    reasons = {old: Order.objects.get(pk=pk).reason for old, pk in rows.items()}
    assert reasons == {"trading_disabled": "mode_mismatch", "close_failed": "broker_unavailable",
                       "max_open_positions": "max_open_positions", "NO_MONEY": "NO_MONEY"}
    assert by_hand.pk and drift.pk
