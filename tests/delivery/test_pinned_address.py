"""The sender looks a name up itself and connects to the address it looked up: until the
lookup is `DNS_TTL` seconds old, every attempt to the host goes there; then the name is
looked up again (through the guard, which judges every lookup) and, when it moved, the
attempts follow it.

Two receivers listen on the same port of 127.0.0.1 and 127.0.0.2; a stub resolver says where
`hooks.example` is.
"""

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from aiohttp.abc import ResolveResult

from hookline.delivery import sender as sender_module
from hookline.delivery import signing
from hookline.delivery.sender import Sender
from tests.support.resolver import StubResolver


@asynccontextmanager
async def receivers() -> AsyncIterator[tuple[int, list[str]]]:
    """Receivers on 127.0.0.1 and 127.0.0.2, one port; yields it and the addresses hit."""
    hits: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        hits.append(request.transport.get_extra_info("sockname")[0])  # type: ignore[union-attr]
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    # A port free on both addresses: taken on the first, then tried on the second.
    for _ in range(20):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        try:
            for host in ("127.0.0.1", "127.0.0.2"):
                await web.TCPSite(runner, host, port).start()
            break
        except OSError:
            await runner.cleanup()
            runner = web.AppRunner(app)
            await runner.setup()
    else:
        pytest.fail("no port free on both 127.0.0.1 and 127.0.0.2")
    try:
        yield port, hits
    finally:
        await runner.cleanup()


@asynccontextmanager
async def sending(
    resolver: StubResolver,
) -> AsyncIterator[tuple[Sender, int, list[str]]]:
    """A started sender looking names up with `resolver`, beside the two receivers."""
    sender = Sender(timeout=5, concurrency=4, allow_private_networks=True, resolver=resolver)
    await sender.start()
    try:
        async with receivers() as (port, hits):
            yield sender, port, hits
    finally:
        await sender.close()


async def post(sender: Sender, url: str) -> sender_module.Outcome:
    return await sender.send(
        url=url, msg_id="msg_pin", body=b"{}", secrets=[signing.generate_secret()]
    )


async def test_attempts_follow_a_name_that_moved_once_its_lookup_is_old(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sender_module, "DNS_TTL", 0.3)
    stub = StubResolver({"hooks.example": ["127.0.0.1"]})
    async with sending(stub) as (sender, port, hits):
        url = f"http://hooks.example:{port}/hook"
        first = await asyncio.gather(*(post(sender, url) for _ in range(3)))
        stub.names["hooks.example"] = ["127.0.0.2"]
        still = await post(sender, url)  # the lookup is fresh: the same address
        await asyncio.sleep(0.4)
        moved = await post(sender, url)

    assert all(o.ok for o in [*first, still, moved]), [*first, still, moved]
    assert hits == ["127.0.0.1"] * 4 + ["127.0.0.2"]
    # Three attempts at once asked once; the second lookup came after the TTL.
    assert stub.count("hooks.example") == 2


class GatedResolver(StubResolver):
    """Answers once `gate` is set."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        super().__init__(names)
        self.gate = asyncio.Event()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        await self.gate.wait()
        return await super().resolve(host, port, family)


async def test_an_attempt_cancelled_during_the_lookup_leaves_it_to_the_others() -> None:
    stub = GatedResolver({"hooks.example": ["127.0.0.1"]})
    async with sending(stub) as (sender, port, hits):
        url = f"http://hooks.example:{port}/hook"
        first = asyncio.create_task(post(sender, url))
        second = asyncio.create_task(post(sender, url))
        await asyncio.sleep(0.05)  # both wait for the one lookup
        first.cancel()
        stub.gate.set()
        outcome = await asyncio.wait_for(second, 5)
        with pytest.raises(asyncio.CancelledError):
            await first

    assert outcome.ok, outcome
    assert hits == ["127.0.0.1"]
    assert stub.count("hooks.example") == 1


async def test_a_name_with_both_families_is_reached_over_ipv4() -> None:
    # Nothing listens on ::1 here: an attempt pinned to it would fail.
    stub = StubResolver({"hooks.example": ["::1", "127.0.0.2"]})
    async with sending(stub) as (sender, port, hits):
        outcome = await post(sender, f"http://hooks.example:{port}/hook")

    assert outcome.ok, outcome
    assert hits == ["127.0.0.2"]
