"""Server-side SVG charts: pure functions from numbers to SVG markup.

No JavaScript library and nothing from the internet: the server owns the data and draws it.
Every function here is pure (numbers in, a string out) so the coordinates can be tested exactly.

Coordinate system: a chart is ``box.width`` × ``box.height`` user units (the SVG scales to its
container through ``viewBox``); the plot area is the box minus its margins. ``x`` grows to the
right, ``y`` grows downwards, so the largest value sits at ``box.top``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

# A palette readable on white, distinct for the first eight series (Tableau 10, minus greys).
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
STATUS_COLORS = {
    # signals
    "new": "#76b7b2", "dispatched": "#4e79a7", "expired": "#bab0ac",
    # orders
    "filled": "#59a14f", "accepted": "#8cd17d", "submitted": "#4e79a7", "pending": "#a0cbe8",
    "rejected": "#e15759", "failed": "#b6403f", "skipped": "#bab0ac", "cancelled": "#9d9d9d",
    "unknown": "#f28e2b",
}
TOTAL_COLOR = "#1f2d3d"


@dataclass(frozen=True, slots=True)
class Box:
    """Chart size and the margins around its plot area, in SVG user units."""

    width: float = 640
    height: float = 220
    left: float = 64
    right: float = 16
    top: float = 14
    bottom: float = 26

    @property
    def plot_width(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_height(self) -> float:
        return self.height - self.top - self.bottom


@dataclass(frozen=True, slots=True)
class Series:
    """A named line: ``points`` are (x, y) pairs, x usually epoch seconds, sorted by x."""

    name: str
    points: Sequence[tuple[float, float]]
    color: str = ""
    width: float = 1.5


def linear_scale(domain: tuple[float, float], out: tuple[float, float]) -> Callable[[float], float]:
    """Map ``domain`` linearly onto ``out``. A degenerate domain (lo == hi) maps to the middle of
    ``out`` so a flat or single-point series is still drawn."""
    d0, d1 = domain
    r0, r1 = out
    if d1 == d0:
        mid = (r0 + r1) / 2
        return lambda _v: mid
    k = (r1 - r0) / (d1 - d0)
    return lambda v: r0 + (v - d0) * k


def nice_ticks(lo: float, hi: float, count: int = 5, integer: bool = False) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 × 10^n steps) covering [lo, hi], about ``count`` of them;
    ``integer``: never a fractional step (counts)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        return [lo]
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1, math.ceil(step))
    first = math.ceil(lo / step) * step
    ticks, v = [], first
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    return ticks


def padded_domain(values: Sequence[float], pad: float = 0.05, include_zero: bool = False) -> tuple[float, float]:
    """The range of ``values`` widened by ``pad`` of its span on both sides (so lines don't touch
    the frame); a flat series gets ±0.5 % (or ±1) around its value."""
    lo, hi = min(values), max(values)
    if include_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    span = hi - lo
    if span == 0:
        half = abs(hi) * 0.005 or 1.0
        return lo - half, hi + half
    return lo - span * pad, hi + span * pad


def path_d(points: Sequence[tuple[float, float]], sx: Callable[[float], float], sy: Callable[[float], float],
           max_gap: float | None = None) -> str:
    """SVG path data ``M x,y L x,y ...`` with two decimals. Where consecutive x values are more
    than ``max_gap`` apart (the system was down, no data), the line breaks (a new ``M``) instead
    of drawing a straight line over the hole."""
    parts = []
    prev_x = None
    for x, y in points:
        move = prev_x is None or (max_gap is not None and x - prev_x > max_gap)
        parts.append(f"{'M' if move else 'L'}{sx(x):.2f},{sy(y):.2f}")
        prev_x = x
    return " ".join(parts)


def fmt_number(v: float) -> str:
    """Compact axis label: 1.2M, 35.5k, 980, 1.085, 0.0012."""
    a = abs(v)
    if a >= 1e7:
        return f"{v / 1e6:.2f}M".replace(".00M", "M")
    if a >= 1e4:
        return f"{v:,.0f}"
    if a >= 100 or v == int(v):
        return f"{v:.0f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.4g}"


def fmt_time(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%H:%M")


def _svg_open(box: Box, label: str, css_class: str) -> str:
    return (
        f'<svg class="chart {css_class}" viewBox="0 0 {box.width:g} {box.height:g}" '
        f'preserveAspectRatio="xMidYMid meet" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg">'
    )


def empty_chart(message: str, box: Box = Box(), label: str = "chart") -> str:
    """A framed placeholder saying why there is nothing to draw."""
    return (
        _svg_open(box, label, "chart-empty")
        + f'<rect class="frame" x="{box.left:g}" y="{box.top:g}" width="{box.plot_width:g}" '
        f'height="{box.plot_height:g}" fill="#fafbfc" stroke="#e3e6ea"/>'
        f'<text x="{box.left + box.plot_width / 2:.2f}" y="{box.top + box.plot_height / 2:.2f}" '
        f'text-anchor="middle" dominant-baseline="middle" fill="#8a94a0" font-size="13">{escape(message)}</text>'
        "</svg>"
    )


def _y_axis(box: Box, ticks: Sequence[float], sy, fmt: Callable[[float], str]) -> list[str]:
    out = []
    for t in ticks:
        y = sy(t)
        out.append(
            f'<line class="grid" x1="{box.left:g}" x2="{box.width - box.right:g}" y1="{y:.2f}" y2="{y:.2f}" '
            f'stroke="#eef0f3"/>'
            f'<text x="{box.left - 6:g}" y="{y:.2f}" text-anchor="end" dominant-baseline="middle" '
            f'font-size="11" fill="#5f6b7a">{escape(fmt(t))}</text>'
        )
    return out


def _x_time_axis(box: Box, lo: float, hi: float, sx, count: int = 6) -> list[str]:
    out = []
    if hi <= lo:
        ticks = [lo]
    else:
        # time ticks on whole minutes
        span = hi - lo
        step = next((s for s in (60, 120, 300, 600, 900, 1800, 3600, 7200, 14400) if span / s <= count), 21600)
        ticks = [t for t in range(int(math.ceil(lo / step) * step), int(hi) + 1, step)]
    y = box.height - box.bottom
    for t in ticks:
        x = sx(t)
        out.append(
            f'<line class="tick" x1="{x:.2f}" x2="{x:.2f}" y1="{y:g}" y2="{y + 4:g}" stroke="#9aa5b1"/>'
            f'<text x="{x:.2f}" y="{y + 16:g}" text-anchor="middle" font-size="11" fill="#5f6b7a">{fmt_time(t)}</text>'
        )
    return out


def line_chart(
    series: Sequence[Series],
    box: Box = Box(),
    label: str = "line chart",
    y_format: Callable[[float], str] = fmt_number,
    empty_message: str = "No data yet",
    zero_line: bool = False,
    max_gap: float | None = None,
) -> str:
    """Lines sharing a time x axis and a value y axis, with gridlines. ``zero_line``: the y axis
    includes 0 and draws it darker (for changes/P&L)."""
    drawn = [s for s in series if s.points]
    if not drawn:
        return empty_chart(empty_message, box, label)
    xs = [x for s in drawn for x, _ in s.points]
    ys = [y for s in drawn for _, y in s.points]
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = padded_domain(ys, include_zero=zero_line)
    sx = linear_scale((x_lo, x_hi), (box.left, box.width - box.right))
    sy = linear_scale((y_lo, y_hi), (box.height - box.bottom, box.top))
    parts = [_svg_open(box, label, "chart-line")]
    parts += _y_axis(box, nice_ticks(y_lo, y_hi, 5), sy, y_format)
    parts += _x_time_axis(box, x_lo, x_hi, sx)
    if zero_line:
        parts.append(f'<line class="zero" x1="{box.left:g}" x2="{box.width - box.right:g}" y1="{sy(0):.2f}" '
                     f'y2="{sy(0):.2f}" stroke="#9aa5b1" stroke-dasharray="4 3"/>')
    for i, s in enumerate(drawn):
        color = s.color or PALETTE[i % len(PALETTE)]
        if len(s.points) == 1:
            x, y = s.points[0]
            parts.append(f'<circle class="point" cx="{sx(x):.2f}" cy="{sy(y):.2f}" r="3" fill="{color}">'
                         f"<title>{escape(s.name)}</title></circle>")
            continue
        parts.append(
            f'<path class="series" d="{path_d(s.points, sx, sy, max_gap)}" fill="none" stroke="{color}" '
            f'stroke-width="{s.width:g}" stroke-linejoin="round" stroke-linecap="round">'
            f"<title>{escape(s.name)}: {escape(y_format(s.points[-1][1]))}</title></path>"
        )
    parts.append(
        f'<rect class="frame" x="{box.left:g}" y="{box.top:g}" width="{box.plot_width:g}" '
        f'height="{box.plot_height:g}" fill="none" stroke="#d5dae0"/>'
    )
    parts.append("</svg>")
    return "".join(parts)


def stacked_bar_chart(
    buckets: Sequence[float],
    stacks: dict[str, Sequence[float]],
    box: Box = Box(),
    label: str = "stacked bars",
    colors: dict[str, str] | None = None,
    bucket_seconds: float = 60,
    empty_message: str = "Nothing in this window",
) -> str:
    """One bar per time bucket (epoch seconds, the bucket start), stacked by key (e.g. status).

    ``stacks[key][i]`` is the count of ``key`` in ``buckets[i]``. Bars span the whole window at
    ``bucket_seconds`` each, so an empty minute shows as a gap, not as a squeezed axis.
    """
    colors = {**STATUS_COLORS, **(colors or {})}
    totals = [sum(stacks[k][i] for k in stacks) for i in range(len(buckets))]
    if not buckets or not any(totals):
        return empty_chart(empty_message, box, label)
    x_lo, x_hi = min(buckets), max(buckets) + bucket_seconds
    sx = linear_scale((x_lo, x_hi), (box.left, box.width - box.right))
    y_hi = max(totals)
    ticks = nice_ticks(0, y_hi, 4, integer=True)
    if ticks and ticks[-1] < y_hi:  # the last tick is the top of the scale
        ticks.append(ticks[-1] + (ticks[1] - ticks[0] if len(ticks) > 1 else 1))
    top = max(y_hi, ticks[-1] if ticks else y_hi)
    sy = linear_scale((0, top), (box.height - box.bottom, box.top))
    bar_w = max(sx(x_lo + bucket_seconds) - sx(x_lo) - 1.0, 1.0)
    parts = [_svg_open(box, label, "chart-bars")]
    parts += _y_axis(box, ticks, sy, fmt_number)
    parts += _x_time_axis(box, x_lo, x_hi - bucket_seconds, sx)
    for i, b in enumerate(buckets):
        base = 0.0
        x = sx(b)
        for key in stacks:
            n = stacks[key][i]
            if not n:
                continue
            y_top, y_bottom = sy(base + n), sy(base)
            parts.append(
                f'<rect class="bar" x="{x:.2f}" y="{y_top:.2f}" width="{bar_w:.2f}" height="{y_bottom - y_top:.2f}" '
                f'fill="{colors.get(key, "#9c755f")}"><title>{fmt_time(b)} {escape(key)}: {n:g}</title></rect>'
            )
            base += n
    parts.append(
        f'<line class="axis" x1="{box.left:g}" x2="{box.width - box.right:g}" y1="{sy(0):.2f}" y2="{sy(0):.2f}" '
        f'stroke="#9aa5b1"/>'
    )
    parts.append("</svg>")
    return "".join(parts)


def hbar_chart(
    items: Sequence[tuple[str, float]],
    box: Box | None = None,
    label: str = "bars",
    value_format: Callable[[float], str] = fmt_number,
    positive_color: str = "#4e79a7",
    negative_color: str = "#e15759",
    empty_message: str = "Nothing to show",
    row_height: float = 22,
) -> str:
    """Horizontal bars, one per (label, value); negative values extend left of a zero line
    (net short exposure), positive ones right. The height grows with the number of rows."""
    if not items:
        return empty_chart(empty_message, box or Box(height=120), label)
    box = box or Box(height=16 + row_height * len(items) + 10, left=90, right=70, top=8, bottom=10)
    values = [v for _, v in items]
    lo, hi = min(min(values), 0.0), max(max(values), 0.0)
    if lo == hi:
        hi = 1.0
    sx = linear_scale((lo, hi), (box.left, box.width - box.right))
    zero = sx(0.0)
    parts = [_svg_open(box, label, "chart-hbar")]
    for i, (name, v) in enumerate(items):
        y = box.top + i * row_height
        x0, x1 = sorted((zero, sx(v)))
        color = positive_color if v >= 0 else negative_color
        parts.append(
            f'<text x="{box.left - 8:g}" y="{y + row_height / 2:.2f}" text-anchor="end" dominant-baseline="middle" '
            f'font-size="12" fill="#2d3748">{escape(name)}</text>'
            f'<rect class="bar" x="{x0:.2f}" y="{y + 3:.2f}" width="{max(x1 - x0, 1.0):.2f}" '
            f'height="{row_height - 6:.2f}" fill="{color}" rx="2"><title>{escape(name)}: {escape(value_format(v))}'
            f"</title></rect>"
            f'<text x="{max(x1, zero) + 6:.2f}" y="{y + row_height / 2:.2f}" dominant-baseline="middle" '
            f'font-size="11" fill="#5f6b7a">{escape(value_format(v))}</text>'
        )
    parts.append(
        f'<line class="axis" x1="{zero:.2f}" x2="{zero:.2f}" y1="{box.top:g}" '
        f'y2="{box.top + row_height * len(items):g}" stroke="#9aa5b1"/>'
    )
    parts.append("</svg>")
    return "".join(parts)


def legend(entries: Sequence[tuple[str, str]]) -> list[dict]:
    """(name, color) pairs for the HTML legend under a chart (HTML, not SVG, so it wraps)."""
    return [{"name": n, "color": c} for n, c in entries]
