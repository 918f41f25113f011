"""remember a manual retry asked for while an attempt is in flight

Revision ID: 0005
Revises: 0004

A nullable column with no default: adding it rewrites nothing, on either database.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "deliveries", sa.Column("retry_requested_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    # SQLite (3.35 and later) drops a column in place, keeping the table and its indexes.
    op.drop_column("deliveries", "retry_requested_at")
