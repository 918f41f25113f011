"""Prefixed, time-sortable ids: `usr_` + 26 Crockford base32 chars (48-bit ms time, 80 bits)."""

import base64
import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


# RFC 4648 base32 to Crockford's alphabet: b32encode does the bit work in C.
_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())


def _encode(ms: int, rand: int) -> str:
    """26 characters: the 128 bits of (ms, rand) as 130 bits, two leading zeros."""
    value = (ms << 80) | rand
    return base64.b32encode((value << 30).to_bytes(20, "big"))[:26].translate(_CROCKFORD).decode()


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
