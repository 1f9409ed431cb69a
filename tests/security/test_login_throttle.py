"""Admin logins are throttled per (username, client address) and every attempt is audited."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

from accounts.models import AuditLog

pytestmark = pytest.mark.django_db
PASSWORD = "right-horse-battery-2291"


@pytest.fixture
def boss():
    return get_user_model().objects.create_superuser("boss", "boss@example.com", PASSWORD)


def attempt(password, ip="203.0.113.7", username="boss", **extra):
    client = Client(REMOTE_ADDR=ip, **extra)
    response = client.post("/admin/login/?next=/admin/", {"username": username, "password": password})
    return response, client


def logged_in(response) -> bool:
    return response.status_code == 302 and response.headers["Location"] == "/admin/"


def test_the_sixth_wrong_password_is_refused_and_audited(boss):
    for i in range(4):
        response, _ = attempt(f"wrong-{i}")
        assert response.status_code == 200 and b"Please enter the correct" in response.content
    response, _ = attempt("wrong-4")  # the fifth failure locks (username, address)
    assert response.status_code == 429
    response, _ = attempt("wrong-5")
    assert response.status_code == 429
    # the right password from the same address is refused too, for the cool-off time
    response, _ = attempt(PASSWORD)
    assert response.status_code == 429 and not logged_in(response)
    failed = AuditLog.objects.filter(action=AuditLog.Action.LOGIN_FAILED, actor="boss")
    assert failed.count() >= 5 and all(e.details["ip"] == "203.0.113.7" for e in failed)
    assert "password" not in str(list(failed.values_list("details", flat=True)))
    assert AuditLog.objects.filter(action=AuditLog.Action.LOCKOUT, actor="boss").exists()
    assert not AuditLog.objects.filter(action=AuditLog.Action.LOGIN).exists()


def test_nobody_locks_the_admin_out_by_username_alone(boss):
    for i in range(6):
        attempt(f"wrong-{i}", ip="198.51.100.66")
    response, _ = attempt(PASSWORD, ip="192.0.2.10")  # the real admin, elsewhere
    assert logged_in(response)
    login = AuditLog.objects.get(action=AuditLog.Action.LOGIN)
    assert login.actor == "boss" and login.details["ip"] == "192.0.2.10"


def test_a_forged_forwarded_for_header_is_ignored_without_a_trusted_proxy(boss):
    for i in range(5):
        attempt(f"wrong-{i}", HTTP_X_FORWARDED_FOR=f"10.0.0.{i}")  # rotating the header does not help
    response, _ = attempt(PASSWORD, HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert response.status_code == 429


@override_settings(TRUSTED_PROXY_COUNT=1)
def test_behind_a_trusted_proxy_the_forwarded_client_address_counts(boss):
    proxy = "10.0.0.2"
    for i in range(5):
        # the attacker prepends forged entries; the proxy appended the address it really saw
        attempt(f"wrong-{i}", ip=proxy, HTTP_X_FORWARDED_FOR=f"10.7.7.{i}, 198.51.100.66")
    assert attempt(PASSWORD, ip=proxy, HTTP_X_FORWARDED_FOR="198.51.100.66")[0].status_code == 429
    # another client behind the same proxy is not locked out
    assert logged_in(attempt(PASSWORD, ip=proxy, HTTP_X_FORWARDED_FOR="192.0.2.10")[0])
    assert AuditLog.objects.filter(action=AuditLog.Action.LOCKOUT, details__ip="198.51.100.66").exists()
