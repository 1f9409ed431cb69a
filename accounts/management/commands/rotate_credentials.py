"""Re-encrypt every stored broker credential with the first FIELD_ENCRYPTION_KEY.

Key rotation: put the new key first in FIELD_ENCRYPTION_KEY (old keys after it), run this, then
remove the old keys.
"""

from django.core.management.base import BaseCommand
from django.db import transaction
from tqdm import tqdm

from accounts.models import Account, AuditLog

SECRET_FIELDS = ("password", "session_token", "trading_api_token", "trader_api_token")


class Command(BaseCommand):
    help = "Re-encrypt broker credentials with the current (first) FIELD_ENCRYPTION_KEY."

    def add_arguments(self, parser):
        parser.add_argument("--no-progress", action="store_true", help="Do not draw a progress bar.")

    def handle(self, *args, **options):
        ids = list(Account.objects.order_by("pk").values_list("pk", flat=True))
        for pk in tqdm(ids, desc="re-encrypting", unit="account", disable=options["no_progress"]):
            with transaction.atomic():
                account = Account.objects.select_for_update().get(pk=pk)  # decrypts with any key
                account.save(update_fields=list(SECRET_FIELDS))  # encrypts with the first key
        AuditLog.record("rotate_credentials", AuditLog.Action.CREDENTIALS, accounts=len(ids))
        self.stdout.write(self.style.SUCCESS(f"re-encrypted the credentials of {len(ids)} account(s)"))
