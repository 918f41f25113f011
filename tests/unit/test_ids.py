import re

import pytest

from hookline.ids import new_id


@pytest.mark.parametrize("prefix", ["usr", "msg", "wh", "evt", "dlv"])
def test_ids_carry_their_type_prefix(prefix):
    assert re.fullmatch(rf"{prefix}_[0-9A-HJKMNP-TV-Z]{{26}}", new_id(prefix))


def test_ids_made_later_sort_later_even_within_one_millisecond():
    ids = [new_id("evt") for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
