"""The event log and delivery log as the API shows them: no secrets, no queue internals."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

DeliveryStatus = Literal["pending", "succeeded", "failed", "cancelled"]


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
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
