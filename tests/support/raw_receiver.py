"""A bare TCP receiver on 127.0.0.1 whose answers a test writes byte by byte: what no HTTP
server library would send (endless informational responses, an endless body)."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class Served:
    """What the raw receiver saw: what it wrote (responses or bytes, as the handler counts),
    and whether the client went away."""

    written: int = 0
    client_went_away: asyncio.Event = field(default_factory=asyncio.Event)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Served], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            await reader.readexactly(int(value))


@asynccontextmanager
async def raw_receiver(handler: Handler) -> AsyncIterator[tuple[str, Served]]:
    """A bare TCP server on 127.0.0.1 answering each request with `handler`."""
    served = Served()
    handlers: list[tuple[asyncio.Future[None], asyncio.StreamWriter]] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done = asyncio.get_running_loop().create_future()
        handlers.append((done, writer))
        try:
            await read_request(reader)
            await handler(reader, writer, served)
        except (ConnectionError, asyncio.IncompleteReadError):
            served.client_went_away.set()
        finally:
            writer.close()
            done.set_result(None)

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook", served
    finally:
        server.close()
        # Dropping the connections ends the handlers (cancelling them would log errors).
        for _, writer in handlers:
            writer.transport.abort()
        await asyncio.gather(*(done for done, _ in handlers))
        await server.wait_closed()
