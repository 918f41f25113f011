"""When to try a failed delivery again: a pure policy over the configured schedule."""

import random
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# Answers whose Retry-After header is honoured (RFC 9110: 503; 429 by RFC 6585 practice).
RETRY_AFTER_STATUSES = frozenset({429, 503})
_ASCTIME = re.compile(r"^[A-Za-z]{3} [A-Za-z]{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$")


def next_delay(
    attempts_made: int,
    schedule: Sequence[float],
    jitter: float,
    rand: Callable[[], float] = random.random,
    *,
    retry_after: float | None = None,
) -> float | None:
    """Return the seconds to wait before the next attempt, or None when it is time to give up.

    A receiver's `retry_after` lengthens the wait (never shortens it), capped at the longest
    step of the schedule, so one answer cannot park a delivery for days.
    """
    if attempts_made < 1:
        raise ValueError("attempts_made counts the attempt that just failed, so it is at least 1")
    if attempts_made > len(schedule):
        return None
    # rand() is in [0, 1), so the factor spreads uniformly over [1 - jitter, 1 + jitter).
    factor = 1 - jitter + 2 * jitter * rand()
    delay = max(0.0, schedule[attempts_made - 1] * factor)
    if retry_after is not None:
        delay = max(delay, min(retry_after, max(schedule)))
    return delay


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a `Retry-After` value (delay-seconds or an HTTP date); None if absent
    or unreadable. A date in the past means no wait."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # Naive for asctime dates, GMT by definition (RFC 9110 §5.6.7), and for a "-0000" or
        # missing zone, which no HTTP date has.
        if not _ASCTIME.match(value):
            return None
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
