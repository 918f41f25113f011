"""Alembic environment: uses the connection hookline hands in, or builds one from Settings."""

import asyncio
from functools import partial

from alembic import context
from sqlalchemy.engine import Connection

from hookline import secretbox
from hookline.config import Settings
from hookline.migrate import migration_engine
from hookline.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_standalone() -> None:
    settings = Settings()
    if context.config.attributes.get("secret_box") is None:  # for 0009's sealing
        context.config.attributes["secret_box"] = partial(secretbox.load, settings)
    engine = migration_engine(settings)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


given = context.config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    asyncio.run(_run_standalone())
