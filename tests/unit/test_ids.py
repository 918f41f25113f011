import re

import pytest

from hookline.ids import _encode, new_id


@pytest.mark.parametrize("prefix", ["usr", "msg", "wh", "evt", "dlv"])
def test_ids_carry_their_type_prefix(prefix):
    assert re.fullmatch(rf"{prefix}_[0-9A-HJKMNP-TV-Z]{{26}}", new_id(prefix))


def test_ids_made_later_sort_later_even_within_one_millisecond():
    ids = [new_id("evt") for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    ("ms", "rand", "encoded"),
    [
        (0, 0, "0" * 26),
        (1, 0, "0" * 9 + "1" + "0" * 16),
        (0, 31, "0" * 25 + "Z"),
        (2**48 - 1, 2**80 - 1, "7" + "Z" * 25),
        # The ULID spec's example time, 1469918176385 ms, is "01ARYZ6S41".
        (1469918176385, 0, "01ARYZ6S41" + "0" * 16),
    ],
)
def test_ids_are_crockford_base32_of_time_then_randomness(ms, rand, encoded):
    assert _encode(ms, rand) == encoded
