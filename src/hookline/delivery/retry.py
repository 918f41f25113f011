"""When to try a failed delivery again: a pure policy over the configured schedule."""

import random
from collections.abc import Callable, Sequence


def next_delay(
    attempts_made: int,
    schedule: Sequence[float],
    jitter: float,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Return the seconds to wait before the next attempt, or None when it is time to give up."""
    if attempts_made < 1:
        raise ValueError("attempts_made counts the attempt that just failed, so it is at least 1")
    if attempts_made > len(schedule):
        return None
    # rand() is in [0, 1), so the factor spreads uniformly over [1 - jitter, 1 + jitter).
    factor = 1 - jitter + 2 * jitter * rand()
    return max(0.0, schedule[attempts_made - 1] * factor)
