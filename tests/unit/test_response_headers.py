"""What an attempt keeps of an answer's headers: capped in number and size, storable."""

from hookline.delivery.sender import (
    RESPONSE_HEADERS_BYTES,
    RESPONSE_HEADERS_LIMIT,
    kept_headers,
)


def test_names_are_lowercased_and_repeated_headers_joined() -> None:
    kept = kept_headers([("Set-Cookie", "a=1"), ("X-One", "1"), ("set-cookie", "b=2")])

    assert kept == {"set-cookie": "a=1, b=2", "x-one": "1"}


def test_at_most_the_limit_of_headers_is_kept() -> None:
    many = [(f"x-h{n}", "v") for n in range(RESPONSE_HEADERS_LIMIT + 30)]

    kept = kept_headers(many)

    assert list(kept) == [name for name, _ in many[:RESPONSE_HEADERS_LIMIT]]


def test_headers_past_the_size_limit_are_dropped() -> None:
    big = "v" * 1000
    kept = kept_headers([(f"x-h{n}", big) for n in range(10)])

    assert 0 < len(kept) < 10
    assert sum(len(k) + len(v) for k, v in kept.items()) <= RESPONSE_HEADERS_BYTES
    assert all(value == big for value in kept.values())


def test_undecodable_bytes_and_nul_become_storable_text() -> None:
    kept = kept_headers([("X-Bytes", "caf\udce9"), ("X-Nul", "a\x00b")])

    assert kept["x-bytes"] == "caf?"
    assert kept["x-nul"] == "a\ufffdb"
    kept["x-bytes"].encode()  # no surrogate left
