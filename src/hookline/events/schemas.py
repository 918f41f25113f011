"""The event log and delivery log as the API shows them: no secrets, no queue internals."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from hookline.fields import USERNAME_PATTERN, NoNul

DeliveryStatus = Literal["pending", "succeeded", "failed", "cancelled"]
Trigger = Literal["scheduled", "manual"]


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    started_at: datetime
    duration_ms: int
    trigger: Trigger = Field(
        description="`scheduled`: the first attempt or a retry on the schedule; `manual`: asked"
        " for by hand (a retry, a recovery, a ping)."
    )
    request_headers: dict[str, str] | None = Field(
        description="The request's headers as sent, the signature included (null: nothing was"
        " sent, or the attempt predates their recording)."
    )
    status_code: int | None
    response_headers: dict[str, str] | None = Field(
        description="The answer's headers (at most 50, 4 KiB in all); null when none came."
    )
    response_body: str | None  # the first 4 KiB of the answer
    error_kind: str | None  # timeout, connection_error, tls_error, http_status, ...
    error: str | None


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    event: str
    endpoint_id: str
    url: str
    status: DeliveryStatus
    attempts_made: int
    next_attempt_at: datetime | None  # when pending: the next attempt is due then
    created_at: datetime
    finished_at: datetime | None


class DeliveryDetail(DeliveryOut):
    attempts: list[AttemptOut]


class EventOut(BaseModel):
    id: str
    event: str
    created_at: datetime
    data: dict[str, Any]


class EventDetail(EventOut):
    deliveries: list[DeliveryOut]


# The event-type catalog and application events.

TYPE_NAME_PATTERN = r"^[a-z0-9_.\-]+$"
TypeName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=TYPE_NAME_PATTERN)]
Description = Annotated[str, StringConstraints(max_length=1000), NoNul]


def _schema_field() -> Any:
    return Field(
        default=None,
        alias="schema",
        description="A JSON Schema (2020-12) that every event's `data` must match.",
    )


class EventTypeOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    name: str
    description: str | None = None
    schema_: dict[str, Any] | None = _schema_field()
    builtin: bool = False
    archived: bool = False
    created_at: datetime | None = None  # None for the built-in types


class EventTypeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: Annotated[TypeName, Field(description="Lowercase letters, digits, `_`, `.` and `-`.")]
    description: Description | None = None
    schema_: dict[str, Any] | None = _schema_field()


class EventTypePatch(BaseModel):
    """Only the fields given change; `description` and `schema` may be null to clear them."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    description: Description | None = None
    schema_: dict[str, Any] | None = _schema_field()
    archived: StrictBool | None = Field(
        default=None, description="An archived type can't be sent or newly subscribed to."
    )


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
    data: dict[str, Any]
    user: (
        Annotated[
            str,
            StringConstraints(min_length=1, max_length=64, pattern=USERNAME_PATTERN),
            Field(description="The user the event concerns: that user's endpoints get it."),
        ]
        | None
    ) = None


class EventSent(BaseModel):
    id: str
    event: str
    timestamp: datetime
    deliveries: int  # how many endpoints get it
