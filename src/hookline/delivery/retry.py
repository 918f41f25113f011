"""Reading a receiver's `Retry-After` header (the wait it asks for; `policy` decides with it)."""

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# Answers whose Retry-After header is honoured (RFC 9110: 503; 429 by RFC 6585 practice).
RETRY_AFTER_STATUSES = frozenset({429, 503})
_ASCTIME = re.compile(r"^[A-Za-z]{3} [A-Za-z]{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$")


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
