"""Standard Webhooks signatures (https://www.standardwebhooks.com), pure and free of I/O."""

import base64
import functools
import hmac
import secrets as _secrets
import time
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"


def generate_secret() -> str:
    """Return a new random endpoint secret in the `whsec_<base64>` form."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(24)).decode("ascii")


@functools.lru_cache(maxsize=4096)  # the worker signs with the same few secrets again and again
def secret_key(secret: str) -> bytes:
    """Return the HMAC key of a secret, with or without its prefix; ValueError when malformed."""
    # Re-pad, so secrets written without their trailing "=" (as some senders do) decode too.
    unpadded = secret.removeprefix(SECRET_PREFIX).rstrip("=")
    try:
        key = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except ValueError as exc:  # binascii.Error, or non-ASCII text
        raise ValueError("webhook secret is not valid base64") from exc
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def _digest(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    # hmac.digest: OpenSSL's one-shot HMAC, the same bytes as hmac.new(...).digest() for less.
    return hmac.digest(key, f"{msg_id}.{timestamp}.".encode() + body, "sha256")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the `v1,<base64 HMAC-SHA256>` signature of one message."""
    digest = _digest(secret_key(secret), msg_id, str(timestamp), body)
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the `webhook-signature` value: one signature per secret, space-separated."""
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)


def verify(
    secret: str,
    msg_id: str,
    timestamp: str,
    signature_header: str,
    body: bytes,
    *,
    tolerance: int = 300,
    now: float | None = None,
) -> bool:
    """Tell whether a received webhook is signed with `secret` and recent enough; never raises."""
    # Only plain ASCII digits: int() would also take "+1", " 1" or "1_0", which the sender
    # did not sign in that spelling.
    if not (timestamp.isascii() and timestamp.isdigit()):
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        return False
    try:
        key = secret_key(secret)
    except ValueError:
        return False
    expected = _digest(key, msg_id, timestamp, body)
    for versioned in signature_header.split():
        version, _, encoded = versioned.partition(",")
        if version != SIGNATURE_VERSION:
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except ValueError:
            continue
        if hmac.compare_digest(expected, candidate):
            return True
    return False
