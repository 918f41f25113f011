"""Request and response bodies of the user routes (the original service's field names)."""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from hookline.fields import USERNAME_PATTERN, NoNul

Username = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=USERNAME_PATTERN),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserCreate(Strict):
    username: Username


class UserOut(BaseModel):
    id: str
    username: str
    registered_at: datetime


class UserCreated(UserOut):
    token: str | None  # None when replayed under an Idempotency-Key: the token is shown once


class UserToken(BaseModel):
    username: str
    token: str


class MessageCreate(Strict):
    sender: Username
    recipient: Username
    subject: Annotated[str, StringConstraints(max_length=200), NoNul] = ""
    message: Annotated[str, StringConstraints(min_length=1, max_length=10_000), NoNul]


class MessageOut(BaseModel):
    id: str
    sender: str
    recipient: str
    subject: str
    message: str
    received_at: datetime
