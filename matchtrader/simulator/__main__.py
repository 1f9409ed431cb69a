"""``python -m matchtrader.simulator --host 127.0.0.1 --port 8900 --seed 42 [...]``"""

from __future__ import annotations

import argparse
import logging.config
import os
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m matchtrader.simulator",
                                     description="Local Match-Trader exchange simulator (REST + WebSocket)")
    from .config import add_arguments, config_from_options

    add_arguments(parser)
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    try:
        config = config_from_options(vars(args))
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    from tradeops.logging import build_logging_config

    logging.config.dictConfig(build_logging_config(args.log_level.upper(), os.environ.get("LOG_FORMAT", "json")))
    from .runner import run

    run(config, ready=lambda port: print(f"simulator listening on http://{config.host}:{port}", flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
