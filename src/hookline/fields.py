"""Field parts shared by the API schemas."""

from pydantic import AfterValidator


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and no name, subject or message needs one.
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


NoNul = AfterValidator(_no_nul)
# Usernames are ASCII: no look-alike (Cyrillic, fullwidth, KELVIN SIGN) may stand for another.
USERNAME_PATTERN = r"^[A-Za-z0-9_.\-]+$"
