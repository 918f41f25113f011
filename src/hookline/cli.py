"""The `hookline` command: serve, api, worker, migrate, listen, import-seed."""

import asyncio
import json
import logging
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from hookline import __version__
from hookline.config import Settings

app = typer.Typer(
    help="hookline: a self-hostable webhook sender.", no_args_is_help=True, add_completion=False
)


def _settings() -> Settings:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(_describe_setting_error(error) for error in exc.errors())
        typer.echo(f"error: invalid configuration: {problems}", err=True)
        raise typer.Exit(code=2) from exc


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
        "access_log": False,
        "server_header": False,
    }


def _serve_http(settings: Settings, *, run_worker: bool) -> None:
    from hookline.api.app import create_app

    config = uvicorn.Config(
        create_app(settings, run_worker=run_worker), **_server_options(settings)
    )
    # uvicorn stops gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler that
    # was there before it; make that handler a clean exit, so a requested stop exits 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)
    uvicorn.Server(config).run()


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


@app.command()
def serve() -> None:
    """API and delivery worker in one process (SQLite by default)."""
    _serve_http(_settings(), run_worker=True)


@app.command()
def api(
    workers: Annotated[
        int, typer.Option(min=1, help="API processes sharing the port (uvicorn workers).")
    ] = 1,
) -> None:
    """The API alone; run workers with `hookline worker`."""
    settings = _settings()  # a bad setting stops it here, in one line
    if workers == 1:
        _serve_http(settings, run_worker=False)
        return
    # Each uvicorn worker process builds its app from the environment, as this one did.
    uvicorn.run(
        "hookline.api.app:create_app_from_environment",
        factory=True,
        workers=workers,
        **_server_options(settings),
    )


@app.command()
def worker() -> None:
    """The delivery worker alone; stops cleanly on SIGTERM or SIGINT."""
    asyncio.run(_run_worker(_settings()))


async def _run_worker(settings: Settings) -> None:
    from hookline import runtime

    async with runtime.running(settings, run_worker=True, tolerate_outage=True) as running:
        assert running.worker is not None and running.worker_task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, running.worker.stop)
        await running.worker_task


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
) -> None:
    """A local receiver that prints each webhook it gets and checks its signature."""
    from hookline import listen as receiver

    try:
        asyncio.run(receiver.serve(host, port, secret))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--secret") from exc
    except KeyboardInterrupt:
        pass


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
    """Print a new key for HOOKLINE_SECRET_KEY (it seals endpoint secrets at rest)."""
    from hookline import secretbox

    typer.echo(secretbox.generate_key())


@app.command("rotate-secret-key")
def rotate_secret_key() -> None:
    """Re-seal every endpoint secret with the first key of HOOKLINE_SECRET_KEY.

    Rotate by setting HOOKLINE_SECRET_KEY to "<new>,<old>" everywhere, running this, then
    dropping the old key.
    """
    from hookline import migrate as migrations
    from hookline import secretbox
    from hookline.store import open_store
    from hookline.webhooks import secrets

    settings = _settings()

    async def run(box: secretbox.SecretBox) -> int:
        await migrations.upgrade(settings)
        store = open_store(settings)
        try:
            return await secrets.reseal(store, box, every=True)
        finally:
            await store.close()

    try:
        # The key first: a malformed one must not create or migrate anything.
        changed = asyncio.run(run(secretbox.load(settings)))
    except secretbox.SecretKeyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(f"re-sealed the secrets of {changed} endpoint(s) with the first key")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    app()
