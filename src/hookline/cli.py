"""The `hookline` command: serve, api, worker, migrate, listen, import-seed."""

import asyncio
import json
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import uvicorn
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from hookline import __version__, logs, operate, operator_errors
from hookline.config import Settings

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from fastapi import FastAPI

log = logging.getLogger("hookline")

app = typer.Typer(
    help="hookline: a self-hostable webhook sender.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _options(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    pass


def _settings() -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = [_describe_setting_error(error) for error in exc.errors()]
        raise operator_errors.invalid_settings(problems) from exc
    # Text or JSON lines on stderr, uvicorn's included; alembic's steps quieted (migrate.upgrade
    # says in one line what it applied).
    logs.configure(settings.log_format)
    return settings


def _describe_setting_error(error: ErrorDetails) -> str:
    message = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:  # a rule across settings names them itself
        return message
    return f"HOOKLINE_{'_'.join(str(part) for part in error['loc']).upper()}: {message}"


def _server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for hookline: its limits on request heads and slow clients."""
    from hookline.api import server

    server.raise_open_files_limit()
    server.LimitedHttpToolsProtocol.configure(header_timeout=settings.header_timeout)
    return {
        "host": settings.host,
        "port": settings.port,
        "http": server.LimitedHttpToolsProtocol,
        "log_level": "info",
        # No logging setup of uvicorn's own: its lines go through hookline's (logs.py), and
        # requests are logged by api/access_log.py (without query strings).
        "log_config": None,
        "access_log": False,
        "server_header": False,
    }


def _serve_http(
    settings: Settings,
    *,
    run_worker: bool,
    workers: int = 1,
    options: tuple[str, str] = ("HOOKLINE_HOST", "HOOKLINE_PORT"),
) -> None:
    # uvicorn stops gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler that
    # was there before it; make that handler a clean exit, so a requested stop exits 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)
    # Bound first, by hookline: uvicorn would find a busy port only after the start, and
    # report it as a logged error and exit status 1.
    with _bound_socket(settings, options) as sock:
        if workers == 1:
            from hookline.api.app import create_app

            api = create_app(settings, run_worker=run_worker)
            config = uvicorn.Config(api, lifespan="off", **_server_options(settings))
            with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
                runner.run(_serve(api, uvicorn.Server(config), sock))
            return
        from uvicorn.supervisors import Multiprocess

        # Each uvicorn worker process builds its app from the environment, as this one did; this
        # one starts as they will first, so that a mistake is one line here, not one traceback
        # from each of them.
        asyncio.run(_start_once(settings))
        config = uvicorn.Config(
            "hookline.api.app:create_app_from_environment",
            factory=True,
            workers=workers,
            **_server_options(settings),
        )
        _log_listening(sock)
        Multiprocess(config, sockets=[sock]).run()


def _bound_socket(settings: Settings, options: tuple[str, str]) -> socket.socket:
    """A socket bound to HOOKLINE_HOST:HOOKLINE_PORT, as uvicorn binds one for its workers;
    `options` name what sets host and port, for an error."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with operator_errors.binding(
            settings.host, settings.port, host_option=options[0], port_option=options[1]
        ):
            sock.bind((settings.host, settings.port))
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


async def _serve(api: "FastAPI", server: uvicorn.Server, sock: socket.socket) -> None:
    # The app's lifespan (migrations, the key check, the worker) runs here rather than in
    # uvicorn, which logs a failed start as a traceback and exits 3: here a mistake raises.
    async with api.router.lifespan_context(api):
        _log_listening(sock)
        await server.serve(sockets=[sock])


async def _start_once(settings: Settings) -> None:
    from hookline import runtime

    async with runtime.running(settings, migrate_db=True):
        pass


def _log_listening(sock: socket.socket) -> None:
    host, port = sock.getsockname()[:2]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    log.info("listening on http://%s (press CTRL+C to stop)", address)


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


HostOption = Annotated[
    str | None, typer.Option(help="Address to listen on (instead of HOOKLINE_HOST).")
]
PortOption = Annotated[
    int | None,
    typer.Option(min=0, max=65535, help="Port to listen on (instead of HOOKLINE_PORT)."),
]


def _listening_on(host: str | None, port: int | None) -> tuple[Settings, tuple[str, str]]:
    """The settings with --host and --port over HOOKLINE_HOST and HOOKLINE_PORT, and the name
    of what set each (for an error)."""
    settings = _settings()
    given = {name: value for name, value in (("host", host), ("port", port)) if value is not None}
    options = (
        "--host" if host is not None else "HOOKLINE_HOST",
        "--port" if port is not None else "HOOKLINE_PORT",
    )
    return settings.model_copy(update=given), options


