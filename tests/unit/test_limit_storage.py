"""The in-memory rate-limit storage sweeps expired keys without a timer thread."""

import threading
from datetime import timedelta

from freezegun import freeze_time
from limits import parse
from limits.strategies import FixedWindowRateLimiter

from authserver.limits import InlineSweepMemoryStorage


def test_counts_and_refuses_like_the_library_storage():
    limiter = FixedWindowRateLimiter(InlineSweepMemoryStorage())
    item = parse("3 per minute")
    assert [limiter.hit(item, "rs:shim") for _ in range(4)] == [True, True, True, False]
    assert limiter.hit(item, "rs:other")


def test_hits_start_no_threads():
    storage = InlineSweepMemoryStorage()
    limiter = FixedWindowRateLimiter(storage)
    # The constructor's one-off timer (inherited) ends by itself.
    storage.timer.join(timeout=5)
    before = threading.active_count()
    item = parse("100000 per minute")
    for _ in range(2000):
        limiter.hit(item, "rs:shim")
    assert threading.active_count() == before


def test_expired_keys_are_swept_inline():
    with freeze_time("2026-11-26 12:00:00") as clock:
        storage = InlineSweepMemoryStorage()
        storage.SWEEP_INTERVAL = 0  # sweep on every change, for the test
        limiter = FixedWindowRateLimiter(storage)
        item = parse("5 per minute")
        for n in range(50):
            limiter.hit(item, f"client:{n}")
        assert len(storage.storage) == 50
        clock.tick(timedelta(seconds=61))
        limiter.hit(item, "client:new")
        # Only the new key is left: memory stays bounded by the live window.
        assert list(storage.storage) == ["LIMITER/client:new/5/1/minute"]
