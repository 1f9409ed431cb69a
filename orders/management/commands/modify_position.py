"""manage.py modify_position POSITION_ID (--sl PRICE --tp PRICE | --close-volume LOTS) [--async]

An operator's SL/TP edit or partial close of one open position (orders/modify.py): recorded as an
Order, audited, counted against the firm day's modification cap. Without ``--async`` it is sent
here and now (under the account's lock, through the engine's retry loop) and the outcome printed;
with ``--async`` a worker sends it (task ``orders.modify_position``). ``--sl none`` / ``--tp none``
removes a level; a level not given keeps the position's current one. Exits 1 when the
modification is refused (a rule, bad input) or does not execute.
"""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError

from orders import modify, publish
from orders.lifecycle import OrderStatus
from orders.models import Position

KEEP = object()


def _level(value):
    if value is None:
        return KEEP
    return None if value.lower() in ("none", "0", "") else value


class Command(BaseCommand):
    help = "Edit the SL/TP of an open position, or close part of it (counts against the firm's modification cap)."

    def add_arguments(self, parser):
        parser.add_argument("position_id", type=int, help="the Position's id (admin: Orders › Positions)")
        parser.add_argument("--sl", metavar="PRICE", help="new stop loss (absolute price; 'none' removes it)")
        parser.add_argument("--tp", metavar="PRICE", help="new take profit (absolute price; 'none' removes it)")
        parser.add_argument("--close-volume", metavar="LOTS", help="close this many lots (floored to the lot step)")
        parser.add_argument("--async", dest="run_async", action="store_true",
                            help="hand it to a worker instead of sending it here")
        parser.add_argument("--actor", default="", help="who (default: cli:<os user>)")

    def handle(self, *args, position_id, sl=None, tp=None, close_volume=None, run_async=False, actor="", **options):
        actor = actor or f"cli:{_os_user()}"
        editing = sl is not None or tp is not None
        if editing == (close_volume is not None):
            raise CommandError("give --sl/--tp (an edit) or --close-volume (a partial close), not both, not neither")
        try:
            if editing:
                current = Position.objects.filter(pk=position_id).values("stop_loss", "take_profit").first() or {}
                sl_v, tp_v = _level(sl), _level(tp)
                order = modify.request_edit(position_id, actor=actor,
                                            stop_loss=current.get("stop_loss") if sl_v is KEEP else sl_v,
                                            take_profit=current.get("take_profit") if tp_v is KEEP else tp_v)
            else:
                order = modify.request_partial_close(position_id, volume=close_volume, actor=actor)
        except modify.ModificationRefused as exc:
            raise CommandError(f"refused: {exc}") from exc
        if order.status == OrderStatus.NEW:
            if run_async:
                publish.modify_position(order.pk)
                self.stdout.write(f"order {order.pk} ({order.purpose}) queued")
                return
            modify.execute(order.pk)
            order.refresh_from_db()
        line = f"order {order.pk} ({order.purpose}): {order.status}"
        if order.reason:
            line += f" — {order.reason}: {order.last_error}".rstrip(": ")
        self.stdout.write(line)
        if order.status != OrderStatus.FILLED:
            raise CommandError(line)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user database (containers)
        return "unknown"
