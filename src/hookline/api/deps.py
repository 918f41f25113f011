"""Dependencies named once: the request's session (it owns the transaction), settings, sender.

Auth (CONTRACT §3) plugs in here, as `AdminDep` and `CurrentUser` beside `SessionDep`.
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from hookline.config import Settings
from hookline.db import SessionMaker
from hookline.delivery import notify
from hookline.delivery.sender import Sender
from hookline.events.service import WAKE_WORKERS
from hookline.secretbox import SecretBox


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    """Commit when the route returns, roll back when it raises; then wake the workers."""
    state = request.app.state
    async with state.sessionmaker() as session:
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
            state.wake_workers()


def _sessions(request: Request) -> SessionMaker:
    sessions: SessionMaker = request.app.state.sessionmaker
    return sessions


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _secret_box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box


def _sender(request: Request) -> Sender:
    sender: Sender = request.app.state.sender
    return sender


# scope="function": commit before the response is sent, so a 201 means it is stored.
SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]
# For routes that wait on receivers: they keep their transactions short and own them.
SessionMakerDep = Annotated[SessionMaker, Depends(_sessions)]
SettingsDep = Annotated[Settings, Depends(_settings)]
SenderDep = Annotated[Sender, Depends(_sender)]
SecretBoxDep = Annotated[SecretBox, Depends(_secret_box)]
