import pytest
from django.db import connection

from accounts.models import Account
from tests.factories import make_account

pytestmark = pytest.mark.django_db


def _raw(column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"select {column} from accounts_account where id = %s", [pk])
        return cursor.fetchone()[0]


def test_password_and_tokens_are_encrypted_at_rest_and_readable_through_the_model():
    account = make_account(password="hunter2-very-secret", trading_api_token="tok-abc-123")
    raw_password, raw_token = _raw("password", account.pk), _raw("trading_api_token", account.pk)
    assert "hunter2" not in raw_password and raw_password.startswith("gAAAA")  # a Fernet token
    assert "tok-abc" not in raw_token
    fresh = Account.objects.get(pk=account.pk)
    assert fresh.password == "hunter2-very-secret"
    assert fresh.trading_api_token == "tok-abc-123"


def test_same_secret_encrypts_differently_each_time():
    a = make_account(password="same-password")
    b = make_account(password="same-password")
    assert _raw("password", a.pk) != _raw("password", b.pk)


def test_key_rotation_old_key_still_decrypts(settings):
    from cryptography.fernet import Fernet

    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    account = make_account(password="rotate-me")
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old_key]
    assert Account.objects.get(pk=account.pk).password == "rotate-me"


def test_wrong_key_fails_clearly(settings):
    from cryptography.fernet import Fernet
    from django.core.exceptions import ImproperlyConfigured

    account = make_account(password="locked")
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ImproperlyConfigured, match="cannot be decrypted"):
        Account.objects.get(pk=account.pk)


def test_secrets_are_redacted_from_logs():
    from tradeops.logging import REDACTED, redact_secrets

    event = redact_secrets(None, "info", {"event": "login", "password": "x", "co_auth_token": "y", "email": "a@b"})
    assert event["password"] == REDACTED and event["co_auth_token"] == REDACTED and event["email"] == "a@b"


def test_rotate_credentials_moves_every_secret_to_the_new_key(settings):
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    account = make_account(password="rotate-all", trading_api_token="tok-1")
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    call_command("rotate_credentials", "--no-progress")
    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the old key is gone
    fresh = Account.objects.get(pk=account.pk)
    assert (fresh.password, fresh.trading_api_token) == ("rotate-all", "tok-1")


def test_a_trader_api_token_is_encrypted_at_rest_rotated_and_redacted_when_quoted():
    from tradeops.logging import REDACTED, redact_secrets

    account = make_account(api="trader", email="", password="", trader_api_token="mtt_secret-token-xyz")
    raw = _raw("trader_api_token", account.pk)
    assert "secret-token" not in raw and raw.startswith("gAAAA")
    assert Account.objects.get(pk=account.pk).trader_api_token == "mtt_secret-token-xyz"
    event = redact_secrets(None, "info", {"event": "x", "trader_api_token": "a",
                                          "error": "header was Authorization: Bearer mtt_secret-token-xyz, refused"})
    assert event["trader_api_token"] == REDACTED
    assert "secret-token" not in event["error"] and f"Bearer {REDACTED}" in event["error"]
