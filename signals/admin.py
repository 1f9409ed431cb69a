"""Admin of signals and of the strategy parameters.

StrategyConfig editing: the parameters are a JSON object of overrides. The change form shows
every parameter with its effective value (defaults ← default row ← this symbol's row), default,
allowed range and documentation (``StrategyParams.describe()``), and validates the JSON, the keys,
the types and ranges — and, for a symbol row, the merge with the default row, since that merge is
what the analysis will run (a merge that fails is ignored there, with a logged error).
"""

from __future__ import annotations

import difflib
import json

from django import forms
from django.contrib import admin
from django.db.models import Count, Max, Q
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from prop.admin import StrategyOwnerInline

from . import hops
from .models import Signal, StrategyConfig
from .strategies import DEFAULT_STRATEGY, get_strategy, strategy_choices
from .strategy import StrategyParams, StrategyParamsError


@admin.register(Signal)
class SignalAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "symbol", "side", "strength", "status", "latency", "tick_to_trade",
                    "delivered", "orders_summary", "fanout", "exits_summary", "entry_price", "stop_loss", "take_profit")
    list_filter = ("side", "status", "symbol")
    search_fields = ("symbol__name",)
    date_hierarchy = "created_at"
    list_select_related = ("symbol",)
    readonly_fields = [f.name for f in Signal._meta.fields if f.name != "hops"] + [
        "latency", "delivered", "delivery_outcomes", "orders_summary", "fanout", "exits_summary",
        "where_did_the_time_go"]

    def get_queryset(self, request):
        """The fan-out's outcome per signal in the same query as the page (no query per row)."""
        orders, pairs = "orders", "deliveries"
        opens = Q(orders__purpose="open")  # signal orders; exit orders (closes) are counted apart
        exits = Q(orders__purpose="close")
        return super().get_queryset(request).annotate(
            n_orders=Count(orders, filter=opens, distinct=True),
            n_filled=Count(orders, filter=opens & Q(orders__status="filled"), distinct=True),
            n_not_sent=Count(orders, filter=opens & Q(orders__status__in=["skipped", "failed", "rejected"]),
                             distinct=True),
            n_exits=Count(orders, filter=exits, distinct=True),
            n_exits_done=Count(orders, filter=exits & Q(orders__status__in=["filled", "cancelled", "skipped"]),
                               distinct=True),
            last_completed=Max("orders__completed_at", filter=opens),
            # the fan-out record (orders.Delivery): every account of the mode, one outcome each
            n_pairs=Count(pairs, distinct=True),
            n_delivered=Count(pairs, filter=Q(deliveries__outcome="filled"), distinct=True),
            n_missed=Count(pairs, filter=Q(deliveries__outcome="missed"), distinct=True),
            n_pending=Count(pairs, filter=Q(deliveries__outcome="pending"), distinct=True),
        )

    @admin.display(description="exit orders: done / all")
    def exits_summary(self, obj):
        if not getattr(obj, "n_exits", 0):
            return "-"
        url = (reverse("admin:orders_order_changelist")
               + f"?signal__id__exact={obj.pk}&purpose__exact=close")
        return format_html('<a href="{}">{} / {}</a>', url, obj.n_exits_done, obj.n_exits)
    @admin.display(description="delivered")
    def delivered(self, obj):
        """"delivered N of M", M counting every account of the mode (excluded ones as skipped)."""
        total = getattr(obj, "n_pairs", 0)
        if not total:
            return "-"
        extra = []
        if obj.n_missed:
            extra.append(f"{obj.n_missed} missed")
        if obj.n_pending:
            extra.append(f"{obj.n_pending} pending")
        return f"{obj.n_delivered} of {total}" + (f" ({', '.join(extra)})" if extra else "")

    @admin.display(description="outcomes (missed by cause)")
    def delivery_outcomes(self, obj):
        rows = obj.deliveries.values("outcome", "reason").annotate(n=Count("id")).order_by("outcome", "-n")
        if not rows:
            return "-"
        return format_html_join(mark_safe("<br>"), "{}: {} × {}",
                                ((r["outcome"], r["reason"] or "–", r["n"]) for r in rows))

    @admin.display(description="tick→signal (ms)")
    def latency(self, obj):
        value = obj.latency_ms
        return "-" if value is None else f"{value:.0f}"

    @admin.display(description="signal orders: filled / not sent / all")
    def orders_summary(self, obj):
        if not getattr(obj, "n_orders", 0):
            return "-"
        url = reverse("admin:orders_order_changelist") + f"?signal__id__exact={obj.pk}"
        return format_html('<a href="{}">{} / {} / {}</a>', url, obj.n_filled, obj.n_not_sent, obj.n_orders)

    @admin.display(description="signal→last order done (s)")
    def fanout(self, obj):
        done = getattr(obj, "last_completed", None)
        if done is None or obj.created_at is None:
            return "-"
        return f"{(done - obj.created_at).total_seconds():.2f}"

    @admin.display(description="venue tick→last broker answer (ms)")
    def tick_to_trade(self, obj):
        b = hops.breakdown(obj.hops or {})
        if "to_last_answer_ms" not in b:
            return "-"
        return f"{b['to_last_answer_ms']:.0f} ({b['path'] or '?'})"

    @admin.display(description="where did the time go")
    def where_did_the_time_go(self, obj):
        """One row per hop from the venue tick to the broker's answers (``signals.hops``)."""
        h = obj.hops or {}
        b = hops.breakdown(h)
        if not b["steps"] and not b["orders"]:
            return "no hop timestamps (a signal recorded before they were kept)"
        rows = [(hops.LABELS.get(a, a), hops.LABELS.get(z, z), f"{ms:.1f}") for a, z, ms in b["steps"]]
        if b["orders"]:
            rows.append(("dispatch", f"first / last order task start ({b['orders']} orders)",
                         f"{b.get('dispatch_to_first_task_ms', 0):.1f} / {b.get('dispatch_to_last_task_ms', 0):.1f}"))
            rows.append(("HTTP send", "broker answer (slowest order)", f"{b.get('slowest_broker_ms', 0):.1f}"))
        totals = [(label, f"{b[key]:.1f}") for key, label in (
            ("to_signal_ms", "venue tick → signal"), ("to_first_answer_ms", "venue tick → first broker answer"),
            ("to_last_answer_ms", "venue tick → last broker answer")) if key in b]
        return format_html(
            '<p>path: <b>{}</b> (event: woken by the feed\'s pre-screen; beat: found by the 1 s pass)</p>'
            '<table><tr><th>from</th><th>to</th><th>ms</th></tr>{}</table><table>{}</table>',
            b["path"] or "?",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td style='text-align:right'>{}</td></tr>", rows),
            format_html_join("", "<tr><th>{}</th><td style='text-align:right'>{}</td></tr>", totals))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):  # history: viewable, never edited by hand
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class PrettyJSONField(forms.JSONField):
    """Indented, key-sorted JSON in the textarea: one parameter per line."""

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, cls=self.encoder)


