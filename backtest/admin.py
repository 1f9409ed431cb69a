"""Backtest runs in the admin: list with the headline numbers, a run page with the summary per
seed and segment, the analyzers' input report, the chart page and CSV/JSON downloads."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from . import apply as applying
from . import metrics, sweeps
from .export import run_json, trades_csv
from .models import BacktestRun, BacktestTrade, StrategyChange, Sweep


def prop_table(summary: dict | None):
    """The breaches the run's prop-firm profile recorded (first seed, up to 100) and the counts per seed."""
    pr = (summary or {}).get("prop")
    if not pr:
        return ""
    seeds = (summary or {}).get("per_seed", {})
    first_seed, first = next(((s, v["prop"]) for s, v in seeds.items() if "prop" in v), (None, {}))
    rows = format_html_join("", "<tr>" + "<td>{}</td>" * 7 + "</tr>",
                            ((b["at"][:19], b["account"], b["rule"], b["value"], b["limit"], b["action"], b["detail"])
                             for b in first.get("breaches", [])[:100]))
    return format_html(
        "<h4>Prop-firm profile {} ({}): breaches per seed {}; by rule (seed {}) {}</h4>"
        "<table><thead><tr><th>time (bar date)</th><th>account</th><th>rule</th><th>value</th><th>limit</th>"
        "<th>action</th><th>detail</th></tr></thead><tbody>{}</tbody></table>",
        pr["profile"], "enforced" if pr["enforced"] else "report only", pr["breaches_per_seed"], first_seed,
        first.get("counts", {}), rows)


def walk_forward_table(summary: dict | None):
    """The run's walk-forward folds (dates, score and median net PnL of each side), or nothing."""
    wf = (summary or {}).get("walk_forward")
    if not wf:
        return ""
    def side(r, seg):
        s = r[seg]
        return (s["from"][:10], s["to"][:10], s["score"], s["spread"].get("net_pnl", {}).get("median", ""),
                s["spread"].get("trades", {}).get("median", ""))
    rows = format_html_join("", "<tr><td>{}</td>" + "<td>{}</td>" * 10 + "</tr>",
                            ((r["fold"], *side(r, "is"), *side(r, "oos")) for r in wf["folds"]))
    return format_html(
        "<h4>Walk-forward: {} folds, in-sample {}× out-of-sample; mean score in-sample {}, out-of-sample {}</h4>"
        "<table><thead><tr><th>fold</th><th>IS from</th><th>IS to</th><th>IS score</th><th>IS net (median)</th>"
        "<th>IS trades</th><th>OOS from</th><th>OOS to</th><th>OOS score</th><th>OOS net (median)</th>"
        "<th>OOS trades</th></tr></thead><tbody>{}</tbody></table>",
        len(wf["folds"]), wf["is_ratio"], wf["score"]["is"], wf["score"]["oos"], rows)


class TradeInline(admin.TabularInline):
    model = BacktestTrade
    extra = 0
    can_delete = False
    max_num = 0
    fields = ("seed", "segment", "account", "side", "volume", "open_time", "open_price", "close_price", "reason",
              "net", "pips", "hold_s")
    readonly_fields = fields
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).filter(seed__in=[s for s in [self._first_seed(request)] if s is not None])

    def _first_seed(self, request):
        pk = request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
        run = BacktestRun.objects.filter(pk=pk).only("seeds").first() if pk else None
        return run.seeds[0] if run and run.seeds else None


def _agg(run: BacktestRun, key: str, segment: str = "all"):
    s = run.total(segment).get(key)
    return "-" if s is None else s["median"]


