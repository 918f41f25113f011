"""Where webhooks may not go, address by address: the policy is a pure function,
so it is tested by table: every forbidden range at its edges and inside, the IPv4-in-IPv6 forms,
public addresses, and the legacy spellings of IPv4 addresses a resolver would accept."""

import ipaddress

import pytest

from hookline.delivery.ssrf import (
    FORBIDDEN_V4,
    FORBIDDEN_V6,
    ForbiddenDestination,
    check_address,
    forbidden_reason,
    literal_address,
)

# Every forbidden range, with a word its reason must contain and its first, an inside and its
# last address. Written out rather than derived from FORBIDDEN_V4/V6, so a mistyped CIDR there
# shows up here; test_the_table_covers_every_forbidden_range keeps the two in step.
RANGES = [
    ("0.0.0.0/8", "unspecified", ["0.0.0.0", "0.1.2.3", "0.255.255.255"]),
    ("10.0.0.0/8", "private", ["10.0.0.0", "10.20.30.40", "10.255.255.255"]),
    ("100.64.0.0/10", "shared", ["100.64.0.0", "100.100.100.100", "100.127.255.255"]),
    ("127.0.0.0/8", "loopback", ["127.0.0.0", "127.0.0.1", "127.255.255.255"]),
    ("169.254.169.254/32", "metadata", ["169.254.169.254"]),
    ("169.254.0.0/16", "link-local", ["169.254.0.0", "169.254.1.1", "169.254.255.255"]),
    ("172.16.0.0/12", "private", ["172.16.0.0", "172.20.1.1", "172.31.255.255"]),
    ("192.0.0.0/24", "IETF protocol", ["192.0.0.0", "192.0.0.9", "192.0.0.255"]),
    ("192.0.2.0/24", "documentation", ["192.0.2.0", "192.0.2.123", "192.0.2.255"]),
    ("192.88.99.0/24", "6to4 relay", ["192.88.99.0", "192.88.99.1", "192.88.99.255"]),
    ("192.168.0.0/16", "private", ["192.168.0.0", "192.168.1.1", "192.168.255.255"]),
    ("198.18.0.0/15", "benchmarking", ["198.18.0.0", "198.18.0.1", "198.19.255.255"]),
    ("198.51.100.0/24", "documentation", ["198.51.100.0", "198.51.100.7", "198.51.100.255"]),
    ("203.0.113.0/24", "documentation", ["203.0.113.0", "203.0.113.9", "203.0.113.255"]),
    ("224.0.0.0/4", "multicast", ["224.0.0.0", "224.0.0.1", "239.255.255.255"]),
    ("240.0.0.0/4", "reserved", ["240.0.0.0", "250.1.2.3", "255.255.255.255"]),
    ("::/128", "unspecified", ["::"]),
    ("::1/128", "loopback", ["::1"]),
    (
        "64:ff9b:1::/48",
        "local-use NAT64",
        ["64:ff9b:1::", "64:ff9b:1:abcd::1", "64:ff9b:1:ffff:ffff:ffff:ffff:ffff"],
    ),
    ("100::/64", "discard-only", ["100::", "100::1", "100::ffff:ffff:ffff:ffff"]),
    (
        "2001::/23",
        "IETF protocol",
        ["2001::", "2001:1::1", "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff"],
    ),
    (
        "2001:db8::/32",
        "documentation",
        ["2001:db8::", "2001:db8::1", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"],
    ),
    (
        "3fff::/20",
        "documentation",
        ["3fff::", "3fff:123::1", "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff"],
    ),
    (
        "5f00::/16",
        "segment-routing",
        ["5f00::", "5f00:1::1", "5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff"],
    ),
    ("fd00:ec2::254/128", "metadata", ["fd00:ec2::254"]),
    (
        "fc00::/7",
        "unique local",
        ["fc00::", "fd12:3456::1", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"],
    ),
    ("fe80::/10", "link-local", ["fe80::", "fe80::1", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]),
    ("fec0::/10", "site-local", ["fec0::", "fec0::1", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]),
    ("ff00::/8", "multicast", ["ff00::", "ff02::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]),
]

# IPv6 forms that carry an IPv4 address are judged by the address they carry, and a few
# addresses worth naming on their own.
EMBEDDED_AND_SPECIAL = [
    ("169.254.169.254", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"),
    ("::ffff:127.0.0.1", "loopback address (127.0.0.1) inside an IPv6 address"),
    ("::ffff:10.0.0.1", "private address (10.0.0.1) inside an IPv6 address"),
    ("::ffff:169.254.169.254", "cloud metadata address (169.254.169.254) inside"),
    ("::ffff:0:169.254.169.254", "cloud metadata address (169.254.169.254) inside"),
    ("::ffff:0:a00:1", "private address (10.0.0.1) inside an IPv6 address"),
    ("::127.0.0.1", "loopback address (127.0.0.1) inside an IPv6 address"),
    ("::10.1.2.3", "private address (10.1.2.3) inside an IPv6 address"),
    ("2002:7f00:1::", "loopback address (127.0.0.1) inside an IPv6 address"),
    ("2002:a9fe:a9fe::", "cloud metadata address (169.254.169.254) inside"),
    ("2002:c0a8:101:1::1", "private address (192.168.1.1) inside an IPv6 address"),
    ("64:ff9b::7f00:1", "loopback address (127.0.0.1) inside an IPv6 address"),
    ("64:ff9b::a9fe:a9fe", "cloud metadata address (169.254.169.254) inside"),
    ("64:ff9b:1::", "local-use NAT64"),
    ("64:ff9b:1::808:808", "local-use NAT64"),
    ("fe80::1%eth0", "scoped"),
    ("2606:4700:4700::1111%eth0", "scoped"),
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "::ffff:0:808:808",
    "::8.8.8.8",
    "2002:808:808::",
    "64:ff9b::808:808",
    # Just outside the forbidden ranges around them.
    "9.255.255.255",
    "11.0.0.0",
    "100.63.255.255",
    "100.128.0.0",
    "126.255.255.255",
    "128.0.0.0",
    "169.253.255.255",
    "169.255.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "192.167.255.255",
    "192.169.0.0",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2001:200::1",
    "2001:db9::1",
]


def _forbidden_cases() -> list[object]:
    cases: list[object] = []
    for cidr, word, addresses in RANGES:
        for address in addresses:
            cases.append(pytest.param(address, word, id=f"{address} in {cidr}"))
    for address, word in EMBEDDED_AND_SPECIAL:
        cases.append(pytest.param(address, word, id=address))
    return cases


@pytest.mark.parametrize(("address", "reason_word"), _forbidden_cases())
def test_forbidden_address_is_refused_with_its_reason(address: str, reason_word: str) -> None:
    reason = forbidden_reason(ipaddress.ip_address(address))
    assert reason is not None, f"{address} should be forbidden"
    assert reason_word in reason


@pytest.mark.parametrize("address", ALLOWED)
def test_public_address_is_allowed(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None


def test_the_table_covers_every_forbidden_range() -> None:
    in_policy = {str(network) for network, _ in (*FORBIDDEN_V4, *FORBIDDEN_V6)}
    assert {cidr for cidr, _, _ in RANGES} == in_policy


@pytest.mark.parametrize(
    "address",
    [
        # ipaddress calls these global; they are multicast, site-local, or carry 127.0.0.1.
        # (Stable across Python versions; 3.11.7 misjudges more, e.g. 2002:7f00:1::.)
        pytest.param("224.0.0.1", id="IPv4 multicast"),
        pytest.param("ff02::1", id="IPv6 multicast"),
        pytest.param("fec0::1", id="site-local"),
        pytest.param("64:ff9b::7f00:1", id="NAT64 of loopback"),
        pytest.param("::127.0.0.1", id="IPv4-compatible loopback"),
    ],
)
def test_is_global_alone_would_let_these_through(address: str) -> None:
    parsed = ipaddress.ip_address(address)
    assert parsed.is_global
    assert forbidden_reason(parsed) is not None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("::ffff:7f00:1", "::ffff:7f00:1"),
        ("example.com", None),
        ("localhost", None),
        ("deadbeef", None),
        ("1.2.3.4.5", None),
        ("256.0.0.1", None),
        ("", None),
    ],
)
def test_literal_address_reads_every_spelling_a_resolver_would(
    host: str, expected: str | None
) -> None:
    found = literal_address(host)
    assert (None if found is None else str(found)) == expected


@pytest.mark.parametrize(
    ("host", "address", "message"),
    [
        ("127.0.0.1", "127.0.0.1", "127.0.0.1 is a loopback address"),
        ("[::1]", "::1", "::1 is a loopback address"),
        ("0x7f.1", "127.0.0.1", "0x7f.1 (127.0.0.1) is a loopback address"),
        ("internal.example", "10.1.2.3", "internal.example (10.1.2.3) is a private address"),
    ],
)
def test_check_address_names_the_host_and_the_address(
    host: str, address: str, message: str
) -> None:
    with pytest.raises(ForbiddenDestination) as raised:
        check_address(host, ipaddress.ip_address(address))
    assert str(raised.value) == message


def test_check_address_lets_a_public_address_pass() -> None:
    check_address("example.com", ipaddress.ip_address("93.184.216.34"))
