"""manage.py broker_check --account NAME [--symbol EURUSD]

Read-only check of one account's broker connection, for either API, before going live: login (or
the Trader API account profile), instruments, quotes, candles, balance and open positions, each
fetched raw and compared with the shapes the client relies on (:mod:`matchtrader.shapes`), then
read again through the typed client. Prints what differs. Never sends an order, a close or an
edit: only the read calls of the client are used.

Exit status 0 when every shape matches, 1 when something differs or a call failed (so it can gate
a deployment). Credentials are never printed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Account
from matchtrader import protocol as P
from matchtrader import shapes
from matchtrader.client import MatchTraderClient
from matchtrader.errors import BrokerError
from orders import broker


class Command(BaseCommand):
    help = "Read-only check of an account's broker API: login, instruments, quotes, candles, balance, positions."

    def add_arguments(self, parser):
        parser.add_argument("--account", metavar="NAME", required=True, help="the account's name (admin)")
        parser.add_argument("--symbol", default="EURUSD", help="symbol for the quote and candle checks")

    def handle(self, *args, account, symbol, **options):
        acct = Account.objects.filter(name=account).first()
        if acct is None:
            raise CommandError(f"no account named {account!r}")
        client = broker.client_for(acct)
        trader = not isinstance(client, MatchTraderClient)
        specs = shapes.TRADER if trader else shapes.PLATFORM
        self.stdout.write(f"account {acct.name}: {'Trader API' if trader else 'Platform API'} at "
                          f"{broker.base_url_for(acct)}")
        problems = 0
        now = datetime.now(UTC)

        def raw(op):
            if trader:
                ta_op, params = {
                    "account": (P.TA_ACCOUNT, None), "instruments": (P.TA_SYMBOLS, None),
                    "quotations": (P.TA_QUOTES, [(P.TA_F_SYMBOL, symbol)]),
                    "candles": (P.TA_CANDLES, {P.TA_F_SYMBOL: symbol, P.TA_F_INTERVAL: "M1",
                                               P.TA_F_FROM: int((now - timedelta(minutes=30)).timestamp() * 1000),
                                               P.TA_F_LIMIT: 30}),
                    "balance": (P.TA_SUMMARY, None), "open_positions": (P.TA_POSITIONS, None),
                }[op]
                return client._get(ta_op, params=params)
            path, params = {
                "instruments": (P.P_INSTRUMENTS, None), "quotations": (P.P_QUOTATIONS, {P.F_SYMBOLS: symbol}),
                "candles": (P.P_CANDLES, {P.F_SYMBOL: symbol, P.F_INTERVAL: "M1",
                                          P.F_FROM: (now - timedelta(minutes=30)).strftime(P.CANDLE_TIME_FORMAT)}),
                "balance": (P.P_BALANCE, None), "open_positions": (P.P_OPEN_POSITIONS, None),
            }[op]
            return client._call("GET", path, params=params)

        typed = {
            "instruments": lambda: f"{len(client.instruments())} instruments",
            "quotations": lambda: ", ".join(f"{q.symbol} {q.bid}/{q.ask}" for q in client.quotations([symbol])),
            "candles": lambda: f"{len(client.candles(symbol, 'M1', now - timedelta(minutes=30)))} M1 candles",
            "balance": lambda: (lambda b: f"balance {b.balance} equity {b.equity} {b.currency}")(client.balance()),
            "open_positions": lambda: f"{len(client.open_positions())} open positions",
        }
        # login
        try:
            if trader:
                problems += self._report("account", shapes.diff(raw("account"), specs["account"]), "token accepted")
            else:
                result = client.login()
                self.stdout.write(self.style.SUCCESS(
                    f"  login: OK, {len(result.accounts)} trading account(s), using {client.system_uuid}"))
        except BrokerError as exc:
            self.stdout.write(self.style.ERROR(f"  login: {type(exc).__name__}: {exc}"))
            return self._exit(1)
        for op in ("instruments", "quotations", "candles", "balance", "open_positions"):
            try:
                differences = shapes.diff(raw(op), specs[op])
                summary = typed[op]()
            except BrokerError as exc:
                self.stdout.write(self.style.ERROR(f"  {op}: {type(exc).__name__}: {exc}"))
                problems += 1
                continue
            problems += self._report(op, differences, summary)
        if problems:
            self.stdout.write(self.style.ERROR(f"{problems} check(s) differ from what the client relies on"))
            return self._exit(1)
        self.stdout.write(self.style.SUCCESS("every shape matches what the client relies on"))
        return None

    def _report(self, op: str, differences: list[str], summary: str) -> int:
        real = [d for d in differences if not d.startswith("info:")]
        style = self.style.ERROR if real else self.style.SUCCESS
        self.stdout.write(style(f"  {op}: {'DIFFERS' if real else 'OK'} ({summary})"))
        for d in differences:
            self.stdout.write(f"      {d}")
        return 1 if real else 0

    def _exit(self, code: int):
        raise SystemExit(code)
