"""``manage.py provision_simulator``: create the database's simulation accounts (and the feed's
login) on a running simulator. Idempotent; see workers/sim_provision.py."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from workers.sim_provision import SimulatorUnavailable, provision_simulator, wait_until_up


class Command(BaseCommand):
    help = "Create every simulation-mode account (and the feed login) on the simulator. Safe to repeat."

    def add_arguments(self, parser):
        parser.add_argument("--url", default=None, help="simulator base URL (default: settings.SIMULATOR_URL)")
        parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                            help="wait up to SECONDS for the simulator to answer first (default: 0)")
        parser.add_argument("--no-feed", action="store_true", help="do not create the feed's login")

    def handle(self, *args, **options):
        url = (options["url"] or settings.SIMULATOR_URL).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise CommandError(f"--url must be an http(s) URL, got {url!r}")
        if options["wait"] < 0:
            raise CommandError("--wait must be >= 0")
        try:
            if options["wait"]:
                wait_until_up(url, options["wait"])
            from accounts.models import Account

            total = Account.objects.filter(mode=Account.Mode.SIMULATION).count()
            with tqdm(total=total + (0 if options["no_feed"] else 1), desc="provisioning", unit="account",
                      disable=not self.stdout.isatty()) as bar:
                result = provision_simulator(url, include_feed=not options["no_feed"], progress=bar.update)
        except (SimulatorUnavailable, RuntimeError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(
            f"{len(result.accounts)} simulation account(s){' and the feed login' if result.feed else ''} "
            f"present on {url}"))
