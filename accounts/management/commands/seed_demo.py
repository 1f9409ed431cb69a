"""``manage.py seed_demo``: a ready-to-watch simulation: symbols, demo accounts, a superuser.

Idempotent: running it again creates only what is missing and never touches what a trader
changed since (an account's limits, a symbol disabled in the admin). Demo accounts get a
deterministic simulator ``system_uuid`` (workers.sim_provision) so the simulator, which keeps
accounts in memory, can be re-provisioned with the same identities after a restart.
"""

from __future__ import annotations

import os
import secrets
import sys
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction
from tqdm import tqdm

from accounts.models import Account
from marketdata.models import Symbol
from workers.sim_provision import system_uuid_for

MAX_ACCOUNTS = 5000
# Strategy overrides for the demo (the default StrategyConfig row, created only when absent): a
# shorter volume baseline, so the first signals can fire ~30 s after the feed starts instead of
# after the 5-minute production baseline. Edit or delete the row in the admin to change it.
DEMO_RISK_PER_TRADE_PCT = Decimal("0.1")
DEMO_STRATEGY_PARAMS = {"baseline_window_s": 120, "min_baseline_s": 20}
# Demo deposits cycle through these so the per-account equity curves differ in scale.
DEPOSITS = (Decimal("10000"), Decimal("25000"), Decimal("50000"), Decimal("100000"))
# One staff user per role (accounts/roles.py), so a demo shows what each role may do.
DEMO_ROLE_USERS = {"Viewer": "demo-viewer", "Operator": "demo-operator", "Risk manager": "demo-risk"}
ASSET_CLASS = {"FOREX": "forex", "COMMODITY": "metal", "CRYPTO": "crypto", "INDEX": "index"}


def demo_symbols() -> list[dict]:
    """Symbol rows matching the simulator's instrument specs (matchtrader/simulator/instruments.py)."""
    from matchtrader.simulator.instruments import DEFAULT_SYMBOLS, spec_for

    rows = []
    for name in DEFAULT_SYMBOLS:
        spec = spec_for(name)
        rows.append({
            "name": spec.symbol,
            "description": spec.description or f"{spec.base}/{spec.quote}",
            "asset_class": ASSET_CLASS.get(spec.type, "other"),
            "base_currency": spec.base[:8],
            "quote_currency": spec.quote[:8],
            "digits": spec.price_precision,
            "tick_size": Decimal(1).scaleb(-spec.price_precision),
            "lot_step": spec.volume_step,
            "min_volume": spec.volume_min,
            "max_volume": spec.volume_max,
            "contract_size": spec.contract_size,
        })
    return rows


def demo_account_name(i: int) -> str:
    return f"demo-{i:03d}" if i < 1000 else f"demo-{i}"


