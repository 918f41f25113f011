"""What an attempt's outcome means for its delivery: the whole rule, as one pure function.

`decide` says whether the delivery succeeded, waits for another try (and how long), failed for
good, or failed and takes its endpoint down with it (410 Gone). The worker only applies it.
"""

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hookline.config import Settings
from hookline.delivery.sender import Outcome
from hookline.store.status import Status

GONE = 410
GONE_REASON = "the receiver answered 410 Gone"
FORBIDDEN_DESTINATION = "forbidden_destination"


@dataclass(slots=True)  # made per attempt: not frozen, whose __init__ costs ~7x
class Decision:
    status: Status
    # Seconds until the next attempt, counted on the database's clock; only while pending.
    delay: float | None = None
    # Disable the endpoint, for this reason (its pending deliveries are cancelled).
    disable_reason: str | None = None


SUCCEEDED = Decision(Status.SUCCEEDED)
FAILED = Decision(Status.FAILED)
GONE_FOR_GOOD = Decision(Status.FAILED, disable_reason=GONE_REASON)


def decide(
    outcome: Outcome,
    attempt_number: int,
    settings: Settings,
    *,
    probe: bool = False,
    rand: Callable[[], float] = random.random,
) -> Decision:
    """Where attempt `attempt_number` (1 for the first) leaves its delivery.

    A probe (a ping) is a one-off check: never tried again, whatever it got.
    """
    if outcome.ok:
        return SUCCEEDED
    if outcome.status_code == GONE:
        return GONE_FOR_GOOD
    # The URL points where webhooks may not go: the schedule would only ask again and again.
    if probe or outcome.error_kind == FORBIDDEN_DESTINATION:
        return FAILED
    delay = next_delay(
        attempt_number,
        settings.retry_schedule,
        settings.retry_jitter,
        rand,
        retry_after=outcome.retry_after,
    )
    return FAILED if delay is None else Decision(Status.PENDING, delay=delay)


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
