"""Order-book features: weighted bid/ask imbalance and large resting orders ("walls").

Only used when the source publishes depth; ``book`` is None otherwise (the real Match-Trader
API has none) and the strategy works without these features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marketdata.windows import BookSnapshot

_EMPTY = np.empty(0, dtype=np.float64)


def level_weights(levels: int) -> np.ndarray:
    """Weight of book level i (0 = best): 1 / (i + 1), i.e. 1, 1/2, 1/3, ...

    Harmonic decay: the best level counts most because it is where the next trades happen and
    deep levels are cheap to place and cancel (spoofing); deeper levels still count a little.
    """
    return 1.0 / np.arange(1, levels + 1, dtype=np.float64)


def book_imbalance(bid_sizes: np.ndarray, ask_sizes: np.ndarray, levels: int = 5) -> float:
    """(Wb - Wa) / (Wb + Wa) over the top ``levels`` of each side, Wx = sum_i w_i * size_i.

    In [-1, 1]: +1 only bids, -1 only asks, 0 balanced or empty. A side with fewer levels simply
    contributes fewer terms. Total: a size that is not a finite number >= 0 counts as an empty
    level (a NaN or infinite size used to give NaN, a negative one -4.5); sizes are scaled by
    the largest one first (the ratio does not change), so sizes near 1e308 cannot overflow.
    """
    bids = _valid_sizes(bid_sizes, levels)
    asks = _valid_sizes(ask_sizes, levels)
    top = max(float(bids.max()) if bids.shape[0] else 0.0, float(asks.max()) if asks.shape[0] else 0.0)
    if top <= 0:
        return 0.0
    weights = level_weights(levels)
    wb = float((bids / top) @ weights[: bids.shape[0]])
    wa = float((asks / top) @ weights[: asks.shape[0]])
    total = wb + wa
    return min(max((wb - wa) / total, -1.0), 1.0) if total > 0 else 0.0


def _valid_sizes(sizes, levels: int) -> np.ndarray:
    out = np.asarray(sizes, dtype=np.float64)[:levels]
    with np.errstate(invalid="ignore"):
        good = (out >= 0) & (out < np.inf)
    return out if good.all() else np.where(good, out, 0.0)


@dataclass(frozen=True, slots=True)
class Walls:
    """Large resting orders: price, size and side (+1 bid, -1 ask), best levels first per side."""

    prices: np.ndarray
    sizes: np.ndarray
    sides: np.ndarray
    typical_size: float  # median size of all non-empty levels of both sides

    @classmethod
    def none(cls, typical_size: float = 0.0) -> "Walls":
        return cls(_EMPTY, _EMPTY, np.empty(0, dtype=np.int8), typical_size)

    def __len__(self) -> int:
        return int(self.prices.shape[0])


def _median(values: np.ndarray) -> float:
    """np.median without its ~25 us of dispatch overhead (books have a few dozen levels)."""
    ordered = np.sort(values)
    mid = ordered.shape[0] // 2
    return float(ordered[mid]) if ordered.shape[0] % 2 else float((ordered[mid - 1] + ordered[mid]) / 2)


def large_orders(book: BookSnapshot, multiple: float = 3.0, min_levels: int = 3) -> Walls:
    """Levels whose size is > ``multiple`` x the median size of all non-empty levels (both sides).

    A median of fewer than ``min_levels`` levels says nothing about what is typical: no walls then.
    Levels with a non-finite or non-positive price or size are ignored.
    """
    prices = np.concatenate((book.bid_prices, book.ask_prices)).astype(np.float64, copy=False)
    sizes = np.concatenate((book.bid_sizes, book.ask_sizes)).astype(np.float64, copy=False)
    sides = np.concatenate(
        (np.ones(book.bid_sizes.shape[0], dtype=np.int8), -np.ones(book.ask_sizes.shape[0], dtype=np.int8))
    )
    with np.errstate(invalid="ignore"):
        filled = (sizes > 0) & (sizes < np.inf) & (prices > 0) & (prices < np.inf)
    if int(filled.sum()) < min_levels:
        return Walls.none()
    typical = _median(sizes[filled])
    with np.errstate(invalid="ignore", over="ignore"):
        big = filled & (sizes > multiple * typical)
    return Walls(prices[big], sizes[big], sides[big], typical)


@dataclass(frozen=True, slots=True)
class BookFeatures:
    imbalance: float  # weighted, in [-1, 1]
    walls: Walls
    best_bid: float  # NaN when the side is empty
    best_ask: float


def _best(prices: np.ndarray) -> float:
    """Best price of a side, NaN when the side is empty or its best price is not a finite price > 0."""
    if not prices.shape[0]:
        return float("nan")
    p = float(prices[0])
    return p if 0 < p < float("inf") else float("nan")


def analyse_book(book: BookSnapshot, levels: int = 5, wall_multiple: float = 3.0, wall_min_levels: int = 3) -> BookFeatures:
    return BookFeatures(
        imbalance=book_imbalance(book.bid_sizes, book.ask_sizes, levels),
        walls=large_orders(book, wall_multiple, wall_min_levels),
        best_bid=_best(book.bid_prices),
        best_ask=_best(book.ask_prices),
    )


def has_depth(book: BookSnapshot | None) -> bool:
    """True when there is a book with at least one level on each side."""
    return book is not None and book.bid_sizes.shape[0] > 0 and book.ask_sizes.shape[0] > 0
