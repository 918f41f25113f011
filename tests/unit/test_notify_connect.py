"""The LISTEN connection reads the database URL as the store does."""

import asyncio
from typing import Any

import pytest

from hookline.config import Settings
from hookline.delivery import notify
from hookline.store import postgres_dsn

URL = "postgresql+asyncpg://app:pw@db.internal:6432/hooks?ssl=require"


async def test_listen_dials_the_stores_dsn_with_its_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dialled: list[Any] = []

    async def connect(*args: Any, **kwargs: Any) -> Any:
        dialled.append((args, kwargs))
        raise asyncio.CancelledError  # enough: stop listening at the first dial

    monkeypatch.setattr(notify.asyncpg, "connect", connect)
    dsn = postgres_dsn(Settings(_env_file=None, database_url=URL))

    with pytest.raises(asyncio.CancelledError):
        await notify.listen(dsn, lambda: None)

    assert dialled == [(("postgresql://app:pw@db.internal:6432/hooks?ssl=require",), {})]
