"""The one backoff formula: doubling from the base, capped, and full jitter inside it."""

import random

from hypothesis import given
from hypothesis import strategies as st

from tradeops.backoff import exponential, full_jitter


def test_first_retry_waits_the_base_and_each_later_one_twice_as_long_up_to_the_cap():
    assert [exponential(n, 0.05, 2.0) for n in range(1, 8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0]
    assert exponential(0, 1.0, 60.0) == 1.0  # attempt 0 counts as the first retry
    assert exponential(100, 1.0, 60.0) == 60.0


@given(attempt=st.integers(1, 60), base=st.floats(0.01, 5), cap=st.floats(0.01, 120), seed=st.integers(0, 2**32))
def test_full_jitter_stays_within_zero_and_the_capped_exponential(attempt, base, cap, seed):
    wait = full_jitter(attempt, base, cap, random.Random(seed))
    assert 0 <= wait <= min(cap, exponential(attempt, base, cap))


def test_full_jitter_spreads_many_clients_retrying_together():
    rng = random.Random(7)
    waits = [full_jitter(4, 0.5, 5.0, rng) for _ in range(1000)]
    assert min(waits) < 0.5 and max(waits) > 3.5  # across [0, 4], not bunched at one instant
