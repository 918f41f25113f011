"""`hookline listen`: a local receiver that prints each webhook it gets and checks its signature."""

import asyncio
import json
import sys
from datetime import datetime
from typing import TextIO

from aiohttp import web

from hookline import operator_errors
from hookline.delivery import signing

NOT_CHECKED = "not checked (no --secret)"


def _pretty_body(body: bytes) -> tuple[str, str]:
    """Return the event name and a readable rendering of a webhook body."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        # Not JSON (or not UTF-8): show it anyway, since that is what the sender sent.
        return "-", body.decode("utf-8", errors="replace")
    event = payload.get("event") if isinstance(payload, dict) else None
    rendered = json.dumps(payload, indent=2, ensure_ascii=False)
    return ("-" if event is None else str(event)), rendered


def _signature_result(secret: str | None, request: web.Request, body: bytes) -> str:
    if secret is None:
        return NOT_CHECKED
    valid = signing.verify(
        secret,
        request.headers.get("webhook-id", ""),
        request.headers.get("webhook-timestamp", ""),
        request.headers.get("webhook-signature", ""),
        body,
    )
    return "valid" if valid else "INVALID"


def build_app(secret: str | None, out: TextIO) -> web.Application:
    """Return the receiver app; ValueError when the secret is not a valid webhook secret."""
    if secret is not None:
        signing.secret_key(secret)  # fail at start rather than mark every webhook INVALID

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        event, rendered = _pretty_body(body)
        result = _signature_result(secret, request, body)
        out.write(
            f"--- {datetime.now().astimezone():%Y-%m-%d %H:%M:%S %z}  POST {request.path}\n"
            f"webhook-id: {request.headers.get('webhook-id', '-')}\n"
            f"event:      {event}\n"
            f"signature:  {result}\n"
            f"{rendered}\n\n"
        )
        # Flush per webhook, so output piped to a file or another program shows up at once.
        out.flush()
        return web.Response(status=401 if result == "INVALID" else 204)

    app = web.Application()
    app.router.add_route("POST", "/{path:.*}", receive)
    return app


async def serve(host: str, port: int, secret: str | None, out: TextIO = sys.stdout) -> None:
    """Serve the receiver on host:port until cancelled; an address that cannot be listened on
    is an OperatorError."""
    runner = web.AppRunner(build_app(secret, out), access_log=None)
    await runner.setup()
    try:
        with operator_errors.binding(host, port, host_option="--host", port_option="--port"):
            await web.TCPSite(runner, host, port).start()
        # Report the bound address, which differs from `port` when it was 0.
        for address in runner.addresses:
            bound_host, bound_port = address[0], address[1]
            if ":" in bound_host:
                bound_host = f"[{bound_host}]"
            out.write(f"listening on http://{bound_host}:{bound_port}\n")
        out.flush()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
