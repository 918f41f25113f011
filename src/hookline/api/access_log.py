"""One log line per HTTP request: method, path, status and duration (uvicorn's access log is
off; this one is in hookline's format, text or JSON).

The path is logged without its query string, and no header is: a token may be in either
(a client that puts one in a query string must not get it written to the log). Nor is the
client's address, the body or the answer.
"""

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hookline import logs

log = logging.getLogger("hookline.access")

# A path longer than this is cut (a request head may be 64 KiB).
MAX_PATH_CHARS = 200


class AccessLog:
    """Outermost middleware: it sees the status of every answer, refusals included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before starting one

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = str(scope.get("path", ""))
            if len(path) > MAX_PATH_CHARS:
                path = path[:MAX_PATH_CHARS] + "…"
            log.info(
                "request",
                extra=logs.fields(
                    method=scope.get("method"),
                    path=path,
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 1),
                ),
            )
