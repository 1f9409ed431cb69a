"""/healthz: a status code and one word for everyone; details only with a token or a staff session."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import override_settings

pytestmark = pytest.mark.django_db


def test_without_auth_only_the_status_word(client, redis_client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.content == b"degraded\n"  # nothing else runs here
    assert response.headers["Content-Type"].startswith("text/plain")
    assert client.get("/healthz?checks=database,redis").content == b"ok\n"
    assert client.get("/healthz?strict=1").status_code == 503


@override_settings(HEALTH_TOKEN="monitoring-token-5512")
def test_the_token_or_a_staff_session_gets_the_details(client, admin_client, redis_client):
    assert client.get("/healthz", HTTP_AUTHORIZATION="Bearer wrong").content == b"degraded\n"
    body = client.get("/healthz", HTTP_AUTHORIZATION="Bearer monitoring-token-5512").json()
    assert body["status"] == "degraded" and set(body["checks"]) >= {"database", "redis", "workers"}
    assert admin_client.get("/healthz").json()["checks"]["database"] == "ok"


@override_settings(HEALTH_TOKEN="monitoring-token-5512")
def test_a_driver_error_never_reaches_the_answer(client, admin_client, monkeypatch, redis_client):
    def broken(*args, **kwargs):
        raise connection.Database.OperationalError(
            'connection to server at "10.1.2.3", port 5432 failed: password authentication failed for user "desk"')

    monkeypatch.setattr(connection, "cursor", broken)
    # the staff session cannot be read while the database is down: the word only, no 500
    assert admin_client.get("/healthz?checks=database").content == b"down\n"
    response = client.get("/healthz?checks=database", HTTP_AUTHORIZATION="Bearer monitoring-token-5512")
    assert response.status_code == 503
    text = response.content.decode()
    assert "OperationalError" in text
    for leak in ("10.1.2.3", "5432", "desk", "postgres://", "redis://"):
        assert leak not in text
