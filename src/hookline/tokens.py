"""API tokens: random, prefixed by kind, stored only as SHA-256 hashes."""

import hashlib
import secrets

ADMIN_PREFIX = "hl_admin_"
USER_PREFIX = "hl_user_"


def new_token(prefix: str) -> str:
    """32 random bytes, URL-safe, after the kind's prefix."""
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
