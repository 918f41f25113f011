"""Every table, in one place. ORM only: API schemas live in each domain package."""

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every dialect (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    registered_at: Mapped[datetime]


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_recipient", "recipient_id", "id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    sender_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    recipient_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime]


class Endpoint(Base):
    __tablename__ = "endpoints"
    __table_args__ = (
        # One endpoint per URL for the admin, and per URL for each user: a user's URL never
        # collides with another's (nor tells it that the other has it).
        # A deleted endpoint's URL is free again.
        Index(
            "uq_endpoints_admin_url",
            "url",
            unique=True,
            postgresql_where=text("owner_id IS NULL AND deleted_at IS NULL"),
            sqlite_where=text("owner_id IS NULL AND deleted_at IS NULL"),
        ),
        Index(
            "uq_endpoints_owner_url",
            "owner_id",
            "url",
            unique=True,
            postgresql_where=text("owner_id IS NOT NULL AND deleted_at IS NULL"),
            sqlite_where=text("owner_id IS NOT NULL AND deleted_at IS NULL"),
        ),
        # The few paced endpoints (rate-limited or ordered), which claims serve apart.
        Index(
            "ix_endpoints_paced",
            "id",
            postgresql_where=text("rate_limit IS NOT NULL OR ordered"),
            sqlite_where=text("rate_limit IS NOT NULL OR ordered"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    # The user whose endpoint this is (it gets only the events that concern that user);
    # NULL for the admin's, which get every event they subscribe to.
    owner_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    description: Mapped[str | None] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text)
    old_secret: Mapped[str | None] = mapped_column(Text)
    old_secret_until: Mapped[datetime | None]
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    disabled_at: Mapped[datetime | None]
    # When its deliveries started failing without a success since (the auto-disable clock).
    failing_since: Mapped[datetime | None]
    # Custom request headers sent with every attempt, {name: value}, each value sealed at rest
    # (secretbox.py; names readable).
    headers: Mapped[dict[str, Any] | None]
    # Per-endpoint delivery options: which events get a delivery, attempts per second, one at
    # a time in stored order.
    filter: Mapped[dict[str, Any] | None]
    rate_limit: Mapped[float | None] = mapped_column(Float)
    ordered: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    # A rate-limited endpoint's next attempt may start no earlier (claims move it on).
    rate_next_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    # When DELETE removed it: hidden from every endpoint route, its deliveries and their
    # attempts still readable until retention prunes them (and then this row).
    deleted_at: Mapped[datetime | None]


class EventType(Base):
    """An application-defined event type (the built-in ones are hookline's code, not rows)."""

    __tablename__ = "event_types"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str | None] = mapped_column(Text)
    # A JSON Schema (2020-12) for the events' `data`; NULL accepts any object.
    schema: Mapped[dict[str, Any] | None]
    archived: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event"),
        Index("ix_subscriptions_event", "event"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(64))


class Event(Base):
    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    event: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[dict[str, Any]]
    # The user the event concerns (a message's recipient, `"user"` of POST /events): only that
    # user's endpoints get it, beside the admin's.
    user_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(index=True)


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        # Each endpoint's pending deliveries in due order: a claim that must pass over an
        # endpoint (its slots are full) probes every other endpoint here instead of walking
        # that endpoint's backlog in ix_deliveries_due.
        Index(
            "ix_deliveries_endpoint_pending",
            "endpoint_id",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index("ix_deliveries_endpoint", "endpoint_id", "id"),
        # An ordered endpoint's head: its oldest pending delivery, in stored order.
        Index(
            "ix_deliveries_endpoint_head",
            "endpoint_id",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index("ix_deliveries_event", "event_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))  # pending, succeeded, failed, cancelled
    attempts_made: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    # A manual retry asked for while an attempt was in flight: recording that attempt leaves
    # the delivery due again instead of finishing it.
    retry_requested_at: Mapped[datetime | None]
    # The next attempt was asked for by hand (a retry, a recovery): it is recorded with the
    # trigger `manual`. Read when the delivery is claimed, cleared when that attempt is
    # recorded (unless another was asked for meanwhile).
    manual: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class Attempt(Base):
    __tablename__ = "attempts"
    __table_args__ = (Index("ix_attempts_delivery", "delivery_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    number: Mapped[int]
    started_at: Mapped[datetime]
    duration_ms: Mapped[int]
    # scheduled (the first attempt, or a retry on the schedule) or manual (asked for by hand).
    trigger: Mapped[str] = mapped_column(String(16), server_default=text("'scheduled'"))
    # The request's headers as sent (the signature included), {name: value}; NULL when
    # nothing was sent (a destination refused) or for attempts from before 0008.
    request_headers: Mapped[dict[str, Any] | None]
    status_code: Mapped[int | None]
    # The answer's headers, capped (sender.py); NULL when no answer came.
    response_headers: Mapped[dict[str, Any] | None]
    response_body: Mapped[str | None] = mapped_column(Text)
    error_kind: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)


class IdempotencyKey(Base):
    """The first answer to a request sent with an Idempotency-Key, replayed for 24 hours."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(160), primary_key=True)  # route and caller
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int]
    response: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(index=True)


class AdminToken(Base):
    """The hash of the admin token generated at first start (when none is configured)."""

    __tablename__ = "admin_tokens"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)  # 1: one admin
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
