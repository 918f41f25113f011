"""custom header values sealed at rest, as endpoint secrets are

Revision ID: 0009
Revises: 0008

`endpoints.headers` keeps its shape, {name: value}, with each value sealed (`fernet:…`, the
secret box of HOOKLINE_SECRET_KEY; names stay readable). The upgrade seals the values stored in
plain text, after checking that the key opens the stored secrets (a wrong key must not seal
anything), and clears a deleted endpoint's headers, as DELETE now does. The downgrade opens
them again (a key that does not open one raises SecretKeyError; nothing changes). No column
changes: the revision marks which releases read the values sealed (an older one refuses a
database at this revision instead of sending `fernet:…` as a header's value).
"""

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from hookline.migrate import secret_box
from hookline.secretbox import SEALED_PREFIX, SecretBox

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

endpoints = sa.table(
    "endpoints",
    sa.column("id", sa.String),
    sa.column("secret", sa.Text),
    sa.column("headers", sa.JSON),
    sa.column("deleted_at", sa.DateTime(timezone=True)),
)
LIVE = endpoints.c.deleted_at.is_(None)


def _with_headers() -> list[tuple[str, dict[str, str]]]:
    found = op.get_bind().execute(
        sa.select(endpoints.c.id, endpoints.c.headers)
        .where(LIVE, endpoints.c.headers.is_not(None))
        .order_by(endpoints.c.id)
    )
    return [(row[0], row[1]) for row in found if row[1]]


def _checked_box() -> SecretBox:
    """The box, once it opens the newest live endpoint's sealed secret (as at start)."""
    box = secret_box(context.config)
    newest = op.get_bind().scalar(
        sa.select(endpoints.c.secret)
        .where(LIVE, endpoints.c.secret.like(SEALED_PREFIX + "%"))
        .order_by(endpoints.c.id.desc())
        .limit(1)
    )
    if newest is not None:
        box.open(newest)  # SecretKeyError, naming the key
    return box


def _rewrite(change: Callable[[SecretBox, str], str], box: Callable[[], SecretBox]) -> None:
    rows = _with_headers()
    if not rows:
        return  # nothing to seal or open: no key needed
    opened = box()
    changed: list[dict[str, Any]] = []
    for endpoint_id, headers in rows:
        new = {name: change(opened, value) for name, value in headers.items()}
        if new != headers:
            changed.append({"row_id": endpoint_id, "new_headers": new})
    if changed:
        statement = (
            endpoints.update()
            .where(endpoints.c.id == sa.bindparam("row_id"))
            .values(headers=sa.bindparam("new_headers", type_=sa.JSON))
        )
        op.get_bind().execute(statement, changed)


def _seal(box: SecretBox, value: str) -> str:
    # A value sealed already (by a release that ran before this migration did) stays.
    return value if value.startswith(SEALED_PREFIX) else box.seal(value)


def upgrade() -> None:
    op.execute(endpoints.update().where(~LIVE).values(headers=sa.null()))
    _rewrite(_seal, _checked_box)


def downgrade() -> None:
    _rewrite(SecretBox.open, lambda: secret_box(context.config))
