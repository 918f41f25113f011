"""Dependencies named once: the runtime's parts (the store above all), settings, sender.

Auth (CONTRACT §3) plugs in here, as `AdminDep` and `CurrentUser` beside `StoreDep`.
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from hookline.config import Settings
from hookline.db import SessionMaker
from hookline.delivery import notify
from hookline.delivery.sender import Sender
from hookline.delivery.ssrf import DestinationCheck
from hookline.events.service import WAKE_WORKERS
from hookline.runtime import Runtime
from hookline.secretbox import SecretBox
from hookline.store import Store


def runtime_of(request: Request) -> Runtime:
    """The process's runtime, set by the app's lifespan."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    """Commit when the route returns, roll back when it raises; then wake the workers."""
    runtime = runtime_of(request)
    async with runtime.sessionmaker() as session:
        try:
            yield session
            if session.info.get(WAKE_WORKERS) and session.get_bind().dialect.name == "postgresql":
                # Delivered at commit, to workers in every process.
                await session.execute(notify.NOTIFY)
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        if session.info.pop(WAKE_WORKERS, False):
            runtime.wake_workers()


def _sessions(request: Request) -> SessionMaker:
    return runtime_of(request).sessionmaker


def _store(request: Request) -> Store:
    return runtime_of(request).store


def _settings(request: Request) -> Settings:
    return runtime_of(request).settings


def _secret_box(request: Request) -> SecretBox:
    return runtime_of(request).box


def _sender(request: Request) -> Sender:
    return runtime_of(request).sender


def _destinations(request: Request) -> DestinationCheck:
    return runtime_of(request).destinations


RuntimeDep = Annotated[Runtime, Depends(runtime_of)]
StoreDep = Annotated[Store, Depends(_store)]
# scope="function": commit before the response is sent, so a 201 means it is stored.
SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]
# For routes that wait on receivers: they keep their transactions short and own them.
SessionMakerDep = Annotated[SessionMaker, Depends(_sessions)]
SettingsDep = Annotated[Settings, Depends(_settings)]
SenderDep = Annotated[Sender, Depends(_sender)]
DestinationsDep = Annotated[DestinationCheck, Depends(_destinations)]
SecretBoxDep = Annotated[SecretBox, Depends(_secret_box)]
