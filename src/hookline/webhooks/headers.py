"""Custom request headers an endpoint may have sent with every attempt: a pure check."""

import re

MAX_HEADERS = 20
MAX_NAME = 64
MAX_VALUE = 1024
# Headers hookline sets itself, and hop-by-hop or framing headers the HTTP client owns.
RESERVED = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "user-agent",
        "host",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "cookie",
    }
)
RESERVED_PREFIXES = ("webhook-", "proxy-")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 field-name


def check(headers: dict[str, str]) -> dict[str, str]:
    """Return the headers if they may be sent; ValueError naming the first problem."""
    if len(headers) > MAX_HEADERS:
        raise ValueError(f"at most {MAX_HEADERS} custom headers are allowed")
    seen: set[str] = set()
    for name, value in headers.items():
        lower = name.lower()
        if len(name) > MAX_NAME:
            raise ValueError(
                f"header name '{name[:MAX_NAME]}…' is longer than {MAX_NAME} characters"
            )
        if not _TOKEN.match(name):
            raise ValueError(f"'{name}' is not a valid header name")
        if lower in RESERVED or lower.startswith(RESERVED_PREFIXES):
            raise ValueError(f"header '{name}' is reserved: hookline sets it")
        if lower in seen:
            raise ValueError(f"header '{name}' is given twice")
        seen.add(lower)
        if len(value) > MAX_VALUE:
            raise ValueError(f"the value of header '{name}' is longer than {MAX_VALUE} characters")
        if any((ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F for ch in value):
            raise ValueError(f"the value of header '{name}' contains control characters")
        if not value.isascii():
            raise ValueError(f"the value of header '{name}' must be ASCII")
    return headers
