import threading

import pytest

from matchtrader.ratelimit import TokenBucket


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.sleeps.append(s)
        self.now += s


def test_never_more_than_500_in_any_minute():
    clock = FakeClock()
    bucket = TokenBucket(clock=clock, sleep=clock.sleep, high_reserve=0)
    stamps = []
    for _ in range(1200):
        bucket.acquire()
        stamps.append(clock.now)
    # sliding 60 s windows
    j = 0
    for i, t in enumerate(stamps):
        while stamps[j] <= t - 60:
            j += 1
        assert i - j + 1 <= 500
    assert stamps[49] == 0.0 and stamps[50] > 0  # burst of 50, then paced


def test_high_priority_uses_the_reserve_normal_waits():
    clock = FakeClock()
    bucket = TokenBucket(rate_per_minute=60, burst=10, high_reserve=3, clock=clock, sleep=clock.sleep)
    for _ in range(7):
        bucket.acquire()
    assert clock.now == 0.0
    assert bucket.try_acquire() > 0  # normal traffic may not touch the reserve
    for _ in range(3):
        bucket.acquire(priority="high")
    assert clock.now == 0.0
    bucket.acquire(priority="high")  # reserve exhausted: waits one token (1 s at 60/min)
    assert clock.now == pytest.approx(1.0)


def test_thread_safe_counts():
    clock = FakeClock()
    lock = threading.Lock()
    bucket = TokenBucket(rate_per_minute=60, burst=40, high_reserve=0, clock=lambda: clock.now, sleep=lambda s: None)
    got = []

    def worker():
        for _ in range(20):
            if bucket.try_acquire() == 0:
                with lock:
                    got.append(1)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 40  # exactly the burst, no double-spend


def test_bad_parameters():
    with pytest.raises(ValueError):
        TokenBucket(burst=5, high_reserve=5)
