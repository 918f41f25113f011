"""recovery that recovers: attempts' trigger and headers, manual redeliveries, soft deletes

Revision ID: 0008
Revises: 0007

`attempts.trigger` (scheduled or manual), `attempts.request_headers` and
`attempts.response_headers`; `deliveries.manual`, the mark a retry or recovery leaves for the
next attempt; `endpoints.deleted_at`: DELETE keeps the endpoint's row (hidden) so that its
deliveries stay readable, and its URL is free again, so the unique indexes leave deleted rows
out. Every column is added in place (nullable, or with a constant default); the indexes are
indexes, not constraints, on both databases: dropped and made again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ADMIN, OWNER = "owner_id IS NULL", "owner_id IS NOT NULL"
LIVE = " AND deleted_at IS NULL"


def _url_indexes(live_only: bool) -> None:
    suffix = LIVE if live_only else ""
    for name, columns, where in (
        ("uq_endpoints_admin_url", ["url"], ADMIN),
        ("uq_endpoints_owner_url", ["owner_id", "url"], OWNER),
    ):
        op.drop_index(name, table_name="endpoints")
        op.create_index(
            name,
            "endpoints",
            columns,
            unique=True,
            postgresql_where=sa.text(where + suffix),
            sqlite_where=sa.text(where + suffix),
        )


def upgrade() -> None:
    op.add_column(
        "attempts",
        sa.Column(
            "trigger", sa.String(length=16), server_default=sa.text("'scheduled'"), nullable=False
        ),
    )
    op.add_column("attempts", sa.Column("request_headers", sa.JSON(), nullable=True))
    op.add_column("attempts", sa.Column("response_headers", sa.JSON(), nullable=True))
    op.add_column(
        "deliveries",
        sa.Column("manual", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column("endpoints", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    _url_indexes(live_only=True)


def downgrade() -> None:
    # The old schema has no deleted endpoints: they go, with what they still had (children
    # first: the migration's connection may not enforce the foreign keys' cascades).
    deleted = "SELECT id FROM endpoints WHERE deleted_at IS NOT NULL"
    op.execute(
        "DELETE FROM attempts WHERE delivery_id IN"
        f" (SELECT id FROM deliveries WHERE endpoint_id IN ({deleted}))"
    )
    op.execute(f"DELETE FROM deliveries WHERE endpoint_id IN ({deleted})")
    op.execute(f"DELETE FROM subscriptions WHERE endpoint_id IN ({deleted})")
    op.execute("DELETE FROM endpoints WHERE deleted_at IS NOT NULL")
    _url_indexes(live_only=False)
    # SQLite (3.35 and later) drops a column in place, keeping the table and its indexes.
    op.drop_column("endpoints", "deleted_at")
    op.drop_column("deliveries", "manual")
    op.drop_column("attempts", "response_headers")
    op.drop_column("attempts", "request_headers")
    op.drop_column("attempts", "trigger")
