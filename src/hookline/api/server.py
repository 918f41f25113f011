"""The HTTP server's own limits: how large a request head may be and how long it may take.

uvicorn's httptools protocol stores every header line it is sent, with no cap, and times out
neither a connection that sends nothing nor a request that stops half-way. This protocol adds
those limits and is otherwise uvicorn's:

- a request head (request line and headers) over `MAX_HEAD_BYTES` is answered 431 and the
  connection closed;
- a head must be complete within `header_timeout` seconds of the connection opening (or of the
  previous response): else 408, or a plain close if nothing at all was sent;
- a body must be complete within `body_timeout` seconds of its head (three times the header
  timeout: 30 s by default, for at most 1 MiB).

An idle keep-alive connection is closed by uvicorn after `timeout_keep_alive` (5 s).
"""

import asyncio
import resource
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 65_536
LINGER_SECONDS = 2.0


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    # Class-wide: uvicorn builds one protocol per connection from the class (and, with several
    # worker processes, imports it by name); `configure` sets it from settings in each process.
    header_timeout = 10.0
    body_timeout = 30.0

    @classmethod
    def configure(cls, *, header_timeout: float) -> None:
        cls.header_timeout = header_timeout
        cls.body_timeout = 3 * header_timeout

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._started = False  # any byte of the current request received
        self._deadline: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._wait_for_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._clear_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._started = True
            self._head_bytes += len(data)
        super().data_received(data)
        # Checked after parsing: a chunk that ended the head may carry body bytes too.
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES and not self._refused:
            self._refuse(431, b"Request Header Fields Too Large", "the request head is too large")

    def send_400_response(self, msg: str) -> None:
        if not self._refused:
            super().send_400_response(msg)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._clear_deadline()
        self._deadline = self.loop.call_later(self.body_timeout, self._body_too_slow)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._clear_deadline()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._wait_for_head()

    def _wait_for_head(self) -> None:
        self._in_head, self._head_bytes, self._started = True, 0, False
        self._clear_deadline()
        self._deadline = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def _clear_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if not self._started:  # nothing sent: nobody to answer
            self._refused = True
            self.transport.close()
            return
        self._refuse(408, b"Request Timeout", "the request head did not arrive in time")

    def _body_too_slow(self) -> None:
        self._deadline = None
        if self.cycle is not None and not self.cycle.more_body:
            return  # complete: the app has it
        if not self.transport.is_closing():
            self._refuse(408, b"Request Timeout", "the request body did not arrive in time")

    def _refuse(self, status: int, reason: bytes, detail: str) -> None:
        self._refused = True
        self._clear_deadline()
        body = b'{"detail":"' + detail.encode() + b'"}'
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )
        if self.cycle is not None:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        # Closing at once with unread input resets the connection, and the client never reads
        # the answer: end our side, discard what still comes for a moment, then close.
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()


def raise_open_files_limit() -> tuple[int, int]:
    """Raise this process's open-files limit to the hard limit (each connection is a file;
    the usual soft limit of 1,024 is reached by a thousand idle clients). Returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft, hard
        return target, hard
    return soft, hard
