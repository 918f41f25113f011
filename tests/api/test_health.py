from hookline.config import Settings
from hookline.store import open_store
from tests.support.app import running_app


async def test_health_answers_ok(api):
    response = await api.client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_when_the_database_answers_and_is_migrated(api):
    response = await api.client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_not_ready_when_the_database_is_unreachable(api):
    runtime = api.app.state.runtime
    working = runtime.store
    runtime.store = open_store(
        Settings(_env_file=None, database_url="postgresql://nobody@127.0.0.1:1/none")
    )
    try:
        response = await api.client.get("/ready")
    finally:
        await runtime.store.close()
        runtime.store = working
    assert response.status_code == 503
    assert response.json() == {"status": "database unreachable"}


async def test_not_ready_while_migrations_are_pending(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path)
    async with running_app(settings, migrate_db=False) as unmigrated:
        response = await unmigrated.client.get("/ready")
    assert response.status_code == 503
    assert response.json() == {"status": "migrations pending"}


async def test_openapi_and_docs_are_served(api):
    schema = await api.client.get("/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/users", "/users/messages", "/webhook", "/webhooks", "/ping"} <= set(paths)
    assert (await api.client.get("/docs")).status_code == 200
    assert (await api.client.get("/redoc")).status_code == 200
