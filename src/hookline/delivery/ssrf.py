"""Where webhooks may not go: loopback, private, link-local, shared, multicast, reserved and
metadata addresses, in their IPv4, IPv6 and IPv4-in-IPv6 forms.

An explicit list rather than `ipaddress`'s `is_global` and friends, which disagree with this
policy on several ranges (and between Python versions). Checked at registration, and at every
attempt by the resolver the HTTP client connects through, so the address checked is the
address connected to: one `DestinationCheck` per process serves both.
"""

import ipaddress
import socket
from collections.abc import Sequence

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_HINT = "set HOOKLINE_ALLOW_PRIVATE_NETWORKS=true to allow it in development"


def _nets(*specs: tuple[str, str]) -> tuple[tuple[Network, str], ...]:
    return tuple((ipaddress.ip_network(cidr), what) for cidr, what in specs)


FORBIDDEN_V4 = _nets(
    ("0.0.0.0/8", "an unspecified ('this network') address"),
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.169.254/32", "a cloud metadata address"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "an IETF protocol assignment"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a 6to4 relay anycast address"),
    ("192.168.0.0/16", "a private address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
)
FORBIDDEN_V6 = _nets(
    ("::/128", "an unspecified address"),
    ("::1/128", "a loopback address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("100::/64", "a discard-only address"),
    ("2001::/23", "an IETF protocol assignment"),
    ("2001:db8::/32", "a documentation address"),
    ("3fff::/20", "a documentation address"),
    ("5f00::/16", "a segment-routing address"),
    ("fd00:ec2::254/128", "a cloud metadata address"),
    ("fc00::/7", "a unique local (private) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
)
# IPv6 forms that carry an IPv4 address: judged by the IPv4 address inside.
_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765's IPv4-translated form
_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


class ForbiddenDestination(OSError):
    """A webhook URL whose host is, or resolves to, an address webhooks may not go to."""


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, translated, compatible, NAT64, 6to4),
    if any."""
    value = int(address)
    if any(address in net for net in (_MAPPED, _TRANSLATED, _NAT64, _COMPATIBLE)):
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF)
    return None


def forbidden_reason(address: IPAddress) -> str | None:
    """Why webhooks may not go to `address`, or None when they may."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "a scoped (link-local) address"
        for network, what in FORBIDDEN_V6:
            if address in network:
                return what
        inner = embedded_ipv4(address)
        if inner is not None:
            reason = forbidden_reason(inner)
            return None if reason is None else f"{reason} ({inner}) inside an IPv6 address"
        return None
    for network, what in FORBIDDEN_V4:
        if address in network:
            return what
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host spells literally, in any form a resolver would take: dotted,
    bracketed IPv6, and the legacy IPv4 spellings (2130706433, 0x7f.1, 0177.0.0.1, 127.1)."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(ch in "0123456789abcdefxABCDEFX." for ch in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_address(host: str, address: IPAddress) -> None:
    """Raise ForbiddenDestination when webhooks may not go to `address` (for `host`)."""
    reason = forbidden_reason(address)
    if reason is not None:
        shown = str(address) if host.strip("[]") == str(address) else f"{host} ({address})"
        raise ForbiddenDestination(f"{shown} is {reason}")


def check_results(host: str, results: Sequence[ResolveResult]) -> None:
    """Refuse a name if ANY address it resolves to is forbidden (a mixed answer is refused:
    the connection could go to any of them)."""
    for result in results:
        check_address(host, ipaddress.ip_address(result["host"]))


class GuardedResolver(AbstractResolver):
    """Resolves through `inner` and refuses names that resolve to any forbidden address."""

    def __init__(self, inner: AbstractResolver) -> None:
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        check_results(host, results)
        return results

    async def close(self) -> None:
        await self._inner.close()


def _host(url: URL) -> str:
    # The host as the HTTP client will use it: IDNA-normalised (fullwidth digits and
    # ideographic dots become ASCII), with an IPv6 zone decoded.
    return (url.host or "").strip("[]")


def check_literal(host: str) -> bool:
    """Raise ForbiddenDestination when `host` (a URL's, as `host_and_port` gives it) is a
    forbidden literal address; True if it is a literal address at all (the client connects to
    those without resolving)."""
    literal = literal_address(host)
    if literal is None:
        return False
    check_address(host, literal)
    return True


def host_and_port(url: URL) -> tuple[str, int]:
    """The host a URL's client connects to (as `_host`) and the port (the scheme's default)."""
    return _host(url), url.port or (443 if url.scheme == "https" else 80)


async def check_url(url: str, resolver: AbstractResolver) -> None:
    """Raise ForbiddenDestination when the URL's host is or resolves to a forbidden address,
    or OSError when it does not resolve."""
    host, port = host_and_port(URL(url))
    if check_literal(host):
        return
    check_results(host, await resolver.resolve(host, port, socket.AF_UNSPEC))


class DestinationCheck:
    """Where this process lets webhooks go: the guard (off when private networks are allowed)
    and the resolver names are looked up with, shared by registration (`check`) and the HTTP
    client (`resolver`), so both judge by one policy. Needs no connection pool of its own."""

    def __init__(
        self, *, allow_private_networks: bool = False, resolver: AbstractResolver | None = None
    ) -> None:
        self.guarded = not allow_private_networks
        self._given = resolver
        self._resolver: AbstractResolver | None = None

    def resolver(self) -> AbstractResolver:
        """The resolver to connect through, refusing forbidden answers when guarded; built on
        first use, inside the event loop (the system resolver binds to it)."""
        if self._resolver is None:
            inner = self._given or ThreadedResolver()
            self._resolver = GuardedResolver(inner) if self.guarded else inner
        return self._resolver

    async def check(self, url: str) -> None:
        """Raise ForbiddenDestination when webhooks may not go to the URL's host, or OSError
        when it does not resolve (nothing to check when private networks are allowed)."""
        if self.guarded:
            await check_url(url, self.resolver())