class Command(BaseCommand):
    help = (
        "Seed a demo for simulation mode: the simulator's symbols (enabled), N simulation accounts and a "
        "superuser (DJANGO_SUPERUSER_USERNAME/PASSWORD/EMAIL from the environment, or a generated "
        "password printed once). Safe to run again: only what is missing is created."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--accounts", type=int, default=None, metavar="N",
            help=f"number of demo accounts (0..{MAX_ACCOUNTS}; default $DEMO_ACCOUNTS or 20)",
        )
        parser.add_argument("--no-superuser", action="store_true", help="do not create a superuser")
        parser.add_argument("--no-role-users", action="store_true",
                            help="do not create the demo users of the roles (viewer, operator, risk)")
        parser.add_argument("--no-symbols", action="store_true", help="do not create the demo symbols")
        parser.add_argument("--no-strategy", action="store_true",
                            help="do not create the demo strategy configuration (shorter volume baseline)")

    def handle(self, *args, **options):
        n = options["accounts"]
        if n is None:
            raw = os.environ.get("DEMO_ACCOUNTS") or "20"
            try:
                n = int(raw)
            except ValueError:
                raise CommandError(f"DEMO_ACCOUNTS must be a whole number, got {raw!r}") from None
        if not 0 <= n <= MAX_ACCOUNTS:
            raise CommandError(f"--accounts must be between 0 and {MAX_ACCOUNTS}, got {n}")
        if not settings.SIMULATION_MODE:
            raise CommandError(
                "seed_demo creates simulation accounts for the local simulator; it refuses to run with "
                "SIMULATION_MODE=false (live settings)."
            )
        if not options["no_superuser"]:
            self.superuser_settings()  # fail on a bad e-mail before creating anything
        symbols_created = 0 if options["no_symbols"] else self.seed_symbols()
        accounts_created = self.seed_accounts(n)
        if not options["no_strategy"]:
            self.seed_strategy()
        if not options["no_superuser"]:
            self.seed_superuser()
        if not options["no_role_users"]:
            self.seed_role_users()
        self.stdout.write(self.style.SUCCESS(
            f"demo ready: {Symbol.objects.filter(enabled=True).count()} enabled symbol(s) "
            f"({symbols_created} new), {Account.objects.filter(mode=Account.Mode.SIMULATION).count()} "
            f"simulation account(s) ({accounts_created} new)"
        ))

    # -- symbols -------------------------------------------------------------------------------
    def seed_symbols(self) -> int:
        created = 0
        with transaction.atomic():
            for row in demo_symbols():
                name = row.pop("name")
                obj, was_created = Symbol.objects.get_or_create(name=name, defaults={**row, "enabled": True})
                if was_created:
                    created += 1
                    continue
                # Keep specs in step with the simulator, but leave "enabled" as the trader set it.
                changed = [k for k, v in row.items() if getattr(obj, k) != v]
                if changed:
                    for k in changed:
                        setattr(obj, k, row[k])
                    obj.save(update_fields=[*changed, "updated_at"])
        return created

    # -- accounts ------------------------------------------------------------------------------
    def seed_accounts(self, n: int) -> int:
        wanted = [demo_account_name(i) for i in range(1, n + 1)]
        existing = set(Account.objects.filter(name__in=wanted).values_list("name", flat=True))
        missing = [(i, name) for i, name in enumerate(wanted, start=1) if name not in existing]
        if not missing:
            return 0
        to_create = []
        with tqdm(total=len(missing), desc="demo accounts", unit="account", disable=None,
                  file=sys.stderr) as bar:
            for i, name in missing:
                to_create.append(Account(
                    name=name,
                    platform_url=settings.SIMULATOR_URL,
                    broker_id="0",
                    email=f"{name}@sim.tradeops.local",
                    password=secrets.token_urlsafe(16),  # simulator login; encrypted at rest
                    system_uuid=system_uuid_for(name),
                    mode=Account.Mode.SIMULATION,
                    # Small risk per trade: scalps with tight stops size to lots within the
                    # account's per-symbol limit instead of being skipped.
                    risk_per_trade_pct=DEMO_RISK_PER_TRADE_PCT,
                    balance=DEPOSITS[(i - 1) % len(DEPOSITS)],
                    equity=DEPOSITS[(i - 1) % len(DEPOSITS)],
                ))
                bar.update(1)
            Account.objects.bulk_create(to_create, batch_size=500, ignore_conflicts=True)
        return len(to_create)

    # -- strategy ------------------------------------------------------------------------------
    def seed_strategy(self) -> None:
        from signals.models import StrategyConfig

        if StrategyConfig.objects.filter(symbol=None).exists():
            return
        config = StrategyConfig(params=dict(DEMO_STRATEGY_PARAMS), enabled=True)
        config.full_clean()  # the strategy's own validation of the overrides
        config.save()
        self.stdout.write(f"demo strategy configuration created: {DEMO_STRATEGY_PARAMS}")

    # -- one user per role (accounts/roles.py) --------------------------------------------------
    def seed_role_users(self) -> None:
        from django.contrib.auth.models import Group

        from accounts.roles import ROLE_PERMISSIONS, sync_roles

        sync_roles()
        User = get_user_model()
        for role, username in DEMO_ROLE_USERS.items():
            if User.objects.filter(username=username).exists():
                continue
            # Generated, printed once: a demo login is still a login to the desk.
            password = secrets.token_urlsafe(12)
            user = User.objects.create_user(username=username, email=f"{username}@tradeops.local",
                                            password=password, is_staff=True)
            user.groups.add(Group.objects.get(name=role))
            self.stdout.write(self.style.WARNING(
                f"demo user {username!r} ({role}) created, password {password!r} (generated: note it now)"))
        assert set(DEMO_ROLE_USERS) == set(ROLE_PERMISSIONS)

    # -- superuser -----------------------------------------------------------------------------
    @staticmethod
    def superuser_settings() -> tuple[str, str, str]:
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME") or "admin"
        email = os.environ.get("DJANGO_SUPERUSER_EMAIL") or "admin@tradeops.local"
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or ""
        try:
            validate_email(email)
        except ValidationError:
            raise CommandError(f"DJANGO_SUPERUSER_EMAIL is not a valid e-mail address: {email!r}") from None
        return username, email, password

    def seed_superuser(self) -> None:
        User = get_user_model()
        username, email, password = self.superuser_settings()
        user = User.objects.filter(username=username).first()
        if user is not None:
            if password and not user.check_password(password):
                user.set_password(password)
                user.save(update_fields=["password"])
                self.stdout.write(f"superuser {username!r}: password set from DJANGO_SUPERUSER_PASSWORD")
            else:
                self.stdout.write(f"superuser {username!r} exists (password unchanged)")
            return
        generated = not password
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email=email, password=password)
        if generated:
            # Printed once, on purpose, to the terminal of whoever ran the command; never logged.
            self.stdout.write(self.style.WARNING(
                f"superuser created: username {username!r}, password {password!r} "
                "(generated: note it now, it is not shown again)"))
        else:
            self.stdout.write(f"superuser {username!r} created with DJANGO_SUPERUSER_PASSWORD")