def _default_row_params(name: str, exclude_pk=None, strategy: str | None = None) -> dict:
    qs = StrategyConfig.objects.filter(name=name, symbol__isnull=True, enabled=True).exclude(pk=exclude_pk)
    if strategy is not None:
        qs = qs.filter(strategy=strategy)  # another strategy's keys do not apply
    row = qs.values_list("params", flat=True).first()
    return row if isinstance(row, dict) else {}


def _validate(params: dict, strategy: str | None = None) -> str | None:
    try:
        get_strategy(strategy).parse_params(params)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def params_problems(params: dict, strategy: str | None = None) -> list[str]:
    """Every problem of an overrides object at once (``from_dict`` stops at the first): unknown
    keys with a close match suggested, each bad value, then rules between parameters."""
    names = list(get_strategy(strategy).describe())
    problems = []
    for key in sorted(set(params) - set(names)):
        close = difflib.get_close_matches(key, names, n=1)
        problems.append(f"unknown parameter {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    known = {k: v for k, v in params.items() if k in names}
    for key, value in sorted(known.items()):
        error = _validate({key: value}, strategy)
        if error and error.startswith(f"{key}:"):  # the value itself (type, range, choices)
            problems.append(error)
    if not problems:
        error = _validate(known, strategy)  # rules between parameters, e.g. ema_fast < ema_slow
        if error:
            problems.append(error)
    return problems


class StrategyConfigForm(forms.ModelForm):
    params = PrettyJSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 12, "cols": 80, "class": "tradeops-mono"}),  # no style="": CSP
        help_text='Overrides of the defaults, e.g. {"surge_min_ratio": 4.0, "cooldown_ms": 30000}. '
                  "Every parameter, its default, range and meaning are listed below.",
    )

    class Meta:
        model = StrategyConfig
        fields = ("name", "symbol", "enabled", "strategy", "params")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["strategy"] = forms.ChoiceField(
            choices=strategy_choices(), required=False, initial=DEFAULT_STRATEGY,
            help_text=StrategyConfig._meta.get_field("strategy").help_text)

    def clean_strategy(self):
        value = self.cleaned_data.get("strategy") or DEFAULT_STRATEGY
        try:
            get_strategy(value)
        except StrategyParamsError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return value

    def clean_params(self):
        value = self.cleaned_data.get("params")
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError(
                "Parameters must be a JSON object of name: value pairs, e.g. {\"surge_min_ratio\": 4.0}."
            )
        strategy = self.cleaned_data.get("strategy")
        try:
            get_strategy(strategy)
        except StrategyParamsError:
            return value  # clean_strategy reports it
        problems = params_problems(value, strategy)
        if problems:
            raise forms.ValidationError(problems)
        return value

    def clean(self):
        cleaned = super().clean()
        params, name = cleaned.get("params"), cleaned.get("name")
        if params is None or name is None or "params" in self.errors:
            return cleaned
        strategy = cleaned.get("strategy")
        if "strategy" in self.errors:
            return cleaned
        if cleaned.get("symbol") is not None:
            error = _validate({**_default_row_params(name, strategy=strategy), **params}, strategy)
            if error:
                self.add_error("params", f"Combined with the default row of {name!r}: {error}")
        else:
            rows = (StrategyConfig.objects.filter(name=name, symbol__isnull=False, enabled=True, strategy=strategy)
                    .exclude(pk=self.instance.pk).select_related("symbol"))
            for row in rows:
                error = _validate({**params, **(row.params if isinstance(row.params, dict) else {})}, strategy)
                if error:
                    self.add_error("params", f"Combined with the row of {row.symbol.name}: {error}")
        return cleaned


