"""Request and response bodies of the webhook routes: the original ones and those by id."""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)

from hookline.events.schemas import AttemptOut
from hookline.fields import NoNul

EventName = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
Url = Annotated[str, StringConstraints(min_length=1, max_length=2048, strip_whitespace=True)]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: EventName
    url: Url


class WebhookRegistered(BaseModel):
    message: str
    url: str
    event: str
    id: str
    secret: str


class EventUrls(BaseModel):
    event: str
    urls: list[str]


class WebhookList(BaseModel):
    webhooks: list[EventUrls]


class PingEntry(BaseModel):
    event: str
    url: str
    status_code: int | None = None
    payload: dict[str, Any] | None = None
    error: str | None = None


class PingReport(BaseModel):
    successful_webhooks_count: int
    successful_webhooks: list[PingEntry]
    failed_webhooks_count: int
    failed_webhooks: list[PingEntry]
    message: str


# Endpoints by id.


class DeliveryStats(BaseModel):
    pending: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0


class EndpointSummary(BaseModel):
    """An endpoint as lists show it."""

    id: str
    url: str
    owner: str | None = Field(description="The user whose endpoint it is; null: the admin's.")
    description: str | None
    events: list[str]
    headers: dict[str, str]
    filter: dict[str, Any] | None
    rate_limit: float | None
    ordered: bool
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    failing_since: datetime | None  # the first failure since the last success
    created_at: datetime


class EndpointOut(EndpointSummary):
    stats: DeliveryStats


class EndpointCreated(EndpointOut):
    secret: str


Events = Annotated[list[EventName], Field(min_length=1, max_length=16)]
Filter = dict[str, Any] | None
RateLimit = Annotated[float, Field(gt=0, le=10_000)] | None
_FILTER = (
    "Only events that match get a delivery: paths of the envelope (`event`, `data.…`) to a"
    " value or to operators `$eq $ne $in $nin $gt $gte $lt $lte $exists`; `$and`, `$or`, `$not`."
)
_RATE_LIMIT = "At most this many attempts per second, over all workers; the rest wait."
_ORDERED = "One at a time, in the order the events were stored."
Description = Annotated[str, StringConstraints(max_length=1000), NoNul]


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url
    events: Events = Field(description='Event types, or `["*"]` for all of them.')
    description: Description | None = None
    headers: dict[str, str] | None = Field(default=None, description="Sent with every attempt.")
    secret: Annotated[str, StringConstraints(max_length=128)] | None = Field(
        default=None,
        description="Your own `whsec_…` secret (24 to 64 random bytes, base64); one is made if"
        " not given.",
    )
    filter: Filter = Field(default=None, description=_FILTER)
    rate_limit: RateLimit = Field(default=None, description=_RATE_LIMIT)
    ordered: StrictBool = Field(default=False, description=_ORDERED)
    owner: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None,
        description="(Admin only) the username whose endpoint this is; a user's own token"
        " makes it that user's.",
    )


class EndpointPatch(BaseModel):
    """Only the fields given change; `description` and `headers` may be null to clear them."""

    model_config = ConfigDict(extra="forbid")

    url: Url | None = None
    events: Events | None = None
    description: Description | None = None
    headers: dict[str, str] | None = Field(
        default=None, description="Sent with every attempt; replaces the present ones."
    )
    filter: Filter = Field(default=None, description=_FILTER + " null removes it.")
    rate_limit: RateLimit = Field(default=None, description=_RATE_LIMIT + " null: no limit.")
    ordered: StrictBool | None = Field(default=None, description=_ORDERED)
    enabled: StrictBool | None = Field(
        default=None, description="true re-enables a disabled endpoint; false disables it."
    )

    @model_validator(mode="after")
    def _no_null_for_required(self) -> "EndpointPatch":
        for name in ("url", "events", "enabled", "ordered"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"'{name}' cannot be null")
        return self


class SecretOut(BaseModel):
    secret: str


class RotatedSecret(SecretOut):
    previous_valid_until: datetime  # the old secret signs beside the new one until then


RecoverableStatus = Literal["failed", "cancelled", "pending"]


class RecoverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime
    until: AwareDatetime | None = None
    statuses: list[RecoverableStatus] = Field(
        default=["failed"],
        min_length=1,
        max_length=3,
        description="Which deliveries to send again: `failed` (the default), `cancelled`,"
        " `pending` (those waiting for a later retry are sent now).",
    )

    @model_validator(mode="after")
    def _ordered(self) -> "RecoverIn":
        try:  # the database compares in UTC: a time that has none is refused here
            since = self.since.astimezone(UTC)
            until = None if self.until is None else self.until.astimezone(UTC)
        except OverflowError as exc:
            raise ValueError("'since' and 'until' must be within years 1 to 9999 in UTC") from exc
        if until is not None and until <= since:
            raise ValueError("'until' must be later than 'since'")
        return self


class Requeued(BaseModel):
    requeued: int


class PingAttempt(BaseModel):
    event_id: str
    delivery_id: str
    payload: dict[str, Any]
    attempt: AttemptOut
