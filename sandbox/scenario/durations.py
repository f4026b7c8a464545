"""Durations and rates as scenario files write them: `500ms`, `1.5m`, `20/s`, `600/min`."""

import math
import re

#: Seconds per duration unit.
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}

#: Seconds per rate unit (the denominator of `<number>/<unit>`).
RATE_UNITS = {"s": 1.0, "min": 60.0}

#: Highest rate a scenario may ask for, in messages per second.
MAX_RATE_PER_S = 1_000_000.0

DURATION_FORMS = "<number>ms, <number>s, <number>m, <number>h, <number>d or a number of seconds"
RATE_FORMS = "<number>/s or <number>/min"

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_DURATION = re.compile(rf"{_NUMBER}\s*(ms|s|min|m|h|d)?")
_RATE = re.compile(rf"{_NUMBER}\s*/\s*(s|min)")


class FormatError(ValueError):
    """Text that matches none of the accepted forms (as opposed to a value out of range)."""


def parse_duration(value: str | int | float) -> float:
    """Convert `500ms`, `2s`, `1.5m`, `1h`, `1d` or a bare number of seconds into seconds.

    Raises FormatError for text in no accepted form and ValueError for a negative
    or non-finite number.
    """
    if isinstance(value, bool):
        raise FormatError(f"{value!r} is not a duration; use {DURATION_FORMS}")

    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match is None:
            raise FormatError(f"{value!r} is not a duration; use {DURATION_FORMS}")
        number, unit = match.groups()
        seconds = float(number) * DURATION_UNITS[unit or "s"]
    else:
        raise FormatError(f"{value!r} is not a duration; use {DURATION_FORMS}")

    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a finite duration")
    if seconds < 0:
        raise ValueError(f"{value!r} is negative; a duration must be 0 or more")
    return seconds


def parse_rate(text: str) -> float:
    """Convert `20/s` or `600/min` into messages per second.

    Raises FormatError for text in no accepted form and ValueError for a rate
    that is 0 or above MAX_RATE_PER_S.
    """
    match = _RATE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise FormatError(f"{text!r} is not a rate; use {RATE_FORMS}")

    number, unit = match.groups()
    per_s = float(number) / RATE_UNITS[unit]

    if per_s <= 0:
        raise ValueError(f"{text!r} is not a usable rate; a rate must be greater than 0")
    if per_s > MAX_RATE_PER_S:
        raise ValueError(f"{text!r} is too high; the maximum rate is {MAX_RATE_PER_S:.0f}/s")
    return per_s
