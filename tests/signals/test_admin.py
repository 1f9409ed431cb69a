"""StrategyConfig in the admin: the parameter reference is shown, bad input is refused clearly."""

from __future__ import annotations

import html
import json

import pytest
from django.urls import reverse

from signals.models import Signal, StrategyConfig
from signals.strategy import StrategyParams
from tests.factories import make_symbol

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:signals_strategyconfig_add")


def change_url(pk: int) -> str:
    return reverse("admin:signals_strategyconfig_change", args=[pk])


def form_data(params, **kw) -> dict:
    data = {"name": "volume-surge-scalper", "symbol": "", "enabled": "on",
            "params": params if isinstance(params, str) else json.dumps(params),
            # the inline of the owners the configuration trades for (prop.StrategyOwner), empty
            "owners-TOTAL_FORMS": "0", "owners-INITIAL_FORMS": "0"}
    data.update(kw)
    return data


def errors_of(response) -> str:
    assert response.status_code == 200, "the form should be shown again with its errors"
    form = response.context["adminform"].form
    return html.unescape(" ".join(str(e) for e in form.errors.get("params", [])))


def test_add_form_lists_every_parameter_with_default_range_and_meaning(admin_client):
    response = admin_client.get(ADD_URL)

    assert response.status_code == 200
    page = html.unescape(response.content.decode())
    for name, meta in StrategyParams.describe().items():
        assert f"<code>{name}</code>" in page
        assert meta["doc"] in page
    assert "1.0 … 1000.0" in page  # surge_min_ratio's allowed range
    assert "auto | volume | ticks" in page  # volume_source's choices


def test_out_of_range_value_is_refused_with_the_reason(admin_client):
    response = admin_client.post(ADD_URL, form_data({"surge_min_ratio": 0.5}))

    assert "surge_min_ratio: 0.5 must be >= 1.0" in errors_of(response)
    assert not StrategyConfig.objects.exists()


def test_unknown_key_is_refused_suggesting_the_close_one(admin_client):
    response = admin_client.post(ADD_URL, form_data({"surge_ratio": 4}))

    assert "unknown parameter 'surge_ratio' (did you mean 'surge_min_ratio'?)" in errors_of(response)
    assert not StrategyConfig.objects.exists()


def test_every_problem_is_reported_at_once(admin_client):
    response = admin_client.post(ADD_URL, form_data({"cooldown": 5, "min_strength": 3, "book_levels": 0}))

    form = response.context["adminform"].form
    assert [html.unescape(str(e)) for e in form.errors["params"]] == [
        "unknown parameter 'cooldown' (did you mean 'cooldown_ms'?)",
        "book_levels: 0 must be >= 1",
        "min_strength: 3 must be <= 1.0",
    ]


def test_wrong_type_is_refused(admin_client):
    response = admin_client.post(ADD_URL, form_data({"cooldown_ms": "60s"}))

    assert "cooldown_ms: expected int" in errors_of(response)


def test_invalid_json_is_refused_and_the_text_kept(admin_client):
    response = admin_client.post(ADD_URL, form_data('{"surge_min_ratio": 4.0,}'))

    assert "Enter a valid JSON" in errors_of(response)
    assert '{"surge_min_ratio": 4.0,}' in html.unescape(response.content.decode())  # not lost
    assert not StrategyConfig.objects.exists()


def test_json_that_is_not_an_object_is_refused(admin_client):
    response = admin_client.post(ADD_URL, form_data("[1, 2]"))

    assert "must be a JSON object" in errors_of(response)


def test_cross_field_rule_is_refused(admin_client):
    response = admin_client.post(ADD_URL, form_data({"ema_fast": 30}))

    assert "ema_fast (30) must be < ema_slow (21)" in errors_of(response)


def test_symbol_row_is_checked_against_the_default_row(admin_client):
    # given: the default row raises ema_fast; a symbol row lowering ema_slow below it conflicts
    StrategyConfig.objects.create(params={"ema_fast": 15})
    symbol = make_symbol("EURUSD")

    response = admin_client.post(ADD_URL, form_data({"ema_slow": 12}, symbol=str(symbol.pk)))

    message = errors_of(response)
    assert "Combined with the default row" in message and "ema_fast (15) must be < ema_slow (12)" in message
    assert StrategyConfig.objects.filter(symbol=symbol).count() == 0


def test_valid_overrides_are_saved_and_shown_as_effective(admin_client):
    response = admin_client.post(ADD_URL, form_data({"surge_min_ratio": 4, "cooldown_ms": 30000}))

    assert response.status_code == 302
    config = StrategyConfig.objects.get()
    assert config.params == {"surge_min_ratio": 4, "cooldown_ms": 30000}
    page = admin_client.get(change_url(config.pk)).content.decode()
    assert "<strong>30000</strong>" in page  # effective and set by this row
    assert "<strong>4.0</strong>" in page


def test_symbol_row_shows_the_merge_with_the_default_row(admin_client):
    StrategyConfig.objects.create(params={"cooldown_ms": 5000})
    row = StrategyConfig.objects.create(symbol=make_symbol("EURUSD"), params={"min_strength": 0.3})

    page = admin_client.get(change_url(row.pk)).content.decode()

    assert "<strong>0.3</strong>" in page  # this row's own
    assert '<em title="from the default row">5000</em>' in page  # inherited from the default row


def test_list_shows_the_overrides(admin_client):
    StrategyConfig.objects.create(params={"cooldown_ms": 5000})

    page = admin_client.get(reverse("admin:signals_strategyconfig_changelist")).content.decode()

    assert "cooldown_ms=5000" in page


def test_signal_list_shows_each_fan_out_outcome_and_links_to_its_orders(admin_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from orders.models import Order
    from tests.factories import make_account, make_signal

    sym = make_symbol("EURUSD")
    signal = make_signal(symbol=sym)
    other = make_signal(symbol=sym)
    done = timezone.now() + timedelta(seconds=1.5)
    for i, status in enumerate(["filled", "filled", "skipped"]):
        Order.objects.create(account=make_account(), signal=signal, symbol=sym, side="BUY", volume=Decimal("0.1"),
                             idempotency_key=f"t:{signal.pk}:{i}", status=status)
    Order.objects.filter(signal=signal).update(completed_at=done)
    Order.objects.create(account=make_account(), signal=other, symbol=sym, side="BUY", volume=Decimal("0.1"),
                         idempotency_key=f"t:{other.pk}:0")
    with CaptureQueriesContext(connection) as few:
        page = admin_client.get(reverse("admin:signals_signal_changelist")).content.decode()
    for i in range(5):  # more signals with orders: the page's queries do not grow (no query per row)
        more = make_signal(symbol=sym)
        Order.objects.create(account=make_account(), signal=more, symbol=sym, side="BUY", volume=Decimal("0.1"),
                             idempotency_key=f"t:{more.pk}:0")
    with CaptureQueriesContext(connection) as many:
        admin_client.get(reverse("admin:signals_signal_changelist"))
    assert len(many.captured_queries) == len(few.captured_queries)
    link = reverse("admin:orders_order_changelist") + f"?signal__id__exact={signal.pk}"
    assert f'<a href="{html.escape(link)}">2 / 1 / 3</a>' in page
    seconds = (done - Signal.objects.get(pk=signal.pk).created_at).total_seconds()
    assert f"{seconds:.2f}" in page
    orders_page = admin_client.get(link)
    assert orders_page.status_code == 200
    assert orders_page.context["cl"].result_count == 3  # only this signal's orders