@admin.register(BacktestRun)
class BacktestRunAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "strategy", "symbol", "status", "bars", "n_seeds", "trades", "win_rate", "net_pnl",
                    "is_score", "oos_score", "created_at")
    list_filter = ("status", "strategy", "symbol")
    search_fields = ("name", "symbol")
    inlines = [TradeInline]
    readonly_fields = [f.name for f in BacktestRun._meta.fields] + ["report", "links"]
    exclude = ("equity", "summary")
    fieldsets = ((None, {"fields": ("links", "report")}),
                 ("Definition", {"fields": ("name", "status", "error", "strategy", "params", "effective_params",
                                            "symbol", "source", "data_from", "data_to", "bars", "seeds",
                                            "ticks_per_bar", "tick_interval_ms", "accounts", "oos_fraction",
                                            "code_version", "duration_s", "inputs", "sweep")}))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="seeds")
    def n_seeds(self, obj):
        return len(obj.seeds or [])

    @admin.display(description="trades (median)")
    def trades(self, obj):
        return _agg(obj, "trades")

    @admin.display(description="win rate")
    def win_rate(self, obj):
        return _agg(obj, "win_rate")

    @admin.display(description="net PnL (median)")
    def net_pnl(self, obj):
        return _agg(obj, "net_pnl")

    @admin.display(description="IS score")
    def is_score(self, obj):
        return metrics.ranking_scores(obj.summary)[1]

    @admin.display(description="OOS score (walk-forward: mean over folds)")
    def oos_score(self, obj):
        return metrics.ranking_scores(obj.summary)[0]

    def links(self, obj):
        return format_html('<a href="{}">chart and trades</a> · <a href="{}">trades CSV</a> · <a href="{}">JSON</a>'
                           ' · <a href="{}">apply to the live strategy…</a>',
                           reverse("backtest-run", args=[obj.pk]),
                           reverse("admin:backtest_backtestrun_csv", args=[obj.pk]),
                           reverse("admin:backtest_backtestrun_json", args=[obj.pk]),
                           reverse("admin:backtest_backtestrun_apply", args=[obj.pk]))

    @admin.display(description="summary")
    def report(self, obj):
        per_seed = (obj.summary or {}).get("per_seed", {})
        keys = ("trades", "win_rate", "expectancy", "profit_factor", "net_pnl", "net_pips", "max_drawdown", "sharpe",
                "sortino", "exposure", "avg_hold_s")
        head = format_html_join("", "<th>{}</th>", ((k,) for k in ("seed", "segment") + keys))
        rows = format_html_join("", "<tr>{}</tr>", (
            (format_html_join("", "<td>{}</td>", ((v,) for v in [seed, seg] + [s.get(k, "") for k in keys])),)
            for seed, segs in per_seed.items() for seg in ("all", "is", "oos") if (s := segs.get(seg))))
        table = format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, rows)
        return format_html("{}{}{}", table, walk_forward_table(obj.summary), prop_table(obj.summary))

    def get_urls(self):
        return [
            path("<int:pk>/csv/", self.admin_site.admin_view(self.csv_view), name="backtest_backtestrun_csv"),
            path("<int:pk>/json/", self.admin_site.admin_view(self.json_view), name="backtest_backtestrun_json"),
            path("<int:pk>/apply/", self.admin_site.admin_view(self.apply_view), name="backtest_backtestrun_apply"),
        ] + super().get_urls()

    def apply_view(self, request, pk):
        """GET: the diff against the live StrategyConfig; POST: apply it (audited, undoable)."""
        run = self.get_object(request, str(pk))
        if run is None:
            return HttpResponse("no such run", status=404)
        if not request.user.has_perm("signals.change_strategyconfig"):
            return HttpResponse("you may not change the strategy configuration", status=403)
        try:
            changes = applying.diff(run)
        except applying.ApplyError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:backtest_backtestrun_change", args=[pk]))
        if request.method == "POST":
            try:
                change = applying.apply(run, request.user.get_username())
            except (applying.ApplyError, ValueError) as exc:
                self.message_user(request, f"Not applied: {exc}", messages.ERROR)
                return HttpResponseRedirect(reverse("admin:backtest_backtestrun_change", args=[pk]))
            self.message_user(request, f"Applied run #{run.pk} to {change.config}. Undo it from the "
                              "strategy changes list.", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:backtest_strategychange_changelist"))
        context = {**self.admin_site.each_context(request), "title": f"Apply backtest #{run.pk} to the live strategy",
                   "run": run, "changes": changes, "opts": self.model._meta}
        return render(request, "backtest/apply.html", context)

    def csv_view(self, request, pk):
        run = self.get_object(request, str(pk))
        if run is None:
            return HttpResponse("no such run", status=404)
        resp = HttpResponse(trades_csv(run), content_type="text/csv")
        resp["Content-Disposition"] = f'attachment; filename="backtest-{pk}-trades.csv"'
        return resp

    def json_view(self, request, pk):
        run = self.get_object(request, str(pk))
        if run is None:
            return HttpResponse("no such run", status=404)
        resp = HttpResponse(run_json(run), content_type="application/json")
        resp["Content-Disposition"] = f'attachment; filename="backtest-{pk}.json"'
        return resp


@admin.register(Sweep)
class SweepAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "progress_text", "created_at")
    readonly_fields = ("status", "progress_text", "ranking", "definition", "combinations", "total", "created_at")
    actions = ["cancel_sweeps"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="progress")
    def progress_text(self, obj):
        p = obj.progress()
        return f"{p['done']}/{p['total']} done, {p['running']} running, {p['failed']} failed"

    @admin.display(description="ranking (out-of-sample score, in-sample beside it)")
    def ranking(self, obj):
        rows = format_html_join("", '<tr><td>{}</td><td><a href="{}">#{}</a></td><td>{}</td><td>{}</td><td>{}</td>'
                                    '<td><code>{}</code></td></tr>',
                                ((rank, reverse("admin:backtest_backtestrun_change", args=[r["run"]]), r["run"],
                                  r["oos"], r["is"], r["trades"], r["params"])
                                 for rank, r in enumerate(sweeps.ranking(obj), 1)))
        return format_html("<table><thead><tr><th>rank</th><th>run</th><th>OOS score</th><th>IS score</th>"
                           "<th>trades</th><th>parameters</th></tr></thead><tbody>{}</tbody></table>", rows)

    @admin.action(description="Cancel the selected sweeps")
    def cancel_sweeps(self, request, queryset):
        n = sum(sweeps.cancel(s) for s in queryset.filter(status=Sweep.Status.RUNNING))
        self.message_user(request, f"Cancelled; {n} combination(s) will not run.")


