"""What one fan-out chunk costs, in-process: the engine's CPU and its PostgreSQL session's CPU per order.

    .venv/bin/python bench/chunk_cost.py [--accounts 400] [--rounds 3] [--redis-url redis://127.0.0.1:6379/6]
                                         [--db tradeops_bench_orders]

Why beside ``bench/fanout.py``: on a shared 2-core machine the fan-out's wall time and the machine-wide
PostgreSQL CPU swing with whatever else runs; the cost of a chunk does not. This runs the chunk task's
body (``orders.recovery.run_chunk`` → ``orders.batch.place_signal_orders``, chunks of
``ORDERS_FANOUT_CHUNK``) in this process against the in-process simulator and reports, per order:
the process CPU minus the simulator thread's (the engine, including its send pool), the CPU of this
session's own PostgreSQL backend (``/proc/<pg_backend_pid>``), and the statements per chunk. Same
database set-up as ``bench/fanout.py`` (its own database and Redis db; follow-up messages are
published to that Redis db and dropped at the end).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
_spec = importlib.util.spec_from_file_location("bench_fanout", ROOT / "bench" / "fanout.py")
fanout = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fanout)


def thread_cpu_s(native_id: int) -> float:
    import os

    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--accounts", type=int, default=400)
    p.add_argument("--rounds", type=int, default=3, help="signals, each to every account")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/6")
    p.add_argument("--db", default="tradeops_bench_orders")
    p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    p.add_argument("--statements", action="store_true", help="time each statement (last round)")
    p.add_argument("--profile", metavar="FILE", help="cProfile the measured rounds' main thread into FILE")
    args = p.parse_args()
    fanout.setup_environment(args)
    from django.conf import settings
    from django.db import connection

    from matchtrader.simulator.testing import running_simulator
    from orders import batch, delivery, recovery
    from orders.bulk import chunked
    from tests.factories import make_symbol

    settings.ORDERS_LINK_FILL_INLINE = False
    fanout.check_redis_db_is_ours(args.redis_url)
    fanout.reset_state(args.redis_url)
    with running_simulator(seed=11, tick_rate=2.0, history_minutes=5, surges_per_hour=0.0,
                           rate_limit_per_min=0) as sim:
        sim.control.market(paused=True, prices={"EURUSD": 1.10000})
        settings.SIMULATOR_URL = sim.url
        sim_thread = next(t for t in threading.enumerate() if t.name.startswith("matchtrader-sim"))
        symbol = make_symbol("EURUSD", base_currency="EUR", quote_currency="USD")
        accounts = fanout.create_accounts(sim, args.accounts, symbol)
        ids = sorted(a.pk for a in accounts)
        with connection.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            backend = cur.fetchone()[0]
        statements = []
        timings: dict[str, list[float]] = {}

        def wrapper(execute, sql, params, many, ctx):
            t = time.perf_counter()
            try:
                return execute(sql, params, many, ctx)
            finally:
                statements.append(sql)
                timings.setdefault(" ".join(sql.split())[:90], []).append(time.perf_counter() - t)

        connection.execute_wrappers.append(wrapper)
        per_round = []
        for r in range(args.rounds + 1):  # the first round warms the clients and the day's budget rows
            signal = fanout.buy_signal(symbol)
            delivery.record_fanout(signal.pk, symbol.pk)
            statements.clear()
            timings.clear()
            cpu0, sim0, pg0 = time.process_time(), thread_cpu_s(sim_thread.native_id), fanout.cpu_seconds(backend)
            prof = None
            if args.profile and r:
                import cProfile

                prof = cProfile.Profile()
                prof.enable()
            t0 = time.perf_counter()
            chunks = list(chunked(ids, settings.ORDERS_FANOUT_CHUNK))
            for chunk in chunks:
                recovery.run_chunk(signal.pk, chunk, lambda todo, s=signal.pk: batch.place_signal_orders(s, todo),
                                   skip_settled=True)
            wall = time.perf_counter() - t0
            if prof is not None:
                prof.disable()
                prof.dump_stats(f"{args.profile}.{r}")
            engine = (time.process_time() - cpu0) - (thread_cpu_s(sim_thread.native_id) - sim0)
            pg = fanout.cpu_seconds(backend) - pg0
            n = len(ids)
            row = {"wall_ms": wall / n * 1000, "engine_ms": engine / n * 1000, "pg_ms": pg / n * 1000,
                   "statements": len(statements) / len(chunks)}
            if r:
                per_round.append(row)
            print(("warm-up " if not r else f"round {r}  ") + "  ".join(f"{k} {v:.2f}" for k, v in row.items()),
                  flush=True)
        if args.statements:
            print("last round, per statement: calls, total ms (client side: PostgreSQL + round trip)")
            for sql, ts in sorted(timings.items(), key=lambda kv: -sum(kv[1])):
                print(f"  {len(ts):5d} {sum(ts) * 1000:8.1f}  {sql}")
        print("median per order: " + "  ".join(
            f"{k} {statistics.median(x[k] for x in per_round):.2f}" for k in per_round[0]))
    import redis

    redis.Redis.from_url(args.redis_url).flushdb()


if __name__ == "__main__":
    main()
