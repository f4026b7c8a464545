"""Timestamps rendered the way the JVM's ``Instant.toString()`` renders them.

``Instant.toString()`` uses ``DateTimeFormatter.ISO_INSTANT``: UTC, seconds always
printed, and the fraction printed in groups of three digits, as few as the value
needs (none, 3, 6 or 9), then ``Z``. The clock decides how many digits appear: a
JDK 15 or newer on Linux reads ``clock_gettime`` with nanosecond resolution, so most
values have nine digits (JDK 17.0.15 printed ``2026-12-04T20:09:20.994035371Z``).
Older JDKs on Linux read microseconds, and ``System.currentTimeMillis`` milliseconds.
"""

import datetime
import time

#: Clock precision name -> nanoseconds per tick.
PRECISIONS = {"nanos": 1, "micros": 1_000, "millis": 1_000_000}

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def truncate_ns(epoch_ns: int, precision: str) -> int:
    """Drop the digits a clock of ``precision`` does not have."""
    try:
        tick = PRECISIONS[precision]
    except KeyError:
        raise ValueError(f"unknown clock precision {precision!r}; allowed: {', '.join(PRECISIONS)}") from None
    return epoch_ns - epoch_ns % tick


def instant_string(epoch_ns: int) -> str:
    """Render nanoseconds since the epoch exactly as ``Instant.toString()`` does."""
    seconds, nanos = divmod(epoch_ns, 1_000_000_000)
    moment = _EPOCH + datetime.timedelta(seconds=seconds)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")

    # NOTE: years past 9999 get a leading "+" in Java; such clocks are out of scope here.
    if nanos == 0:
        fraction = ""
    elif nanos % 1_000_000 == 0:
        fraction = f".{nanos // 1_000_000:03d}"
    elif nanos % 1_000 == 0:
        fraction = f".{nanos // 1_000:06d}"
    else:
        fraction = f".{nanos:09d}"
    return f"{text}{fraction}Z"


def now_instant(precision: str = "nanos", clock=time.time_ns) -> str:
    """Return ``Instant.now().toString()`` for a JVM whose clock has ``precision``."""
    return instant_string(truncate_ns(clock(), precision))


def parse_instant(text: str) -> datetime.datetime:
    """Parse any ``Instant.toString()`` value (0 to 9 fraction digits) to an aware datetime.

    Python's ``%f`` takes at most six digits, so nanoseconds are cut to microseconds.
    """
    if not text.endswith("Z"):
        raise ValueError(f"{text!r} does not end with Z")
    body = text[:-1]
    whole, _, fraction = body.partition(".")
    if fraction and (not fraction.isdigit() or len(fraction) > 9):
        raise ValueError(f"{text!r} has an invalid fraction")
    moment = datetime.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S")
    micros = int((fraction + "000000000")[:6]) if fraction else 0
    return moment.replace(microsecond=micros, tzinfo=datetime.timezone.utc)
