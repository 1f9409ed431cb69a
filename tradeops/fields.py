"""Encrypted model fields: broker credentials are Fernet-encrypted at rest.

Keys come from ``FIELD_ENCRYPTION_KEY`` (comma-separated; the first encrypts, every key decrypts,
so keys can be rotated: add the new key first, run ``manage.py rotate_credentials``, drop the old).
The database column holds the Fernet token, never the secret; the model attribute is the clear
text. Values are never logged (see tradeops.logging.redact_secrets).
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEY must be one or more comma-separated Fernet keys "
            "(generate one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())')"
        ) from exc


def get_fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(value: str) -> str:
    return get_fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return get_fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "A stored credential cannot be decrypted with the configured FIELD_ENCRYPTION_KEY "
            "(wrong or rotated-away key)."
        ) from exc


class EncryptedTextField(models.TextField):
    """A text column whose stored value is a Fernet token. Empty string stays empty."""

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value in (None, ""):
            return value
        return encrypt(str(value))
