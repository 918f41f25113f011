"""Retry-After: reading the header, and how it stretches the retry schedule (CONTRACT §7)."""

from datetime import UTC, datetime

import pytest

from hookline.delivery.retry import next_delay, parse_retry_after

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


SCHEDULE = (0.2, 3.0)


@pytest.mark.parametrize(
    ("attempts_made", "schedule", "retry_after", "expected"),
    [
        pytest.param(1, SCHEDULE, 2.0, 2.0, id="lengthens a shorter step"),
        pytest.param(2, SCHEDULE, 1.0, 3.0, id="never shortens a longer step"),
        pytest.param(1, SCHEDULE, 0.0, 0.2, id="zero keeps the step"),
        pytest.param(1, SCHEDULE, None, 0.2, id="absent keeps the step"),
        pytest.param(1, SCHEDULE, 100.0, 3.0, id="capped at the longest step"),
        pytest.param(1, (0.2, 1.0, 0.5), 100.0, 1.0, id="cap is the longest step, not the last"),
        pytest.param(1, SCHEDULE, float("inf"), 3.0, id="an endless wait is capped too"),
        pytest.param(2, SCHEDULE, 3.0, 3.0, id="equal to the step"),
        pytest.param(3, SCHEDULE, 2.0, None, id="gives up when the schedule is exhausted"),
        pytest.param(1, (), 2.0, None, id="gives up with an empty schedule"),
    ],
)
def test_next_delay_with_retry_after(
    attempts_made: int,
    schedule: tuple[float, ...],
    retry_after: float | None,
    expected: float | None,
) -> None:
    delay = next_delay(attempts_made, schedule, 0.0, rand=lambda: 0.5, retry_after=retry_after)
    if expected is None:
        assert delay is None
    else:
        assert delay == pytest.approx(expected)


@pytest.mark.parametrize(
    ("rand_value", "retry_after", "expected"),
    [
        pytest.param(0.0, 9.0, 9.0, id="lengthens a step jittered down"),
        pytest.param(0.0, 7.0, 8.0, id="keeps a jittered step that is longer"),
        pytest.param(0.75, 10.5, 11.0, id="keeps a step jittered up (to 11)"),
        pytest.param(0.75, 12.0, 12.0, id="lengthens a step jittered up (to 11)"),
        pytest.param(0.75, 100.0, 60.0, id="capped at the longest step without jitter"),
    ],
)
def test_retry_after_applies_after_jitter(
    rand_value: float, retry_after: float, expected: float
) -> None:
    delay = next_delay(1, (10.0, 60.0), 0.2, rand=lambda: rand_value, retry_after=retry_after)
    assert delay == pytest.approx(expected)
