"""What the dashboard's overview reads that no API route does: the endpoints in trouble.

Units of work like the services' own, each taking the caller's `scope` (None for the admin,
else a user's id: that user's endpoints only).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hookline.store import units
from hookline.store.sql import pick, ts, variants
from hookline.store.units import Unit

Scope = str | None

# Failing (a failure since the last success) or disabled: the few an operator has to look at.
# The endpoints table is small (one row per receiver); the limit bounds the page.
_TROUBLED = variants(
    "SELECT id, url, enabled, disabled_reason, failing_since FROM endpoints",
    "ORDER BY enabled, failing_since, id LIMIT :limit",
    # A deleted endpoint (DELETE keeps its row for its deliveries' sake) is gone from view.
    always=["(failing_since IS NOT NULL OR enabled = FALSE)", "deleted_at IS NULL"],
    optional={"owner_id": "owner_id = :owner_id"},
)


@dataclass(frozen=True, slots=True)
class Troubled:
    id: str
    url: str
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None


def troubled_endpoints(*, scope: Scope, limit: int = 20) -> Unit[list[Troubled]]:
    """Disabled endpoints, then failing ones, the longest failing first."""
    params = {"owner_id": scope}
    found: Sequence[Sequence[Any]] = yield units.rows(
        pick(_TROUBLED, params), {**params, "limit": limit}
    )
    return [
        Troubled(
            id=row[0],
            url=row[1],
            enabled=bool(row[2]),
            disabled_reason=row[3],
            failing_since=ts(row[4]),
        )
        for row in found
    ]
