"""Run the simulator in the foreground until SIGTERM/SIGINT (CLI and management command)."""

from __future__ import annotations

import asyncio
import signal

from tradeops.logging import get_logger

from .config import SimConfig
from .server import Simulator

log = get_logger(__name__)


async def serve(config: SimConfig, ready=None) -> None:
    sim = Simulator(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    port = await sim.start()
    if ready is not None:
        ready(port)
    try:
        await stop.wait()
    finally:
        log.info("simulator_shutting_down")
        await sim.stop()


def run(config: SimConfig, ready=None) -> None:
    asyncio.run(serve(config, ready))
