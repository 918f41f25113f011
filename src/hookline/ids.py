"""Prefixed, time-sortable ids: `usr_` + 26 Crockford base32 chars (48-bit ms time, 80 bits)."""

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


# Every 10 bits as their two characters (base64.b32encode, on 3.11, is a Python loop too).
_PAIRS = tuple(high + low for high in _ALPHABET for low in _ALPHABET)
_TEN = 0x3FF
_FORTY = 0xFF_FFFF_FFFF


def _encode(ms: int, rand: int) -> str:
    """26 characters: the 128 bits of (ms, rand) as 130 bits, two leading zeros: the 48 bits
    of `ms` as the first 10 characters, the 80 of `rand` as the other 16."""
    p, high, low = _PAIRS, rand >> 40, rand & _FORTY
    return (
        p[ms >> 40]
        + p[(ms >> 30) & _TEN]
        + p[(ms >> 20) & _TEN]
        + p[(ms >> 10) & _TEN]
        + p[ms & _TEN]
        + p[high >> 30]
        + p[(high >> 20) & _TEN]
        + p[(high >> 10) & _TEN]
        + p[high & _TEN]
        + p[low >> 30]
        + p[(low >> 20) & _TEN]
        + p[(low >> 10) & _TEN]
        + p[low & _TEN]
    )


def new_id(prefix: str) -> str:
    """A new id; ids made later in this process sort after earlier ones, even within 1 ms."""
    global _last_ms, _last_rand
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms <= _last_ms:
            now_ms = _last_ms
            rand = _last_rand + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # headroom for increments
        _last_ms, _last_rand = now_ms, rand
    return f"{prefix}_{_encode(now_ms, rand)}"


def lowest_at(prefix: str, at_ms: int) -> str:
    """The lowest id `new_id(prefix)` makes at `at_ms` (ms since the epoch): every id made then
    or later sorts after it, so a range of ids from it is a range of time (a primary key's)."""
    return f"{prefix}_{_encode(at_ms, 0)}"
