"""``manage.py run_simulator``: the local Match-Trader simulator (thin wrapper, same flags as
``python -m matchtrader.simulator``). Stops cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import threading

from django.core.management.base import BaseCommand, CommandError

from matchtrader.simulator.config import add_arguments, config_from_options


class Command(BaseCommand):
    help = "Run the local Match-Trader exchange simulator (REST + WebSocket on one port)."

    def add_arguments(self, parser):
        add_arguments(parser)
        parser.add_argument(
            "--provision-from-db", action="store_true",
            help="once listening, create the database's simulation accounts and the feed login on the "
                 "simulator, then pick up new ones every few seconds (workers/sim_provision.py)",
        )

    def handle(self, *args, **options):
        try:
            config = config_from_options(options)
        except (ValueError, FileNotFoundError) as e:
            raise CommandError(str(e)) from e
        from matchtrader.simulator.runner import run

        stop_provisioning = threading.Event()

        def ready(port):
            self.stdout.write(f"simulator listening on http://{config.host}:{port}")
            if options.get("provision_from_db"):
                # A thread: the server's event loop must keep serving while we call it over HTTP.
                from workers.sim_provision import provision_forever

                host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
                threading.Thread(target=provision_forever, args=(f"http://{host}:{port}", stop_provisioning),
                                 name="sim-provision", daemon=True).start()

        try:
            run(config, ready=ready)
        finally:
            stop_provisioning.set()
