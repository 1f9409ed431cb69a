"""Stored backtests: one ``BacktestRun`` (definition, code version, summary, equity curve) and its
``BacktestTrade`` rows (every seed's trades, tagged in-sample / out-of-sample)."""

from __future__ import annotations

from django.db import models

from .metrics import ranking_scores


class BacktestRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    name = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING, db_index=True)
    error = models.TextField(blank=True)
    strategy = models.CharField(max_length=32)
    params = models.JSONField(default=dict, blank=True, help_text="Overrides of the strategy's defaults.")
    effective_params = models.JSONField(default=dict, blank=True)
    symbol = models.CharField(max_length=32)
    source = models.CharField(max_length=300, help_text="backtesting:EURUSD, a CSV path, or db (imported candles).")
    data_from = models.DateTimeField(null=True, blank=True)
    data_to = models.DateTimeField(null=True, blank=True)
    bars = models.PositiveIntegerField(default=0)
    seeds = models.JSONField(default=list)
    ticks_per_bar = models.PositiveIntegerField(default=60)
    tick_interval_ms = models.PositiveIntegerField(default=100)
    accounts = models.JSONField(default=list, help_text="The accounts sized for (equity, currency, risk %, limits).")
    oos_fraction = models.FloatField(default=0.3, help_text="Last share of the bars that is out-of-sample.")
    code_version = models.CharField(max_length=64, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    inputs = models.JSONField(default=dict, blank=True, help_text="Which analyzers had real input.")
    equity = models.JSONField(default=list, blank=True, help_text="[epoch s, equity, drawdown] of the first seed.")
    duration_s = models.FloatField(null=True, blank=True)
    sweep = models.ForeignKey("backtest.Sweep", null=True, blank=True, on_delete=models.CASCADE, related_name="runs")
    sweep_index = models.PositiveIntegerField(null=True, blank=True, help_text="The combination's index in its sweep.")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["sweep", "sweep_index"], name="one_run_per_sweep_combination")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.strategy} {self.symbol} ({self.status})"

    def total(self, segment: str = "all") -> dict:
        return (self.summary or {}).get("aggregate", {}).get(segment, {})


class BacktestTrade(models.Model):
    class Segment(models.TextChoices):
        IN_SAMPLE = "is", "In-sample"
        OUT_OF_SAMPLE = "oos", "Out-of-sample"

    run = models.ForeignKey(BacktestRun, on_delete=models.CASCADE, related_name="trades")
    seed = models.IntegerField()
    account = models.CharField(max_length=64)
    symbol = models.CharField(max_length=32)
    side = models.CharField(max_length=4)
    volume = models.DecimalField(max_digits=20, decimal_places=8)
    open_time = models.DateTimeField(help_text="The open bar's time (real data time).")
    close_time = models.DateTimeField()
    open_price = models.DecimalField(max_digits=20, decimal_places=10)
    close_price = models.DecimalField(max_digits=20, decimal_places=10)
    stop_loss = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True)
    take_profit = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True)
    reason = models.CharField(max_length=16, help_text="sl, tp, time, opposite, end, partial")
    profit = models.DecimalField(max_digits=20, decimal_places=2)
    commission = models.DecimalField(max_digits=20, decimal_places=2)
    net = models.DecimalField(max_digits=20, decimal_places=2)
    pips = models.DecimalField(max_digits=20, decimal_places=1)
    hold_s = models.FloatField(help_text="Time in the trade on the replay clock.")
    segment = models.CharField(max_length=3, choices=Segment.choices)

    class Meta:
        ordering = ["run", "seed", "open_time", "id"]
        indexes = [models.Index(fields=["run", "seed"])]


class Sweep(models.Model):
    """A parameter sweep: one BacktestRun per combination (see backtest.sweeps)."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"

    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    definition = models.JSONField(default=dict, help_text="The base backtest definition (backtest.runner.Definition).")
    combinations = models.JSONField(default=list, help_text="The parameter overrides of each combination, in order.")
    total = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"sweep #{self.pk} ({self.status})"

    def progress(self) -> dict:
        counts = dict(self.runs.values_list("status").annotate(n=models.Count("id")))
        done = counts.get(BacktestRun.Status.DONE, 0) + counts.get(BacktestRun.Status.FAILED, 0)
        return {"total": self.total, "done": done, "failed": counts.get(BacktestRun.Status.FAILED, 0),
                "running": counts.get(BacktestRun.Status.RUNNING, 0)}

    def ranked(self):
        """Finished runs, best out-of-sample score first (in-sample beside it): the mean over the
        walk-forward folds when the runs have them (``metrics.ranking_scores``)."""
        runs = list(self.runs.filter(status=BacktestRun.Status.DONE))
        return sorted(runs, key=lambda r: -(ranking_scores(r.summary)[0] or 0.0))


class StrategyChange(models.Model):
    """Audit of a backtest result applied to the live StrategyConfig: what it was, what it became,
    who did it, from which run; ``undone_at`` once reverted (the revert restores ``before``)."""

    created_at = models.DateTimeField(auto_now_add=True)
    actor = models.CharField(max_length=150)
    config = models.ForeignKey("signals.StrategyConfig", on_delete=models.CASCADE, related_name="backtest_changes")
    run = models.ForeignKey(BacktestRun, null=True, on_delete=models.SET_NULL, related_name="applied")
    before = models.JSONField(help_text="{strategy, params} before the change.")
    after = models.JSONField(help_text="{strategy, params} after the change.")
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor}: run #{self.run_id} → {self.config}"


class Candle(models.Model):
    """Imported broker candles (``manage.py import_candles``), keyed by (symbol, interval, time):
    a re-import never duplicates a candle. Prices and volume are Decimal as the broker sent them."""

    pk = models.CompositePrimaryKey("symbol", "interval", "time")
    symbol = models.CharField(max_length=32)
    interval = models.CharField(max_length=4)
    time = models.DateTimeField(help_text="Open time, UTC.")
    open = models.DecimalField(max_digits=20, decimal_places=10)
    high = models.DecimalField(max_digits=20, decimal_places=10)
    low = models.DecimalField(max_digits=20, decimal_places=10)
    close = models.DecimalField(max_digits=20, decimal_places=10)
    volume = models.DecimalField(max_digits=24, decimal_places=8, default=0)

    class Meta:
        ordering = ["symbol", "interval", "time"]


class CandleImport(models.Model):
    """Progress of one import (symbol, interval, range): where the next chunk starts. Updated in the
    same transaction as the chunk it follows, so a resumed import never skips nor repeats one."""

    symbol = models.CharField(max_length=32)
    interval = models.CharField(max_length=4)
    from_time = models.DateTimeField()
    to_time = models.DateTimeField()
    next_time = models.DateTimeField()
    finished = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["symbol", "interval", "from_time", "to_time"],
                                               name="one_progress_per_import_range")]
