"""The SVG chart builders are pure: exact coordinates for hand-made series."""

import re

from dashboard import charts
from dashboard.charts import Box, Series


def test_linear_scale_maps_ends_and_middle():
    s = charts.linear_scale((0, 10), (100, 200))
    assert (s(0), s(5), s(10)) == (100, 150, 200)
    inverted = charts.linear_scale((0, 10), (200, 100))  # SVG y grows downwards
    assert (inverted(0), inverted(10)) == (200, 100)


def test_degenerate_domain_maps_to_the_middle():
    s = charts.linear_scale((5, 5), (0, 100))
    assert s(5) == 50


def test_path_d_for_a_hand_made_series():
    # x: 0..100 → 10..110 ; y: 0..10 → 60..10 (inverted)
    sx = charts.linear_scale((0, 100), (10, 110))
    sy = charts.linear_scale((0, 10), (60, 10))
    d = charts.path_d([(0, 0), (50, 5), (100, 10)], sx, sy)
    assert d == "M10.00,60.00 L60.00,35.00 L110.00,10.00"


def test_line_chart_places_points_inside_the_plot_area():
    box = Box(width=200, height=100, left=20, right=10, top=10, bottom=20)
    # y values 100..200 padded by 5 % of the span (5) → domain 95..205
    svg = charts.line_chart([Series("eq", [(0, 100.0), (60, 150.0), (120, 200.0)])], box=box)
    d = re.search(r'class="series" d="([^"]+)"', svg).group(1)
    points = [tuple(map(float, p[1:].split(","))) for p in d.split()]
    # x: 0 → left (20), 120 → width - right (190)
    assert points[0][0] == 20.0 and points[-1][0] == 190.0 and points[1][0] == 105.0
    # y: plot from 10 (top) to 80 (bottom); 100 → 80 - (100-95)/110*70
    assert points[0][1] == round(80 - 5 / 110 * 70, 2)
    assert points[2][1] == round(80 - 105 / 110 * 70, 2)
    assert points[1][1] == 45.0  # 150 is the middle of 95..205
    assert 'viewBox="0 0 200 100"' in svg


def test_empty_series_draws_a_placeholder_with_the_reason():
    svg = charts.line_chart([Series("eq", [])], empty_message="No equity yet")
    assert "No equity yet" in svg and 'class="series"' not in svg


def test_stacked_bars_stack_in_order_with_exact_heights():
    box = Box(width=200, height=100, left=20, right=0, top=0, bottom=20)
    # two buckets of 60 s: bucket 0 has 2 filled + 1 rejected, bucket 1 has 4 filled
    svg = charts.stacked_bar_chart([0, 60], {"filled": [2, 4], "rejected": [1, 0]}, box=box, bucket_seconds=60)
    rects = re.findall(r'<rect class="bar" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)" '
                       r'fill="([^"]+)"', svg)
    # nice ticks 0..4 → the y domain is 0..4 over 80 units: 20 units per order
    assert [(float(y), float(h)) for _, y, _, h, _ in rects] == [(40.0, 40.0), (20.0, 20.0), (0.0, 80.0)]
    assert rects[0][4] == charts.STATUS_COLORS["filled"] and rects[1][4] == charts.STATUS_COLORS["rejected"]
    # x: window 0..120 s over 20..200; bucket 60 starts at 110; bars are 1 unit narrower than a bucket
    assert [float(r[0]) for r in rects] == [20.0, 20.0, 110.0]
    assert float(rects[0][2]) == 89.0


def test_hbar_negative_values_extend_left_of_zero():
    box = Box(width=300, height=100, left=100, right=0, top=0, bottom=0)
    svg = charts.hbar_chart([("EURUSD", 2.0), ("XAUUSD", -1.0)], box=box, row_height=20)
    rects = re.findall(r'<rect class="bar" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', svg)
    # domain -1..2 over 100..300: zero at 166.67; +2 spans 166.67..300; -1 spans 100..166.67
    assert rects[0] == ("166.67", "133.33")
    assert rects[1] == ("100.00", "66.67")


def test_labels_are_escaped():
    svg = charts.hbar_chart([("<script>", 1.0)])
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_nice_ticks():
    assert charts.nice_ticks(0, 4, 4) == [0, 2, 4]
    assert charts.nice_ticks(0, 100, 5) == [0, 25, 50, 75, 100]
    assert charts.nice_ticks(5, 5) == [5]


def test_path_breaks_over_a_gap_in_the_data():
    sx = charts.linear_scale((0, 100), (0, 100))
    sy = charts.linear_scale((0, 10), (10, 0))
    d = charts.path_d([(0, 0), (10, 1), (80, 2), (90, 3)], sx, sy, max_gap=30)
    assert d == "M0.00,10.00 L10.00,9.00 M80.00,8.00 L90.00,7.00"
