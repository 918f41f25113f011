"""Retry-After: reading the header (how it stretches the schedule is in test_policy.py)."""

from datetime import UTC, datetime

import pytest

from hookline.delivery.retry import parse_retry_after

NOW = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)  # a Monday


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("2", 2.0, id="delay-seconds"),
        pytest.param("0", 0.0, id="zero seconds means now"),
        pytest.param(" 5 ", 5.0, id="surrounding whitespace is ignored"),
        pytest.param("120", 120.0, id="more than the schedule is read as given"),
        pytest.param(None, None, id="no header"),
        pytest.param("", None, id="empty header"),
        pytest.param("   ", None, id="blank header"),
        pytest.param("-1", None, id="negative seconds are not delay-seconds"),
        pytest.param("+5", None, id="a sign is not delay-seconds"),
        pytest.param("1.5", None, id="fractional seconds are not delay-seconds"),
        pytest.param("5 s", None, id="a unit is not delay-seconds"),
        pytest.param("abc", None, id="words"),
        pytest.param("\u0663", None, id="non-ASCII digits"),
        pytest.param("Mon, 01 Jan 2024 12:00:10 GMT", 10.0, id="IMF-fixdate ten seconds ahead"),
        pytest.param("Mon, 01 Jan 2024 11:00:00 GMT", 0.0, id="a date in the past means no wait"),
        pytest.param("Mon, 01 Jan 2024 12:00:00 GMT", 0.0, id="a date equal to now"),
        pytest.param("Monday, 01-Jan-24 12:00:10 GMT", 10.0, id="obsolete RFC 850 date"),
        pytest.param("Mon, 01 Jan 2024 13:00:10 +0100", 10.0, id="a numeric zone is honoured"),
        pytest.param("Mon, 32 Jan 2024 12:00:10 GMT", None, id="impossible day"),
        pytest.param("Mon, 01 Jan 2024 25:00:10 GMT", None, id="impossible hour"),
        pytest.param("Mon, 99 Foo 2024 12:00:10 GMT", None, id="garbage date"),
        # Not an HTTP date (IMF-fixdate always says GMT), and its zone is unknown: ignored.
        pytest.param("Mon, 01 Jan 2024 12:00:10", None, id="date without zone"),
        pytest.param("Mon, 01 Jan 2024 12:00:10 -0000", None, id="date in an unknown zone"),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_parse_retry_after_reads_obsolete_asctime_date_as_gmt() -> None:
    assert parse_retry_after("Mon Jan  1 12:00:10 2024", NOW) == 10.0