@admin.register(StrategyChange)
class StrategyChangeAdmin(admin.ModelAdmin):
    list_display = ("created_at", "actor", "config", "run", "change", "undone_at", "undo_link")
    readonly_fields = ("created_at", "actor", "config", "run", "before", "after", "undone_at", "undone_by")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="after")
    def change(self, obj):
        return f"{obj.after.get('strategy')} {obj.after.get('params')}"

    @admin.display(description="undo")
    def undo_link(self, obj):
        if obj.undone_at:
            return "undone"
        return format_html('<form method="post" action="{}"><input type="hidden" name="csrfmiddlewaretoken" '
                           'value="__csrf__"><button type="submit">undo</button></form>',
                           reverse("admin:backtest_strategychange_undo", args=[obj.pk]))

    def changelist_view(self, request, extra_context=None):
        from django.middleware.csrf import get_token

        response = super().changelist_view(request, extra_context)
        if hasattr(response, "render"):
            response.render()
            response.content = response.content.replace(b"__csrf__", get_token(request).encode())
        return response

    def get_urls(self):
        return [path("<int:pk>/undo/", self.admin_site.admin_view(self.undo_view), name="backtest_strategychange_undo")
                ] + super().get_urls()

    def undo_view(self, request, pk):
        if request.method != "POST":
            return HttpResponse("POST only", status=405)
        if not request.user.has_perm("signals.change_strategyconfig"):
            return HttpResponse("you may not change the strategy configuration", status=403)
        change = StrategyChange.objects.filter(pk=pk).first()
        if change is None:
            return HttpResponse("no such change", status=404)
        try:
            applying.undo(change, request.user.get_username())
            self.message_user(request, f"Undone: {change.config} is back to {change.before}.", messages.SUCCESS)
        except applying.ApplyError as exc:
            self.message_user(request, f"Not undone: {exc}", messages.ERROR)
        return HttpResponseRedirect(reverse("admin:backtest_strategychange_changelist"))
