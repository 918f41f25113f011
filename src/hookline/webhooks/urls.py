"""What a webhook URL must look like before it is stored, and where it may point."""

from urllib.parse import urlsplit

from yarl import URL

from hookline.delivery import ssrf
from hookline.errors import AppError, Unprocessable


def check(url: str) -> str:
    """Return the URL if it can be a webhook target; raise Unprocessable with the reason."""
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise Unprocessable(
            f"Invalid webhook URL '{url}': it contains whitespace or control characters"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Unprocessable(f"Invalid webhook URL '{url}': {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise Unprocessable(f"Invalid webhook URL '{url}': the scheme must be http or https")
    if not parts.hostname:
        raise Unprocessable(f"Invalid webhook URL '{url}': it has no host")
    if parts.username is not None or parts.password is not None:
        raise Unprocessable(f"Invalid webhook URL '{url}': credentials in URLs are not allowed")
    if port == 0:
        raise Unprocessable(f"Invalid webhook URL '{url}': port 0 is not a valid port")
    try:
        # The host as the HTTP client will read it (IDNA): a name it cannot encode is refused
        # here, not met as a crash at registration or as a failure at every attempt.
        host = URL(url).host or ""
        if ":" not in host:  # a name (or IPv4): the resolver encodes it with IDNA
            host.encode("idna")
    except (ValueError, UnicodeError) as exc:
        raise Unprocessable(f"Invalid webhook URL '{url}': {exc}") from exc
    return url


async def check_destination(url: str, destinations: ssrf.DestinationCheck) -> None:
    """Raise Unprocessable when webhooks may not go where the URL points."""
    try:
        await destinations.check(url)
    except ssrf.ForbiddenDestination as exc:
        raise Unprocessable(f"Invalid webhook URL '{url}': {exc}; {ssrf.ALLOW_HINT}") from exc
    except OSError as exc:
        raise Unprocessable(
            f"Invalid webhook URL '{url}': its host does not resolve ({exc.strerror or exc})"
        ) from exc


async def refusal(url: str, destinations: ssrf.DestinationCheck) -> AppError | None:
    """Why the URL may not be a webhook target (its form, then where it points), or None.

    For units of work, which cannot wait on DNS: the check runs before, the unit raises what it
    found at the point where the check used to run (after an idempotent replay, say).
    """
    try:
        await check_destination(check(url), destinations)
    except AppError as exc:
        return exc
    return None
