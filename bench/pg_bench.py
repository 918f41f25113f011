"""PostgreSQL for the benchmarks: a database of their own (`hookline_bench`), made and dropped.

Never the `test` database nor any other: only `PG_DATABASE` is created and dropped, on
`HOOKLINE_BENCH_POSTGRES` (default postgresql://postgres@127.0.0.1:5432).
"""

from pathlib import Path
from typing import Any

import asyncpg
from _common import PG_DATABASE, PG_SERVER

from hookline import migrate, secretbox
from hookline.config import Settings
from hookline.delivery import signing
from hookline.models import utcnow

URL = f"{PG_SERVER}/{PG_DATABASE}"


async def available() -> bool:
    try:
        conn = await asyncpg.connect(f"{PG_SERVER}/postgres", timeout=3)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def drop_database() -> None:
    conn = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
    finally:
        await conn.close()


async def fresh_database(data_dir: Path) -> Settings:
    """Drop and create `hookline_bench`, migrate it; Settings for it (secret key in data_dir)."""
    await drop_database()
    conn = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        await conn.execute(f"CREATE DATABASE {PG_DATABASE}")
    finally:
        await conn.close()
    settings = Settings(
        _env_file=None, data_dir=data_dir, database_url=URL, allow_private_networks=True
    )
    await migrate.upgrade(settings)
    return settings


async def fill(
    settings: Settings, made: dict[str, list[tuple[Any, ...]]], endpoints: int, sink_base: str
) -> None:
    """Endpoints wh_0.. (sink paths) and the given events, deliveries and attempts, by COPY."""
    box = secretbox.load(settings)
    conn = await asyncpg.connect(URL)
    try:
        now = utcnow()
        await conn.copy_records_to_table(
            "endpoints",
            columns=["id", "url", "secret", "enabled", "created_at"],
            records=[
                (f"wh_{n}", f"{sink_base}/hook/{n}", box.seal(signing.generate_secret()), True, now)
                for n in range(endpoints)
            ],
        )
        await conn.copy_records_to_table(
            "events", columns=["id", "event", "payload", "created_at"], records=made["events"]
        )
        await conn.copy_records_to_table(
            "deliveries",
            columns=[
                "id",
                "event_id",
                "endpoint_id",
                "status",
                "attempts_made",
                "next_attempt_at",
                "created_at",
                "finished_at",
            ],
            records=made["deliveries"],
        )
        if made.get("attempts"):
            await conn.copy_records_to_table(
                "attempts",
                columns=[
                    "delivery_id",
                    "number",
                    "started_at",
                    "duration_ms",
                    "status_code",
                    "response_body",
                    "error_kind",
                    "error",
                ],
                records=made["attempts"],
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
