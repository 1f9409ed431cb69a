"""Order-book analyzer: hand-computed imbalance and walls."""

import numpy as np
import pytest

from marketdata.windows import BookSnapshot
from signals.analysis.orderbook import analyse_book, book_imbalance, has_depth, large_orders, level_weights

BOOK = BookSnapshot(
    "T",
    0,
    bid_prices=np.array([99.0, 98.0, 97.0]),
    bid_sizes=np.array([10.0, 4.0, 6.0]),
    ask_prices=np.array([101.0, 102.0, 103.0]),
    ask_sizes=np.array([2.0, 8.0, 3.0]),
)


def test_weights_are_harmonic():
    assert level_weights(3) == pytest.approx([1, 1 / 2, 1 / 3])


def test_imbalance_hand_computed():
    # weights 1, 1/2, 1/3: Wb = 10 + 4/2 + 6/3 = 14, Wa = 2 + 8/2 + 3/3 = 7 -> (14 - 7) / 21 = 1/3
    assert book_imbalance(BOOK.bid_sizes, BOOK.ask_sizes, levels=3) == pytest.approx(1 / 3)
    # top level only: (10 - 2) / 12 = 2/3
    assert book_imbalance(BOOK.bid_sizes, BOOK.ask_sizes, levels=1) == pytest.approx(2 / 3)
    # more levels asked than present: same as 3
    assert book_imbalance(BOOK.bid_sizes, BOOK.ask_sizes, levels=10) == pytest.approx(1 / 3)


def test_imbalance_extremes_and_empty():
    assert book_imbalance(np.array([5.0]), np.array([])) == 1.0
    assert book_imbalance(np.array([]), np.array([5.0])) == -1.0
    assert book_imbalance(np.array([]), np.array([])) == 0.0
    assert book_imbalance(np.array([3.0, 1.0]), np.array([3.0, 1.0])) == 0.0


def test_walls_against_the_median():
    # sizes 10 4 6 2 8 3 -> sorted 2 3 4 6 8 10 -> median (4 + 6) / 2 = 5; 1.5 x 5 = 7.5
    # walls: 10 (bid 99) and 8 (ask 102)
    walls = large_orders(BOOK, multiple=1.5)
    assert walls.typical_size == 5.0
    assert walls.prices.tolist() == [99.0, 102.0]
    assert walls.sizes.tolist() == [10.0, 8.0]
    assert walls.sides.tolist() == [1, -1]
    # strictly greater: with multiple 2 the threshold is 10, and 10 is not > 10
    assert len(large_orders(BOOK, multiple=2.0)) == 0


def test_no_walls_from_too_few_levels():
    thin = BookSnapshot("T", 0, np.array([1.0]), np.array([100.0]), np.array([2.0]), np.array([1.0]))
    assert len(large_orders(thin, multiple=3.0, min_levels=3)) == 0


def test_empty_levels_do_not_drag_the_median_down():
    book = BookSnapshot("T", 0, np.array([1.0, 0.9]), np.array([10.0, 0.0]), np.array([2.0, 2.1]), np.array([10.0, 40.0]))
    # non-empty sizes 10, 10, 40 -> median 10; 40 > 3 x 10
    walls = large_orders(book, multiple=3.0, min_levels=3)
    assert walls.typical_size == 10.0 and walls.prices.tolist() == [2.1]


def test_analyse_book_and_depth():
    f = analyse_book(BOOK, levels=3, wall_multiple=1.5)
    assert f.imbalance == pytest.approx(1 / 3)
    assert (f.best_bid, f.best_ask) == (99.0, 101.0)
    assert len(f.walls) == 2
    assert has_depth(BOOK) and not has_depth(None)
    assert not has_depth(BookSnapshot("T", 0, np.array([]), np.array([]), np.array([1.0]), np.array([1.0])))
