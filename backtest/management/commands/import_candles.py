"""manage.py import_candles — broker candles into the backtest's candle table (see backtest.history).

  manage.py import_candles --account demo-1 --symbol EURUSD --interval M1 --from 2026-11-01 --to 2026-11-29
Re-running the same command resumes where the last one stopped and never duplicates a candle.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.models import Account
from backtest.data import parse_time
from backtest.history import ImportError_, import_candles
from matchtrader.errors import BrokerError


class Command(BaseCommand):
    help = "Import broker candles (chunked, rate-limited, resumable, idempotent, COPY) for backtests."

    def add_arguments(self, parser):
        parser.add_argument("--account", required=True, help="account name or id whose broker login is used")
        parser.add_argument("--symbol", required=True)
        parser.add_argument("--interval", default="M1")
        parser.add_argument("--from", dest="start", required=True, help="ISO time, UTC")
        parser.add_argument("--to", dest="end", required=True, help="ISO time, UTC (exclusive)")
        parser.add_argument("--chunk", type=int, default=1000, help="candles per request")
        parser.add_argument("--max-chunks", type=int, help="stop after this many chunks (resume later)")

    def handle(self, *args, **o):
        from orders.broker import client_for

        account = (Account.objects.filter(name=o["account"]).first()
                   or (Account.objects.filter(pk=int(o["account"])).first() if o["account"].isdigit() else None))
        if account is None:
            raise CommandError(f"no account {o['account']!r}")
        try:
            from_ms, to_ms = parse_time(o["start"]), parse_time(o["end"])
        except ValueError as exc:
            raise CommandError(f"--from/--to: {exc}") from None
        bar = tqdm(total=max(0, to_ms - from_ms), unit="ms", unit_scale=True, desc=f"{o['symbol']} {o['interval']}",
                   file=self.stderr._out, disable=None)
        try:
            report = import_candles(client_for(account), o["symbol"], o["interval"], from_ms, to_ms, chunk=o["chunk"],
                                    max_chunks=o["max_chunks"],
                                    progress=lambda done, total: bar.update(done - bar.n))
        except ImportError_ as exc:
            raise CommandError(str(exc)) from None
        except BrokerError as exc:
            raise CommandError(f"broker error, the import stopped (re-run to resume): {exc}") from None
        finally:
            bar.close()
        resumed = " (resumed)" if report.started_from_ms > report.requested_from_ms else ""
        state = "complete" if report.finished else "stopped early; re-run to resume"
        self.stdout.write(f"{o['symbol']} {o['interval']}{resumed}: {report.chunks} chunk(s), {report.fetched} candle(s) "
                          f"fetched, {report.inserted} new; {state}")
