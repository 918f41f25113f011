"""Request and response bodies of the original webhook routes."""

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints

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
