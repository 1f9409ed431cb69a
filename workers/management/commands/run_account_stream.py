"""``manage.py run_account_stream``: the broker's account state into PostgreSQL within seconds
(Procfile ``accounts``). ``--mode push`` (the simulator's WebSocket ``account`` channel with the
``positionClosed`` extension) or ``--mode poll`` (the real APIs: budgeted reads of open positions).
SIGTERM/SIGINT stop it cleanly. See ``workers/account_stream.py``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tradeops.logging import get_logger
from workers.account_stream import AccountStream, BudgetedPoller
from workers.stopping import StopOnSignal

log = get_logger(__name__)


class Command(BaseCommand):
    help = "Keep every enabled account's positions and balance in PostgreSQL in step with the broker."

    def add_arguments(self, parser):
        parser.add_argument("--mode", choices=("push", "poll"), default=None,
                            help="override ACCOUNT_STREAM_MODE (default: %s)" % settings.ACCOUNT_STREAM_MODE)
        parser.add_argument("--threads", type=int, default=8, help="database / polling threads (default 8)")

    def handle(self, *args, **options):
        mode = options["mode"] or settings.ACCOUNT_STREAM_MODE
        if mode not in ("push", "poll"):
            raise CommandError(f"ACCOUNT_STREAM_MODE must be push or poll, got {mode!r}")
        if options["threads"] < 1 or options["threads"] > 256:
            raise CommandError("--threads must be between 1 and 256")
        worker = AccountStream(db_threads=options["threads"]) if mode == "push" else \
            BudgetedPoller(threads=options["threads"])
        stopper = StopOnSignal().install()
        log.info("account_stream_start", mode=mode)
        worker.run(stopper.event)
        if stopper.received:
            log.info("account_stream_signal", signal=stopper.received)
        self.stdout.write("account stream stopped")
