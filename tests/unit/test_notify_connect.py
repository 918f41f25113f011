"""The LISTEN connection reads the database URL as the engine does."""

from sqlalchemy.ext.asyncio import create_async_engine

from hookline.delivery import notify


def test_listen_connection_takes_the_engines_reading_of_the_url() -> None:
    engine = create_async_engine("postgresql+asyncpg://app:pw@db.internal:6432/hooks?ssl=require")

    assert notify.connect_args(engine) == {
        "host": "db.internal",
        "port": 6432,
        "user": "app",
        "password": "pw",
        "database": "hooks",
        "ssl": "require",
    }
