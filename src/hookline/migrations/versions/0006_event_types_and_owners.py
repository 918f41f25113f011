"""event types, users' own endpoints, the events' user, per-endpoint delivery options

Revision ID: 0006
Revises: 0005

The endpoints' URL stops being unique across everyone: it is unique among the admin's
endpoints and among each user's. On SQLite dropping the old UNIQUE rebuilds the table (batch
mode; the migration's connection does not enforce foreign keys, so nothing cascades).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Names the unnamed constraints of 0001 on SQLite (PostgreSQL named it endpoints_url_key).
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    op.create_table(
        "event_types",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("schema", sa.JSON(), nullable=True),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.add_column("events", sa.Column("user_id", sa.String(length=32), nullable=True))
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        _refuse_cascading_rebuild()
    with op.batch_alter_table(
        "endpoints", naming_convention=_NAMING, recreate="always" if sqlite else "never"
    ) as batch:
        batch.add_column(sa.Column("owner_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("filter", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("rate_limit", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column("ordered", sa.Boolean(), server_default=sa.text("false"), nullable=False)
        )
        batch.create_foreign_key("fk_endpoints_owner_id_users", "users", ["owner_id"], ["id"])
        batch.drop_constraint("uq_endpoints_url" if sqlite else "endpoints_url_key", "unique")
    where_admin, where_owner = sa.text("owner_id IS NULL"), sa.text("owner_id IS NOT NULL")
    op.create_index(
        "uq_endpoints_admin_url",
        "endpoints",
        ["url"],
        unique=True,
        postgresql_where=where_admin,
        sqlite_where=where_admin,
    )
    op.create_index(
        "uq_endpoints_owner_url",
        "endpoints",
        ["owner_id", "url"],
        unique=True,
        postgresql_where=where_owner,
        sqlite_where=where_owner,
    )


def _refuse_cascading_rebuild() -> None:
    """The rebuild drops the old table: where foreign keys are enforced (hookline's own
    migrations never enforce them) that would delete every subscription and delivery."""
    bind = op.get_bind()
    enforced = bind.exec_driver_sql("PRAGMA foreign_keys").scalar()
    if enforced and bind.exec_driver_sql("SELECT 1 FROM endpoints LIMIT 1").first():
        raise RuntimeError(
            "migration 0006 rebuilds the endpoints table and must run with SQLite's foreign"
            " keys off (PRAGMA foreign_keys=OFF), as `hookline migrate` runs it"
        )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        _refuse_cascading_rebuild()
    op.drop_index("uq_endpoints_owner_url", table_name="endpoints")
    op.drop_index("uq_endpoints_admin_url", table_name="endpoints")
    # Users' endpoints have no place in the old schema (its URLs were unique across everyone).
    op.execute("DELETE FROM endpoints WHERE owner_id IS NOT NULL")
    with op.batch_alter_table(
        "endpoints", naming_convention=_NAMING, recreate="always" if sqlite else "never"
    ) as batch:
        batch.create_unique_constraint(
            "uq_endpoints_url" if sqlite else "endpoints_url_key", ["url"]
        )
        batch.drop_constraint("fk_endpoints_owner_id_users", "foreignkey")
        batch.drop_column("ordered")
        batch.drop_column("rate_limit")
        batch.drop_column("filter")
        batch.drop_column("owner_id")
    op.drop_column("events", "user_id")
    op.drop_table("event_types")
