"""Timestamps must render exactly as JDK 17's Instant.toString() does."""

import datetime

import pytest

from sandbox.contract.timestamps import instant_string, now_instant, parse_instant, truncate_ns

# Pairs printed by `java T.java` on OpenJDK 17.0.15 (Instant.ofEpochSecond(s, n).toString()).
JDK_RENDERINGS = [
    (1_000_000_000 + 120_000_000, "1970-01-01T00:00:01.120Z"),
    (1_000_000_000 + 123_400, "1970-01-01T00:00:01.000123400Z"),
    (1_735_689_600 * 10**9, "2025-01-01T00:00:00Z"),
    (1_796_414_960_994_035_371, "2026-12-04T20:09:20.994035371Z"),
    (1_796_414_960_994_035_000, "2026-12-04T20:09:20.994035Z"),
]


@pytest.mark.parametrize("epoch_ns, expected", JDK_RENDERINGS)
def test_instant_string_matches_jdk(epoch_ns, expected):
    assert instant_string(epoch_ns) == expected


@pytest.mark.parametrize(
    "precision, expected",
    [
        ("nanos", "2026-12-04T20:09:20.994035371Z"),
        ("micros", "2026-12-04T20:09:20.994035Z"),
        ("millis", "2026-12-04T20:09:20.994Z"),
    ],
)
def test_clock_precision_truncates(precision, expected):
    assert now_instant(precision, clock=lambda: 1_796_414_960_994_035_371) == expected


def test_unknown_precision_rejected():
    with pytest.raises(ValueError, match="allowed: nanos, micros, millis"):
        truncate_ns(1, "picos")


def test_parse_instant_accepts_nine_digits():
    parsed = parse_instant("2026-12-04T20:09:20.994035371Z")
    assert parsed == datetime.datetime(2026, 12, 4, 20, 9, 20, 994035, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize("bad", ["2026-12-04T20:09:20", "2026-12-04T20:09:20.12345678901Z", "yesterday"])
def test_parse_instant_rejects_garbage(bad):
    with pytest.raises(ValueError):
        parse_instant(bad)
