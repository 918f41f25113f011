"""index each endpoint's pending deliveries in due order

Revision ID: 0004
Revises: 0003

A claim that passes over an endpoint whose slots are full (a slow or hanging receiver with a
backlog) probes the other endpoints through this index, instead of walking that endpoint's
backlog in ix_deliveries_due. On a large PostgreSQL table, build it first with
CREATE INDEX CONCURRENTLY under the same name and definition; this migration then skips it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_endpoint_pending",
        "deliveries",
        ["endpoint_id", "next_attempt_at"],
        unique=False,
        if_not_exists=True,
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_endpoint_pending", table_name="deliveries")
