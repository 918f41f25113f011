"""ssrf.DestinationCheck: the one address policy of a process, asked by registration without any
HTTP client, and the resolver the sender connects through. DNS is a stub: nothing leaves."""

import re

import pytest

from hookline.delivery import signing, ssrf
from hookline.delivery.sender import Sender
from tests.support.resolver import StubResolver

NAMES = {
    "public.example": ["93.184.216.34"],
    "internal.example": ["10.1.2.3"],
    "mixed.example": ["93.184.216.34", "127.0.0.1"],
}


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://public.example/hook", None),
        ("https://public.example:8443/hook", None),
        ("http://93.184.216.34/hook", None),
        ("http://internal.example/hook", "internal.example (10.1.2.3) is a private address"),
        ("http://mixed.example/hook", "mixed.example (127.0.0.1) is a loopback address"),
        ("http://127.0.0.1:9/hook", "127.0.0.1 is a loopback address"),
        ("http://[::ffff:169.254.169.254]/", "cloud metadata address (169.254.169.254)"),
    ],
)
async def test_the_guarded_check_judges_where_a_url_points(url: str, refused: str | None) -> None:
    check = ssrf.DestinationCheck(resolver=StubResolver(NAMES))

    if refused is None:
        await check.check(url)
    else:
        with pytest.raises(ssrf.ForbiddenDestination, match=re.escape(refused)):
            await check.check(url)


async def test_a_name_that_does_not_resolve_is_an_os_error() -> None:
    check = ssrf.DestinationCheck(resolver=StubResolver(NAMES))

    with pytest.raises(OSError, match=re.escape("nowhere.example")) as raised:
        await check.check("http://nowhere.example/hook")

    assert not isinstance(raised.value, ssrf.ForbiddenDestination)


async def test_a_literal_address_is_judged_without_asking_the_resolver() -> None:
    stub = StubResolver(NAMES)
    check = ssrf.DestinationCheck(resolver=stub)

    with pytest.raises(ssrf.ForbiddenDestination):
        await check.check("http://0x7f.1/hook")

    assert stub.lookups == []


async def test_with_private_networks_allowed_nothing_is_looked_up() -> None:
    stub = StubResolver(NAMES)
    check = ssrf.DestinationCheck(allow_private_networks=True, resolver=stub)

    await check.check("http://internal.example/hook")
    await check.check("http://127.0.0.1:9/hook")

    assert stub.lookups == []
    assert check.resolver() is stub


async def test_the_sender_connects_through_the_check_it_is_given() -> None:
    # The stub answers loopback for a name the sender is asked to post to: the guard of the
    # check refuses it before any connection (nothing listens on the port anyway).
    stub = StubResolver({"rebound.example": ["127.0.0.1"]})
    check = ssrf.DestinationCheck(resolver=stub)
    sender = Sender(timeout=2, concurrency=1, destinations=check)
    await sender.start()
    try:
        outcome = await sender.send(
            url="http://rebound.example:9/hook",
            msg_id="msg_guarded",
            body=b"{}",
            secrets=[signing.generate_secret()],
        )
    finally:
        await sender.close()

    assert outcome.error_kind == "forbidden_destination"
    assert outcome.error == "rebound.example (127.0.0.1) is a loopback address"
    assert stub.lookups == ["rebound.example"]
