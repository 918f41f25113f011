"""Endpoint filters, table-tested: what matches, what does not, what is refused."""

from typing import Any

import pytest

from hookline.filtering import FilterError, check, matches

MESSAGE = {
    "id": "evt_1",
    "event": "user_send_message",
    "timestamp": "2026-12-03T12:00:00.000000Z",
    "data": {
        "sender": "alice",
        "recipient": "bob",
        "subject": "",
        "total": 12.5,
        "count": 3,
        "paid": True,
        "tags": ["a", "b"],
        "address": {"city": "Oslo"},
        "nothing": None,
    },
}

MATCHING: list[tuple[str, dict[str, Any]]] = [
    ("equality", {"event": "user_send_message"}),
    (
        "the contract's example",
        {"data.recipient": {"$in": ["bob", "carol"]}, "data.sender": {"$ne": ""}},
    ),
    ("$eq", {"data.recipient": {"$eq": "bob"}}),
    ("$ne", {"data.recipient": {"$ne": "alice"}}),
    ("$nin", {"data.recipient": {"$nin": ["alice", "carol"]}}),
    ("$gt on a number", {"data.total": {"$gt": 12}}),
    ("$gte and $lte together", {"data.count": {"$gte": 3, "$lte": 3}}),
    ("$lt on a string", {"data.sender": {"$lt": "bob"}}),
    ("an int equals a float", {"data.count": 3.0}),
    ("a nested path", {"data.address.city": "Oslo"}),
    ("a list index", {"data.tags.1": "b"}),
    ("a whole list", {"data.tags": ["a", "b"]}),
    ("a whole object", {"data.address": {"city": "Oslo"}}),
    ("null equals null", {"data.nothing": None}),
    ("$exists true on a null", {"data.nothing": {"$exists": True}}),
    ("$exists false on a missing path", {"data.missing": {"$exists": False}}),
    ("an empty string", {"data.subject": ""}),
    ("$and", {"$and": [{"data.sender": "alice"}, {"data.recipient": "bob"}]}),
    ("$or", {"$or": [{"data.sender": "carol"}, {"data.recipient": "bob"}]}),
    ("$not", {"$not": {"data.sender": "carol"}}),
    ("a boolean", {"data.paid": True}),
]

NOT_MATCHING: list[tuple[str, dict[str, Any]]] = [
    ("another value", {"data.recipient": "carol"}),
    ("a missing path", {"data.missing": "x"}),
    ("$ne on a missing path", {"data.missing": {"$ne": "x"}}),
    ("$nin on a missing path", {"data.missing": {"$nin": ["x"]}}),
    ("$gt across types", {"data.sender": {"$gt": 1}}),
    ("$lt across types", {"data.total": {"$lt": "z"}}),
    ("a path through a string", {"data.sender.x": "a"}),
    ("an index past the end", {"data.tags.5": "a"}),
    ("true is not 1", {"data.paid": 1}),
    ("1 is not true", {"data.count": True}),
    ("a string is not a number", {"data.count": "3"}),
    ("$exists false on a present path", {"data.sender": {"$exists": False}}),
    ("one key of several fails", {"data.sender": "alice", "data.recipient": "carol"}),
    ("$and with one false", {"$and": [{"data.sender": "alice"}, {"data.recipient": "x"}]}),
    ("$or with none true", {"$or": [{"data.sender": "x"}, {"data.recipient": "y"}]}),
    ("$not of a true one", {"$not": {"data.sender": "alice"}}),
    ("a list is not its element", {"data.tags": "a"}),
]


@pytest.mark.parametrize(("name", "filter_"), MATCHING, ids=[n for n, _ in MATCHING])
def test_matches(name: str, filter_: dict[str, Any]) -> None:
    check(filter_)
    assert matches(filter_, MESSAGE) is True


@pytest.mark.parametrize(("name", "filter_"), NOT_MATCHING, ids=[n for n, _ in NOT_MATCHING])
def test_does_not_match(name: str, filter_: dict[str, Any]) -> None:
    check(filter_)
    assert matches(filter_, MESSAGE) is False


def test_no_filter_passes_everything() -> None:
    assert matches(None, MESSAGE) is True


REFUSED: list[tuple[str, Any, str]] = [
    ("not an object", ["data.x"], "the top"),
    ("an empty object", {}, "the top"),
    ("an unknown operator", {"data.x": {"$regex": "a"}}, "data.x.$regex"),
    ("an unknown combinator", {"$nor": []}, "$nor"),
    ("$in without a list", {"data.x": {"$in": "a"}}, "data.x.$in"),
    ("$exists not a boolean", {"data.x": {"$exists": 1}}, "data.x.$exists"),
    ("$gt on an object", {"data.x": {"$gt": {"a": 1}}}, "data.x.$gt"),
    ("operators mixed with keys", {"data.x": {"$eq": 1, "y": 2}}, "data.x"),
    ("$and not a list", {"$and": {"data.x": 1}}, "$and"),
    ("an empty $or", {"$or": []}, "$or"),
    (
        "a bad filter inside $or",
        {"$or": [{"data.x": 1}, {"data.y": {"$bad": 1}}]},
        "$or[1].data.y.$bad",
    ),
    ("a path outside the envelope", {"payload.x": 1}, "payload.x"),
    ("an empty path part", {"data..x": 1}, "data..x"),
    (
        "too deep",
        {
            "$not": {
                "$not": {
                    "$not": {
                        "$not": {"$not": {"$not": {"$not": {"$not": {"$not": {"event": "x"}}}}}}
                    }
                }
            }
        },
        "$not",
    ),
    ("too many conditions", {"$or": [{"data.x": n} for n in range(101)]}, "the top"),
]


@pytest.mark.parametrize(("name", "filter_", "where"), REFUSED, ids=[n for n, _, _ in REFUSED])
def test_an_invalid_filter_is_refused_saying_where(name: str, filter_: Any, where: str) -> None:
    with pytest.raises(FilterError) as refused:
        check(filter_)

    assert f"Invalid filter at {where}" in str(refused.value)


def test_evaluating_never_raises_even_on_a_filter_that_would_not_pass_the_check() -> None:
    assert matches({"data.x": {"$gt": {"a": 1}}}, {"data": {"x": 1}}) is False
    assert matches({"$and": "not a list"}, MESSAGE) is False
