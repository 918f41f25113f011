import pytest

from hookline.delivery.retry import next_delay

SCHEDULE = [5.0, 300.0, 1800.0]
ALMOST_ONE = 1 - 2**-53  # the largest value random.random() can return


@pytest.mark.parametrize(
    ("attempts_made", "schedule", "jitter", "rand_value", "expected"),
    [
        pytest.param(1, SCHEDULE, 0.0, 0.5, 5.0, id="first retry waits the first step"),
        pytest.param(2, SCHEDULE, 0.0, 0.5, 300.0, id="second retry waits the second step"),
        pytest.param(3, SCHEDULE, 0.0, 0.5, 1800.0, id="last retry waits the last step"),
        pytest.param(4, SCHEDULE, 0.0, 0.5, None, id="gives up after len(schedule) + 1 attempts"),
        pytest.param(9, SCHEDULE, 0.2, 0.5, None, id="stays given up"),
        pytest.param(2, SCHEDULE, 0.2, 0.0, 240.0, id="jitter lower bound"),
        pytest.param(2, SCHEDULE, 0.2, 0.5, 300.0, id="jitter midpoint"),
        pytest.param(2, SCHEDULE, 0.2, ALMOST_ONE, 360.0, id="jitter upper bound"),
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
    delays = [next_delay(2, SCHEDULE, 0.2) for _ in range(200)]
    assert all(d is not None and 240.0 <= d <= 360.0 for d in delays)


def test_zero_attempts_is_a_caller_error() -> None:
    with pytest.raises(ValueError):
        next_delay(0, SCHEDULE, 0.2)
