"""Parameter sweeps: a grid (or a random sample of it) over a strategy's parameters, one Celery
task per combination on the ``backtest`` queue, ranked by the out-of-sample score.

Why one task per combination: combinations are independent CPU-bound runs, so N workers (on any
number of machines) finish N at a time with no code change; the queue is ``backtest`` with its
own worker process (Procfile ``backtest``: concurrency 1, ``nice``) so a sweep never competes with
the ``analysis`` and ``orders`` workers for a slot, and the OS gives live trading the CPU first.

Grid: ``{"surge_min_ratio": [2.5, 3, 4], "cooldown_ms": {"min": 30000, "max": 90000, "step": 30000}}``.
Every value is checked against the strategy's validated ranges BEFORE anything is queued (a
combination that breaks a rule between parameters, e.g. ema_fast >= ema_slow, is an error too).
``sample=N`` draws N distinct combinations with a seeded RNG (reproducible).

Idempotent: a combination's run is unique on (sweep, index); a redelivered task finds its row and
does nothing once done. Cancel: the sweep's status; tasks not started yet see it and skip, the
messages still queued are revoked by id.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from decimal import Decimal

from django.db import IntegrityError, transaction

from signals.strategies import get_strategy
from signals.strategy import StrategyParamsError
from tradeops.logging import get_logger

from . import metrics
from .models import BacktestRun, Sweep
from .runner import Definition

log = get_logger(__name__)
MAX_COMBINATIONS = 2_000
RUN_TASK = "backtest.run_combination"
QUEUE = "backtest"


def expand_values(name: str, spec) -> list:
    if isinstance(spec, list):
        if not spec:
            raise StrategyParamsError(f"{name}: empty list of values")
        return spec
    if isinstance(spec, dict) and {"min", "max", "step"} <= set(spec):
        lo, hi, step = (Decimal(str(spec[k])) for k in ("min", "max", "step"))
        if step <= 0 or hi < lo:
            raise StrategyParamsError(f"{name}: need step > 0 and max >= min, got {spec}")
        n = int((hi - lo) / step) + 1
        if n > MAX_COMBINATIONS:
            raise StrategyParamsError(f"{name}: {n} values is too many")
        as_int = all(isinstance(spec[k], int) for k in ("min", "max", "step"))
        return [int(lo + i * step) if as_int else float(lo + i * step) for i in range(n)]
    return [spec]


def combinations(strategy_name: str, base: dict, grid: dict, sample: int | None = None, seed: int = 0) -> list[dict]:
    """Every (or ``sample`` of the) parameter override sets, each validated by the strategy."""
    strategy = get_strategy(strategy_name)
    known = strategy.describe()
    unknown = sorted(set(grid) - set(known))
    if unknown:
        raise StrategyParamsError(f"unknown strategy parameter(s) in the grid: {', '.join(unknown)}")
    names = sorted(grid)
    axes = [expand_values(n, grid[n]) for n in names]
    total = 1
    for a in axes:
        total *= len(a)
    if sample is not None and sample < 1:
        raise StrategyParamsError("sample must be >= 1")
    if total > MAX_COMBINATIONS and sample is None:
        raise StrategyParamsError(f"{total} combinations: more than {MAX_COMBINATIONS}; use a sample")
    every = itertools.product(*axes)
    if sample is not None and sample < total:
        rng = random.Random(seed)
        picks = sorted(rng.sample(range(total), sample))
        chosen = [_nth(axes, i) for i in picks]
    else:
        chosen = list(every)
    out = []
    for values in chosen:
        params = {**base, **dict(zip(names, values))}
        try:
            strategy.parse_params(params)
        except (StrategyParamsError, TypeError) as exc:
            raise StrategyParamsError(f"combination {dict(zip(names, values))}: {exc}") from None
        out.append(params)
    return out


def _nth(axes: list[list], index: int) -> tuple:
    values = []
    for axis in reversed(axes):
        index, k = divmod(index, len(axis))
        values.append(axis[k])
    return tuple(reversed(values))


def create(defn: Definition, grid: dict, sample: int | None = None, seed: int = 0, send: bool = True) -> Sweep:
    defn.validate()
    combos = combinations(defn.strategy, defn.params, grid, sample, seed)
    sweep = Sweep.objects.create(definition=dataclasses.asdict(defn), combinations=combos, total=len(combos))
    if send:
        transaction.on_commit(lambda: enqueue(sweep))
    log.info("sweep_created", sweep_id=sweep.pk, combinations=len(combos))
    return sweep


def task_id(sweep_id: int, index: int) -> str:
    return f"sweep-{sweep_id}-{index}"


def enqueue(sweep: Sweep) -> None:
    from tradeops.celery import app

    with app.producer_or_acquire() as producer:
        for i in range(sweep.total):
            app.send_task(RUN_TASK, args=[sweep.pk, i], queue=QUEUE, task_id=task_id(sweep.pk, i), producer=producer)


def run_combination(sweep_id: int, index: int) -> str:
    """Run one combination (the task body). Returns what happened: done, skipped_cancelled, already."""
    from .runner import run_definition, save

    sweep = Sweep.objects.filter(pk=sweep_id).first()
    if sweep is None:
        return "no_sweep"
    if sweep.status == Sweep.Status.CANCELLED:
        return "skipped_cancelled"
    try:
        with transaction.atomic():
            run, created = BacktestRun.objects.get_or_create(
                sweep=sweep, sweep_index=index,
                defaults={"strategy": sweep.definition["strategy"], "symbol": sweep.definition["symbol"],
                          "source": sweep.definition["source"], "params": sweep.combinations[index]})
    except IntegrityError:
        return "already"
    if not created and run.status == BacktestRun.Status.DONE:
        return "already"
    defn = Definition(**{**sweep.definition, "params": sweep.combinations[index],
                         "name": f"sweep {sweep.pk} #{index}"})
    try:
        save(run_definition(defn), run=run, sweep=sweep)
    except Exception as exc:  # noqa: BLE001 - recorded on the run: one bad combination never stops the sweep
        log.exception("sweep_combination_failed", sweep_id=sweep_id, index=index)
        BacktestRun.objects.filter(pk=run.pk).update(status=BacktestRun.Status.FAILED, error=repr(exc)[:2000])
    _maybe_finish(sweep)
    return "done"


def _maybe_finish(sweep: Sweep) -> None:
    p = sweep.progress()
    if p["done"] >= sweep.total:
        Sweep.objects.filter(pk=sweep.pk, status=Sweep.Status.RUNNING).update(status=Sweep.Status.DONE)


def cancel(sweep: Sweep) -> int:
    """Stop a sweep: queued combinations are revoked and any that still start skip. Returns how
    many were still to run."""
    from tradeops.celery import app

    Sweep.objects.filter(pk=sweep.pk, status=Sweep.Status.RUNNING).update(status=Sweep.Status.CANCELLED)
    started = set(sweep.runs.values_list("sweep_index", flat=True))
    left = [i for i in range(sweep.total) if i not in started]
    if left:
        app.control.revoke([task_id(sweep.pk, i) for i in left])
    log.info("sweep_cancelled", sweep_id=sweep.pk, not_started=len(left))
    return len(left)


def ranking(sweep: Sweep) -> list[dict]:
    rows = []
    for run in sweep.ranked():
        oos, ins, kind = metrics.ranking_scores(run.summary)
        rows.append({"run": run.pk, "index": run.sweep_index, "oos": oos, "is": ins, "kind": kind,
                     "params": {k: v for k, v in (run.params or {}).items()
                                if k not in (sweep.definition.get("params") or {})
                                or v != sweep.definition["params"][k]},
                     "trades": run.total("all").get("trades", {}).get("median")})
    return rows
