"""Dependencies named once: the runtime's parts (the store above all), settings, sender.

Auth plugs in here, as `AdminDep` and `CallerDep` beside `StoreDep`. Every
dependency is `async def`: FastAPI runs a plain `def` one in a worker thread, a hand-off that
costs more than what these do.
"""

from typing import Annotated

from fastapi import Depends, Request

from hookline.config import Settings
from hookline.delivery.sender import Sender
from hookline.delivery.ssrf import DestinationCheck
from hookline.runtime import Runtime
from hookline.secretbox import SecretBox
from hookline.store import Store


def runtime_of(request: Request) -> Runtime:
    """The process's runtime, set by the app's lifespan."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _runtime(request: Request) -> Runtime:
    return runtime_of(request)


async def _store(request: Request) -> Store:
    return runtime_of(request).store


async def _settings(request: Request) -> Settings:
    return runtime_of(request).settings


async def _secret_box(request: Request) -> SecretBox:
    return runtime_of(request).box


async def _sender(request: Request) -> Sender:
    return runtime_of(request).sender


async def _destinations(request: Request) -> DestinationCheck:
    return runtime_of(request).destinations


RuntimeDep = Annotated[Runtime, Depends(_runtime)]
StoreDep = Annotated[Store, Depends(_store)]
SettingsDep = Annotated[Settings, Depends(_settings)]
SenderDep = Annotated[Sender, Depends(_sender)]
DestinationsDep = Annotated[DestinationCheck, Depends(_destinations)]
SecretBoxDep = Annotated[SecretBox, Depends(_secret_box)]
