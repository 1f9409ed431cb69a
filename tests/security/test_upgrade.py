"""README "Upgrading an existing install": credentials encrypted with the key that used to be
committed move to the generated development key with rotate_credentials."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import override_settings

from accounts.models import Account
from tests.factories import make_account

pytestmark = pytest.mark.django_db
OLD_COMMITTED_DEV_KEY = "ZGV2LW9ubHktZmllbGQta2V5LW5vdC1mb3ItcHJvZCE="  # the README's upgrade command names it


def test_rotation_moves_credentials_from_the_old_committed_key_to_the_new_one():
    new_key = Fernet.generate_key().decode()
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD_COMMITTED_DEV_KEY]):
        account = make_account(name="legacy")
        account.password = "broker-secret-1"
        account.save(update_fields=["password"])  # stored under the old key
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key]), pytest.raises(ImproperlyConfigured):
        Account.objects.get(pk=account.pk)  # the new key alone cannot read it yet
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key, OLD_COMMITTED_DEV_KEY]):
        call_command("rotate_credentials", "--no-progress")
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key]):
        assert Account.objects.get(pk=account.pk).password == "broker-secret-1"