def _range(meta: dict) -> str:
    if meta["choices"]:
        return " | ".join(meta["choices"])
    lo, hi = meta["min"], meta["max"]
    if lo is None and hi is None:
        return "—"
    return f"{'' if lo is None else lo} … {'' if hi is None else hi}"


@admin.register(StrategyConfig)
class StrategyConfigAdmin(admin.ModelAdmin):
    form = StrategyConfigForm
    inlines = [StrategyOwnerInline]
    list_display = ("name", "symbol", "strategy", "enabled", "overrides", "updated_at")
    list_filter = ("enabled", "name")
    search_fields = ("name", "symbol__name")
    list_select_related = ("symbol",)
    readonly_fields = ("parameter_reference",)
    fieldsets = (
        (None, {"fields": ("name", "symbol", "enabled", "strategy", "params")}),
        ("Effective parameters", {
            "fields": ("parameter_reference",),
            "description": "Defaults, overridden by the default row (symbol empty), overridden by a symbol's row. "
                           "Bold: set by this row; italic: inherited from the default row.",
        }),
    )

    @admin.display(description="overrides")
    def overrides(self, obj):
        params = obj.params if isinstance(obj.params, dict) else {}
        if not params:
            return "defaults"
        return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))

    @admin.display(description="parameters")
    def parameter_reference(self, obj):
        own = obj.params if obj is not None and isinstance(obj.params, dict) else {}
        try:
            strategy = get_strategy(obj.strategy if obj is not None else None)
        except StrategyParamsError:
            strategy = get_strategy(None)
        base = (_default_row_params(obj.name, exclude_pk=obj.pk, strategy=strategy.name)
                if obj is not None and obj.symbol_id else {})
        merged = {**base, **own}
        try:
            effective = strategy.parse_params(merged).to_dict()
            note = ""
        except (ValueError, TypeError) as exc:
            effective = strategy.default_params().to_dict()
            note = format_html('<p class="errornote">These overrides are invalid and the analysis uses the '
                               "defaults: {}</p>", exc)
        def shown(name):
            if name in own:
                return format_html("<strong>{}</strong>", effective[name])
            if name in base:
                return format_html('<em title="from the default row">{}</em>', effective[name])
            return effective[name]

        rows = format_html_join(
            "\n",
            '<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            ((name, shown(name), meta["default"], _range(meta), meta["doc"])
             for name, meta in strategy.describe().items()),
        )
        return format_html(
            '{}<table class="strategy-params"><thead><tr><th>parameter</th><th>effective</th><th>default</th>'
            "<th>allowed</th><th>meaning</th></tr></thead><tbody>{}</tbody></table>",
            note, rows,
        )
