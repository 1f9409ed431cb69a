"""One vocabulary of not-sent reasons (orders/reasons.py): stored values of the old words are renamed.

* ``trading_disabled`` (risk: a live account while live trading is off) was the same rule as the
  eligibility's ``mode_mismatch``;
* ``close_failed`` (a close that ran out of attempts, whatever the error) is now classified like
  every other call; the old rows were all transport failures → ``broker_unavailable``.
"""

from django.db import migrations

RENAMED = {"trading_disabled": "mode_mismatch", "close_failed": "broker_unavailable"}  # frozen copy


def rename(apps, schema_editor):
    Order = apps.get_model("orders", "Order")
    for old, new in RENAMED.items():
        Order.objects.filter(reason=old).update(reason=new)


def rename_back(apps, schema_editor):
    Order = apps.get_model("orders", "Order")
    # mode_mismatch existed before; only the renamed close reason can be told apart (close orders)
    Order.objects.filter(reason="broker_unavailable", purpose="close").update(reason="close_failed")


class Migration(migrations.Migration):
    dependencies = [("orders", "0004_dispatch_pending_signals")]
    operations = [migrations.RunPython(rename, rename_back)]
