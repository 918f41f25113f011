"""The running parts, built once: the store, the secret box, the sender and the worker.

The app's lifespan, `hookline worker` and every CLI command that touches the database start
them here, in one order, and stop them in the reverse one.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp.abc import AbstractResolver

from hookline import admin_token, migrate, secretbox, weak_settings
from hookline.config import Settings
from hookline.delivery.sender import Sender
from hookline.delivery.ssrf import DestinationCheck
from hookline.operator_errors import opening_database
from hookline.store import Store, open_store, units
from hookline.store.sql import sql

if TYPE_CHECKING:
    from hookline.delivery.worker import Worker

log = logging.getLogger("hookline")

_PING = sql("SELECT 1")


@dataclass
class Runtime:
    """What one process runs with; the app keeps it as `app.state.runtime`."""

    settings: Settings
    store: Store
    box: secretbox.SecretBox
    sender: Sender
    # Where webhooks may go: registration checks URLs with it, the sender connects through it.
    destinations: DestinationCheck
    # The admin token's hash; None until the database is migrated (then looked up again).
    admin_token_hash: str | None
    worker: "Worker | None" = None
    worker_task: "asyncio.Task[None] | None" = None


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    *,
    migrate_db: bool = False,
    run_worker: bool = False,
    resolver: AbstractResolver | None = None,
    announce_admin_token: bool = True,
) -> AsyncIterator[Runtime]:
    """Start everything this process needs; stop it all on the way out.

    A database that does not exist or cannot be reached stops the start with an OperatorError
    (`hookline` exits 2 with one line), as does a secret key that is malformed or does not
    open the stored secrets (SecretKeyError).
    """
    from hookline.webhooks import secrets as endpoint_secrets

    box = secretbox.load(settings)  # first: a bad key must not create or migrate anything
    if migrate_db:
        await migrate.upgrade(settings, box)
    store = open_store(settings)
    sender: Sender | None = None
    runtime: Runtime | None = None
    worker_task: asyncio.Task[None] | None = None
    try:
        with opening_database(settings):
            await store.read(_ping())
        current = await migrate.is_current(store)
        if current:
            await endpoint_secrets.check_key(store, box)
            await endpoint_secrets.reseal(store, box, every=False)
        admin_hash, generated = await admin_token.find_or_generate(
            store, settings, migrated=current
        )
        if generated is not None and announce_admin_token:
            # Shown once, never logged; the file keeps it for the owner of the data dir.
            print(
                f"hookline: generated the admin token (saved to"
                f" {settings.data_dir / admin_token.ADMIN_TOKEN_FILE}, mode 0600): {generated}",
                flush=True,
            )
        destinations = DestinationCheck(
            allow_private_networks=settings.allow_private_networks, resolver=resolver
        )
        sender = Sender.from_settings(settings, box=box, destinations=destinations)
        await sender.start()
        runtime = Runtime(
            settings=settings,
            store=store,
            box=box,
            sender=sender,
            destinations=destinations,
            admin_token_hash=admin_hash,
        )
        if run_worker:
            from hookline.delivery.worker import Worker

            runtime.worker = Worker(settings=settings, store=store, sender=sender)
            store.on_wake(runtime.worker.wake)
            worker_task = runtime.worker_task = asyncio.create_task(runtime.worker.run())
        weak_settings.warn(settings)  # after the store: it made the data dir if it was missing
        yield runtime
    finally:
        if worker_task is not None and runtime is not None and runtime.worker is not None:
            runtime.worker.stop()
            await worker_task
        if sender is not None:
            await sender.close()
        await store.close()


def _ping() -> units.Unit[None]:
    """A first statement: a database that cannot be opened says so here, before anything
    takes it for an unmigrated one."""
    yield units.value(_PING)
