"""Time-ordered job ids: UUID version 7 (RFC 9562), as the Java backend's id generator makes."""

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = -1
_counter = 0


def uuid7(clock_ms=None) -> str:
    """Return a new UUIDv7 string; ids made in the same millisecond still sort in creation order.

    The 12-bit ``rand_a`` field carries a counter seeded at random each millisecond
    (RFC 9562, method 1), so one process never hands out two ids out of order.
    """
    global _last_ms, _counter
    ms = clock_ms if clock_ms is not None else time.time_ns() // 1_000_000

    with _lock:
        if ms > _last_ms:
            _last_ms = ms
            _counter = int.from_bytes(os.urandom(2), "big") & 0x7FF
        else:
            # Same millisecond (or the clock stepped back): keep counting on the last one.
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                ms = _last_ms
                _counter = 0
        rand_a = _counter

    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= rand_a << 64
    value |= 0b10 << 62
    value |= rand_b
    return str(uuid.UUID(int=value))


def uuid7_time_ms(job_id: str) -> int:
    """Return the millisecond timestamp inside a UUIDv7."""
    return uuid.UUID(job_id).int >> 80
