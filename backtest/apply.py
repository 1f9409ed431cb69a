"""Applying a backtest result to the live ``StrategyConfig``: the diff first, then the change with
its audit entry (``StrategyChange``), and a one-click way back.

The target row is the symbol's own row (created when missing) so a tuned symbol never changes the
others; its ``strategy`` and ``params`` become the run's. ``undo`` restores exactly what the row
held before (or deletes a row the apply created), and refuses when the row was changed again
since (the later change must be undone first) — never silently overwriting someone's edit.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from marketdata.models import Symbol
from signals.models import StrategyConfig
from signals.strategies import get_strategy

from .models import BacktestRun, StrategyChange

CREATED = "__created__"


class ApplyError(ValueError):
    pass


def target(run: BacktestRun) -> tuple[StrategyConfig | None, Symbol]:
    symbol = Symbol.objects.filter(name=run.symbol).first()
    if symbol is None:
        raise ApplyError(f"no symbol {run.symbol!r} in the live system")
    return StrategyConfig.objects.filter(symbol=symbol).first(), symbol


def diff(run: BacktestRun) -> list[tuple[str, object, object]]:
    """(key, live value, run value) for every key that differs (``strategy`` included)."""
    config, _ = target(run)
    before = {"strategy": config.strategy if config else "volume_surge", **(config.params if config else {})}
    after = {"strategy": run.strategy, **(run.params or {})}
    keys = sorted(set(before) | set(after), key=lambda k: (k != "strategy", k))
    return [(k, before.get(k, "(default)"), after.get(k, "(default)")) for k in keys if before.get(k) != after.get(k)]


def apply(run: BacktestRun, actor: str) -> StrategyChange:
    if run.status != BacktestRun.Status.DONE:
        raise ApplyError(f"run #{run.pk} is not finished")
    get_strategy(run.strategy).parse_params(run.params)  # still valid with today's code
    with transaction.atomic():
        config, symbol = target(run)
        if config is not None:
            config = StrategyConfig.objects.select_for_update().get(pk=config.pk)
            before = {"strategy": config.strategy, "params": config.params, "enabled": config.enabled}
            config.strategy, config.params, config.enabled = run.strategy, dict(run.params or {}), True
            config.full_clean()
            config.save()
        else:
            before = {CREATED: True}
            config = StrategyConfig(symbol=symbol, strategy=run.strategy, params=dict(run.params or {}))
            config.full_clean()
            config.save()
        return StrategyChange.objects.create(actor=actor, config=config, run=run, before=before,
                                             after={"strategy": run.strategy, "params": run.params})


def undo(change: StrategyChange, actor: str) -> None:
    with transaction.atomic():
        change = StrategyChange.objects.select_for_update().get(pk=change.pk)
        if change.undone_at is not None:
            raise ApplyError("this change was already undone")
        later = StrategyChange.objects.filter(config=change.config_id, created_at__gt=change.created_at,
                                              undone_at__isnull=True).exists()
        if later:
            raise ApplyError("the configuration was changed again since; undo the later change first")
        config = StrategyConfig.objects.select_for_update().get(pk=change.config_id)
        if config.strategy != change.after["strategy"] or config.params != change.after["params"]:
            raise ApplyError("the configuration was edited since this change; undo refused (edit it by hand)")
        change.undone_at, change.undone_by = timezone.now(), actor
        change.save(update_fields=["undone_at", "undone_by"])
        if change.before.get(CREATED):
            config.delete()
        else:
            config.strategy, config.params, config.enabled = (change.before["strategy"], change.before["params"],
                                                               change.before["enabled"])
            config.save()
