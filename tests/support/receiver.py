"""A real webhook receiver on 127.0.0.1 for tests: records requests, answers from a script.

receiver.script("/flaky", [500, 500, 200])   # answers in order, then the last one forever
receiver.script("/big", [200], body="x" * 10_000, delay=0.5)  # this body, after half a second
receiver.hang("/slow")                       # never answers (until the test ends or release())
receiver.hang("/held"); receiver.script("/held", [200])  # after release(), the script's answer
receiver.redirect("/moved", "/elsewhere")    # 307 to another path
await receiver.wait_for(3, path="/flaky")
"""

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._scripts: dict[str, list[int]] = {}
        self._hanging: set[str] = set()
        self._redirects: dict[str, str] = {}
        self._headers: dict[str, dict[str, str]] = {}
        self._bodies: dict[str, str] = {}
        self._delays: dict[str, float] = {}
        self._arrived = asyncio.Condition()
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> "Receiver":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._release.set()
        assert self._runner is not None
        await self._runner.cleanup()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(
        self,
        path: str,
        statuses: list[int],
        headers: dict[str, str] | None = None,
        *,
        body: str | None = None,
        delay: float = 0,
    ) -> None:
        """Answer `path` with these statuses in turn; `body` and `delay` change every answer."""
        self._scripts[path] = list(statuses)
        if headers:
            self._headers[path] = headers
        if body is not None:
            self._bodies[path] = body
        if delay:
            self._delays[path] = delay

    def hang(self, path: str) -> None:
        self._hanging.add(path)

    def release(self) -> None:
        """Answer every hanging request now (its path's script, else 504), and any that comes
        from now on."""
        self._release.set()

    def redirect(self, path: str, to: str) -> None:
        self._redirects[path] = to

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(self, count: int, *, path: str | None = None, timeout: float = 10) -> None:
        """Wait until `count` requests (to `path`, if given) have arrived."""

        def enough() -> bool:
            seen = self.requests if path is None else self.at(path)
            return len(seen) >= count

        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(enough)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        path = request.path
        async with self._arrived:
            self.requests.append(Received(path, dict(request.headers), body))
            self._arrived.notify_all()
        if path in self._hanging:
            await self._release.wait()
            if path not in self._scripts:
                return web.Response(status=504)
        if path in self._redirects:
            raise web.HTTPTemporaryRedirect(self._redirects[path])
        script = self._scripts.get(path)
        status = 200
        if script:
            status = script.pop(0) if len(script) > 1 else script[0]
        if path in self._delays:
            await asyncio.sleep(self._delays[path])
        text = self._bodies.get(path, "ok" if status < 300 else "nope")
        return web.Response(status=status, text=text, headers=self._headers.get(path))