@app.command()
def serve(host: HostOption = None, port: PortOption = None) -> None:
    """API and delivery worker in one process (SQLite by default)."""
    settings, options = _listening_on(host, port)
    _serve_http(settings, run_worker=True, options=options)


@app.command()
def api(
    workers: Annotated[
        int, typer.Option(min=1, help="API processes sharing the port (uvicorn workers).")
    ] = 1,
    host: HostOption = None,
    port: PortOption = None,
) -> None:
    """The API alone; run workers with `hookline worker`."""
    settings, options = _listening_on(host, port)
    _serve_http(settings, run_worker=False, workers=workers, options=options)


@app.command()
def worker() -> None:
    """The delivery worker alone; stops cleanly on SIGTERM or SIGINT."""
    # Until its loop takes SIGTERM/SIGINT over (once it runs), a stop asked for while starting
    # (migrating, waiting for the database) exits 0 at once: nothing is leased yet.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)
    asyncio.run(_run_worker(_settings()))


async def _run_worker(settings: Settings) -> None:
    from hookline import runtime

    metrics_server = _worker_metrics_server(settings)
    try:
        async with runtime.running(settings, run_worker=True) as running:
            assert running.worker is not None and running.worker_task is not None
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, running.worker.stop)
            await running.worker_task
    finally:
        if metrics_server is not None:
            await asyncio.to_thread(metrics_server.shutdown)
            metrics_server.server_close()


def _worker_metrics_server(settings: Settings) -> "WSGIServer | None":
    """The worker's own /metrics (its attempt counters) on HOOKLINE_WORKER_METRICS_PORT."""
    port = settings.worker_metrics_port
    if port is None:
        return None
    from hookline.delivery import metrics

    with operator_errors.binding(
        settings.host, port, host_option="HOOKLINE_HOST", port_option="HOOKLINE_WORKER_METRICS_PORT"
    ):
        server = metrics.serve_http(port, settings.host)
    address = f"[{settings.host}]:{port}" if ":" in settings.host else f"{settings.host}:{port}"
    log.info("serving the worker's metrics on http://%s/metrics", address)
    return server


@app.command()
def migrate() -> None:
    """Apply database migrations."""
    from hookline import migrate as migrations

    asyncio.run(migrations.upgrade(_settings()))
    typer.echo("database is up to date")


@app.command()
def listen(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    secret: Annotated[
        str | None, typer.Option(help="The endpoint's whsec_… secret, to check signatures.")
    ] = None,
    forward_to: Annotated[
        str | None,
        typer.Option(help="Relay each webhook to this URL (a local app) and pass its answer back."),
    ] = None,
) -> None:
    """A local receiver that prints each webhook it gets and checks its signature."""
    from hookline import listen as receiver

    try:
        asyncio.run(receiver.serve(host, port, secret, forward_to=forward_to))
    except KeyboardInterrupt:
        return  # CTRL+C is how it stops


@app.command("import-seed")
def import_seed(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
) -> None:
    """Import the original service's webhook_data.json (`{"event": ["url", ...]}`)."""
    from hookline import seed

    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        added, existing = asyncio.run(seed.import_file(_settings(), data))
    except (ValueError, seed.SeedError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(f"imported {added} subscription(s); {existing} already existed")


@app.command("secret-key")
def secret_key() -> None:
    """Print a new key for HOOKLINE_SECRET_KEY (it seals endpoint secrets and headers at rest)."""
    from hookline import secretbox

    typer.echo(secretbox.generate_key())


@app.command("rotate-secret-key")
def rotate_secret_key() -> None:
    """Re-seal every endpoint secret and custom header value with the first key of
    HOOKLINE_SECRET_KEY.

    Rotate by setting HOOKLINE_SECRET_KEY to "<new>,<old>" everywhere, running this, then
    dropping the old key.
    """
    from hookline import migrate as migrations
    from hookline import secretbox
    from hookline.store import open_store
    from hookline.webhooks import secrets

    settings = _settings()

    async def run(box: secretbox.SecretBox) -> int:
        await migrations.upgrade(settings, box)
        store = open_store(settings)
        try:
            return await secrets.reseal(store, box, every=True)
        finally:
            await store.close()

    # The key first: a malformed one must not create or migrate anything.
    changed = asyncio.run(run(secretbox.load(settings)))
    typer.echo(f"re-sealed the secrets of {changed} endpoint(s) with the first key")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


operate.register(app)  # endpoints, deliveries, events, status: a running hookline's API


def main() -> None:
    """The `hookline` command: an operator's mistake is one line on stderr and exit status 2
    (see operator_errors); anything else keeps its traceback."""
    try:
        app(prog_name="hookline")  # under `python -m hookline` too
    except Exception as exc:
        line = operator_errors.explain(exc)
        if line is None:
            raise
        typer.echo(f"error: {line}", err=True)
        sys.exit(operator_errors.EXIT_STATUS)
