"""While the database cannot be reached the API answers 503 with Retry-After, not 500."""

from typing import Any

from hookline.config import Settings
from hookline.store import open_store
from tests.support.app import RunningApp

# Nothing listens on port 1: every connection is refused, as while PostgreSQL restarts.
UNREACHABLE = "postgresql+asyncpg://postgres@127.0.0.1:1/hookline"


def cut_off(api: RunningApp) -> None:
    """Point the running app at a database that refuses connections."""
    api.app.state.runtime.store = open_store(Settings(_env_file=None, database_url=UNREACHABLE))


async def test_requests_get_503_with_retry_after_while_the_database_is_down(
    api: RunningApp,
) -> None:
    user: dict[str, Any] = (await api.client.post("/users", json={"username": "alice"})).json()
    real_store = api.app.state.runtime.store
    cut_off(api)
    try:
        answers = [
            await api.client.post("/users", json={"username": "bob"}),
            await api.client.get("/users"),
            await api.client.get(f"/users/messages?recipient={user['username']}"),
            await api.client.get("/events"),
        ]
        ready = await api.client.get("/ready")
    finally:
        await api.app.state.runtime.store.close()
        api.app.state.runtime.store = real_store
    back = await api.client.post("/users", json={"username": "bob"})

    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "1"
        assert answer.json() == {"detail": "The database is unavailable; try again shortly"}
    assert ready.status_code == 503
    assert back.status_code == 201  # nothing of bob was written while it was down
