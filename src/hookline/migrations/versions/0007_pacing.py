"""per-endpoint pacing: rate limits summed over workers, ordered delivery

Revision ID: 0007
Revises: 0006

`endpoints.rate_next_at`: the earliest time the next attempt to a rate-limited endpoint may start
(claims move it on by 1/rate per attempt, under the endpoint's row lock, so every worker
process shares one pace). An index finds an ordered endpoint's head (its oldest pending
delivery) and one the few paced endpoints.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("status = 'pending'")
PACED = sa.text("rate_limit IS NOT NULL OR ordered")


def upgrade() -> None:
    op.add_column("endpoints", sa.Column("rate_next_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_deliveries_endpoint_head",
        "deliveries",
        ["endpoint_id", "id"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    op.create_index(
        "ix_endpoints_paced", "endpoints", ["id"], postgresql_where=PACED, sqlite_where=PACED
    )


def downgrade() -> None:
    op.drop_index("ix_endpoints_paced", table_name="endpoints")
    op.drop_index("ix_deliveries_endpoint_head", table_name="deliveries")
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("rate_next_at")
