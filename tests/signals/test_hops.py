"""Hop timestamps (signals.hops): the breakdown, the dashboard summary, the admin's "where did the
time go" and the SQL writers that merge into ``Signal.hops`` without losing a concurrent write."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.urls import reverse

from signals import hops
from signals.models import Signal
from tests.factories import make_signal, make_symbol

# venue 1000 ms on the wall clock = 5000 ms on the monotonic one (anchor)
DOC = {"path": "event", "venue": 1_000.0, "anchor": [2_000.0, 6_000.0], "recv": 5_002.0, "store": 5_004.0,
       "wake": 5_004.5, "woken": 5_010.0, "analysis": 5_011.0, "signal": 5_030.0, "dispatch": 5_060.0,
       "orders": {"1": [5_080.0, 5_090.0, 5_120.0], "2": [5_081.0, 5_095.0, 5_200.0]}}


def test_breakdown_puts_the_venue_time_on_the_monotonic_clock_and_sums_the_orders():
    b = hops.breakdown(DOC)
    assert b["steps"][0] == ("venue", "recv", 2.0)
    assert [s[:2] for s in b["steps"]] == [("venue", "recv"), ("recv", "store"), ("store", "wake"),
                                           ("wake", "woken"), ("woken", "analysis"), ("analysis", "signal"),
                                           ("signal", "dispatch")]
    assert b["to_signal_ms"] == 30.0 and b["to_first_answer_ms"] == 120.0 and b["to_last_answer_ms"] == 200.0
    assert b["dispatch_to_first_task_ms"] == 20.0 and b["dispatch_to_last_task_ms"] == 21.0
    assert b["slowest_broker_ms"] == 105.0
    assert hops.order_hops_monotonic(DOC, 1) and hops.order_hops_monotonic(DOC, "2")
    assert not hops.order_hops_monotonic(DOC, 3)  # unknown order: incomplete
    backwards = {**DOC, "dispatch": 5_020.0}  # dispatch before the signal
    assert not hops.order_hops_monotonic(backwards, 1)
    incomplete = {k: v for k, v in DOC.items() if k != "store"}
    assert not hops.order_hops_monotonic(incomplete, 1)


def test_summarise_per_path_and_per_step():
    beat = {"path": "beat", "venue": 1_000.0, "anchor": [2_000.0, 6_000.0], "analysis": 5_400.0,
            "signal": 5_420.0, "dispatch": 5_450.0, "orders": {"3": [5_470.0, 5_480.0, 5_500.0]}}
    s = hops.summarise([DOC, beat, {}, DOC])
    assert s["signals"] == 3
    assert s["paths"]["event"] == {"n": 2, "to_signal_p50": 30.0, "to_signal_p95": 30.0, "to_last_p50": 200.0,
                                   "to_last_p95": 200.0}
    assert s["paths"]["beat"]["to_signal_p50"] == 420.0
    steps = {name: ms for name, ms, _ in s["steps"]}
    assert steps["wake-up sent → wake-up received"] == 5.5


@pytest.mark.django_db(transaction=True)
def test_concurrent_order_hop_writers_lose_nothing():
    signal = make_signal(symbol=make_symbol("EURUSD"))
    Signal.objects.filter(pk=signal.pk).update(hops=hops.merged(path="event", signal=1.0))

    def write(k):
        try:
            Signal.objects.filter(pk=signal.pk).update(hops=hops.merged_orders({k: [1.0, 2.0, 3.0]}))
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(k,)) for k in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    Signal.objects.filter(pk=signal.pk).update(hops=hops.merged(dispatch=2.0))
    doc = Signal.objects.get(pk=signal.pk).hops
    assert set(doc["orders"]) == {str(k) for k in range(1, 9)}
    assert doc["path"] == "event" and doc["signal"] == 1.0 and doc["dispatch"] == 2.0


@pytest.mark.django_db
def test_admin_shows_where_the_time_went_and_the_dashboard_summarises(admin_client, redis_client):
    signal = make_signal(symbol=make_symbol("EURUSD"))
    Signal.objects.filter(pk=signal.pk).update(hops=DOC)
    page = admin_client.get(reverse("admin:signals_signal_change", args=[signal.pk])).content.decode()
    assert "where did the time go" in page.lower()
    assert "wake-up received" in page and "200.0" in page and "<b>event</b>" in page
    listing = admin_client.get(reverse("admin:signals_signal_changelist")).content.decode()
    assert "200 (event)" in listing
    dash = admin_client.get(reverse("dashboard")).content.decode()
    assert 'id="panel-latency"' in dash and "30.0 / 30.0" in dash and "200.0 / 200.0" in dash
