"""The delivery policy as one pure function: where an attempt's outcome leaves its delivery."""

from datetime import UTC, datetime
from typing import Any

import pytest

from hookline.config import Settings
from hookline.delivery.policy import GONE_REASON, Decision, decide, next_delay
from hookline.delivery.sender import Outcome
from hookline.store.status import Status

STARTED = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = Settings(_env_file=None, retry_schedule=(10.0, 60.0), retry_jitter=0.2)


def answered(status_code: int | None, *, retry_after: float | None = None) -> Outcome:
    if status_code is not None and 200 <= status_code < 300:
        return Outcome(started_at=STARTED, duration_ms=5, status_code=status_code)
    kind = "timeout" if status_code is None else "http_status"
    return Outcome(
        started_at=STARTED,
        duration_ms=5,
        status_code=status_code,
        error_kind=kind,
        retry_after=retry_after,
    )


PENDING, SUCCEEDED, FAILED = Status.PENDING, Status.SUCCEEDED, Status.FAILED


@pytest.mark.parametrize(
    ("outcome", "attempt", "options", "expected"),
    [
        pytest.param(answered(200), 1, {}, Decision(SUCCEEDED), id="2xx succeeds"),
        pytest.param(answered(204), 3, {}, Decision(SUCCEEDED), id="2xx after retries"),
        pytest.param(answered(200), 1, {"probe": True}, Decision(SUCCEEDED), id="ping answered"),
        pytest.param(answered(500), 1, {}, Decision(PENDING, 10.0), id="5xx waits step 1"),
        pytest.param(answered(404), 2, {}, Decision(PENDING, 60.0), id="4xx waits step 2"),
        pytest.param(answered(None), 1, {}, Decision(PENDING, 10.0), id="no answer is retried"),
        pytest.param(
            answered(500), 1, {"rand": lambda: 0.0}, Decision(PENDING, 8.0), id="jitter down"
        ),
        pytest.param(
            answered(503, retry_after=30.0), 1, {}, Decision(PENDING, 30.0), id="Retry-After"
        ),
        pytest.param(
            answered(429, retry_after=900.0),
            1,
            {},
            Decision(PENDING, 60.0),
            id="Retry-After capped at the longest step",
        ),
        pytest.param(
            answered(503, retry_after=1.0),
            2,
            {},
            Decision(PENDING, 60.0),
            id="Retry-After never shortens a step",
        ),
        pytest.param(answered(500), 3, {}, Decision(FAILED), id="schedule used up"),
        pytest.param(
            Outcome(STARTED, 1, error_kind="forbidden_destination", error="private address"),
            1,
            {},
            Decision(FAILED),
            id="a forbidden destination fails at once",
        ),
        pytest.param(
            answered(503, retry_after=5.0), 3, {}, Decision(FAILED), id="used up, Retry-After"
        ),
        pytest.param(answered(500), 1, {"probe": True}, Decision(FAILED), id="ping never retried"),
        pytest.param(answered(None), 1, {"probe": True}, Decision(FAILED), id="ping timed out"),
        pytest.param(
            answered(410), 1, {}, Decision(FAILED, None, GONE_REASON), id="410 disables at once"
        ),
        pytest.param(
            answered(410),
            3,
            {},
            Decision(FAILED, None, GONE_REASON),
            id="410 on the last attempt disables too",
        ),
        pytest.param(
            answered(410),
            1,
            {"probe": True},
            Decision(FAILED, None, GONE_REASON),
            id="410 to a ping disables",
        ),
    ],
)
def test_decide(
    outcome: Outcome, attempt: int, options: dict[str, Any], expected: Decision
) -> None:
    options = {"rand": lambda: 0.5, **options}
    assert decide(outcome, attempt, SETTINGS, **options) == expected


def test_decide_retries_on_the_configured_schedule_with_jitter_by_default() -> None:
    delays = {decide(answered(500), 1, SETTINGS).delay for _ in range(50)}
    assert all(d is not None and 8.0 <= d <= 12.0 for d in delays)
    assert len(delays) > 1


# The schedule's arithmetic


STEPS = [5.0, 300.0, 1800.0]
ALMOST_ONE = 1 - 2**-53  # the largest value random.random() can return


@pytest.mark.parametrize(
    ("attempts_made", "schedule", "jitter", "rand_value", "expected"),
    [
        pytest.param(1, STEPS, 0.0, 0.5, 5.0, id="first retry waits the first step"),
        pytest.param(2, STEPS, 0.0, 0.5, 300.0, id="second retry waits the second step"),
        pytest.param(3, STEPS, 0.0, 0.5, 1800.0, id="last retry waits the last step"),
        pytest.param(4, STEPS, 0.0, 0.5, None, id="gives up after len(schedule) + 1 attempts"),
        pytest.param(9, STEPS, 0.2, 0.5, None, id="stays given up"),
        pytest.param(2, STEPS, 0.2, 0.0, 240.0, id="jitter lower bound"),
        pytest.param(2, STEPS, 0.2, 0.5, 300.0, id="jitter midpoint"),
        pytest.param(2, STEPS, 0.2, ALMOST_ONE, 360.0, id="jitter upper bound"),
        pytest.param(1, [], 0.2, 0.5, None, id="empty schedule gives up after the first attempt"),
        pytest.param(1, [10.0], 1.5, 0.0, 0.0, id="never negative"),
    ],
)
def test_next_delay(
    attempts_made: int,
    schedule: list[float],
    jitter: float,
    rand_value: float,
    expected: float | None,
) -> None:
    delay = next_delay(attempts_made, schedule, jitter, rand=lambda: rand_value)
    if expected is None:
        assert delay is None
    else:
        assert delay == pytest.approx(expected)


def test_default_jitter_stays_within_bounds() -> None:
    delays = [next_delay(2, STEPS, 0.2) for _ in range(200)]
    assert all(d is not None and 240.0 <= d <= 360.0 for d in delays)


def test_zero_attempts_is_a_caller_error() -> None:
    with pytest.raises(ValueError):
        next_delay(0, STEPS, 0.2)


# Retry-After and the schedule


SHORT = (0.2, 3.0)


@pytest.mark.parametrize(
    ("attempts_made", "schedule", "retry_after", "expected"),
    [
        pytest.param(1, SHORT, 2.0, 2.0, id="lengthens a shorter step"),
        pytest.param(2, SHORT, 1.0, 3.0, id="never shortens a longer step"),
        pytest.param(1, SHORT, 0.0, 0.2, id="zero keeps the step"),
        pytest.param(1, SHORT, None, 0.2, id="absent keeps the step"),
        pytest.param(1, SHORT, 100.0, 3.0, id="capped at the longest step"),
        pytest.param(1, (0.2, 1.0, 0.5), 100.0, 1.0, id="cap is the longest step, not the last"),
        pytest.param(1, SHORT, float("inf"), 3.0, id="an endless wait is capped too"),
        pytest.param(2, SHORT, 3.0, 3.0, id="equal to the step"),
        pytest.param(3, SHORT, 2.0, None, id="gives up when the schedule is exhausted"),
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
