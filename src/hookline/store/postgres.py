"""PostgreSQL through asyncpg: a pool, statements prepared once per connection, one unit per
transaction (PostgreSQL runs them side by side; there is nothing to group)."""

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from hookline.store.sql import postgres_value
from hookline.store.units import IntegrityError, Mode, Op, StoreUnavailable, Unit

log = logging.getLogger("hookline.store")

T = TypeVar("T")

NOTIFY_CHANNEL = "hookline_wake"
_NOTIFY = f"NOTIFY {NOTIFY_CHANNEL}"
# The transaction's id, read before COMMIT, to tell afterwards whether a COMMIT whose answer was
# lost (the connection dropped) took effect.
_XID = "SELECT txid_current()"
_XID_STATUS = "SELECT txid_status($1)"
IN_DOUBT_SECONDS = 5.0

# What asyncpg raises while PostgreSQL is down, starts, stops or drops a connection.
_OUTAGES: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    # Raised by a connection that was lost mid-operation ("another operation in progress").
    asyncpg.InternalClientError,
)


def _unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot be reached now. Only the error itself is
    judged: a unit's own error may carry an OSError as its cause (a URL that did not resolve)."""
    if isinstance(exc, _OUTAGES):
        return True
    code = str(getattr(exc, "sqlstate", "") or "")
    return code.startswith(("08", "57P", "53"))


def _args(op: Op) -> list[Any]:
    assert op.statement is not None
    params = op.params
    return [postgres_value(params.get(name)) for name in op.statement.names]


class PostgresBackend:
    dialect = "postgresql"

    def __init__(self, dsn: str, pool_size: int, on_wake: Callable[[], None]) -> None:
        self.dsn = dsn
        self._pool_size = pool_size
        self._on_wake = on_wake
        self._pool: asyncpg.Pool | None = None
        self._closed = False
        self._opening = asyncio.Lock()  # many first requests at once must make one pool

    async def _connection_pool(self) -> Any:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                try:
                    self._pool = await asyncpg.create_pool(
                        self.dsn,
                        min_size=1,
                        max_size=self._pool_size,
                        max_inactive_connection_lifetime=60,
                    )
                except BaseException as exc:
                    if _unavailable(exc):
                        raise StoreUnavailable(str(exc)) from exc
                    raise
        return self._pool

    async def write(self, unit: Unit[T], *, aside: bool = False) -> T:
        # Every unit runs beside the event loop here (asyncpg waits on sockets): `aside` is moot.
        pool = await self._connection_pool()
        xid: int | None = None
        try:
            async with pool.acquire() as conn:
                transaction = conn.transaction()
                await transaction.start()
                try:
                    result, woken = await _drive(conn, unit)
                    if woken:
                        await conn.execute(_NOTIFY)  # delivered at commit, to every process
                    xid = await conn.fetchval(_XID)
                except BaseException:
                    if not conn.is_closed():
                        await transaction.rollback()
                    raise
                await transaction.commit()
        except asyncpg.IntegrityConstraintViolationError as exc:  # a deferred check, at COMMIT
            raise IntegrityError(str(exc)) from exc
        except BaseException as exc:
            if not _unavailable(exc):
                raise
            # The connection went while COMMIT was on its way: the server may have committed.
            # Ask it (once it answers again) rather than answer "nothing was written" wrongly.
            if xid is None or not await self._committed(xid):
                raise StoreUnavailable(str(exc)) from exc
        if woken:
            self._on_wake()
        return result

    async def _committed(self, xid: int) -> bool:
        """Whether transaction `xid` committed, asked on a new connection for a few seconds
        (a restarting server answers within them); False when it cannot be told."""
        deadline = asyncio.get_running_loop().time() + IN_DOUBT_SECONDS
        while True:
            try:
                conn = await asyncpg.connect(self.dsn, timeout=1)
                try:
                    status = await conn.fetchval(_XID_STATUS, xid)
                finally:
                    await conn.close()
                return bool(status == "committed")
            except BaseException as exc:
                if not _unavailable(exc) or asyncio.get_running_loop().time() > deadline:
                    return False
                await asyncio.sleep(0.2)

    async def read(self, unit: Unit[T]) -> T:
        pool = await self._connection_pool()
        try:
            async with pool.acquire() as conn:
                result, _ = await _drive(conn, unit)
                return result
        except BaseException as exc:
            if _unavailable(exc):
                raise StoreUnavailable(str(exc)) from exc
            raise

    async def lookup(self, make_unit: Callable[[], Unit[T]]) -> T:
        return await self.read(make_unit())

    async def close(self) -> None:
        self._closed = True
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await pool.close()
            except Exception:  # a pool whose server went away: nothing left to close cleanly
                pool.terminate()


async def _run(conn: Any, op: Op) -> Any:
    assert op.statement is not None
    text = op.statement.postgres
    if op.mode is Mode.MANY:
        batch = [[postgres_value(p.get(n)) for n in op.statement.names] for p in op.params]
        if batch:
            await conn.executemany(text, batch)
        return None
    args = _args(op)
    if op.mode is Mode.ALL:
        return await conn.fetch(text, *args)
    if op.mode is Mode.ONE:
        return await conn.fetchrow(text, *args)
    if op.mode is Mode.VALUE:
        return await conn.fetchval(text, *args)
    status: str = await conn.execute(text, *args)
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


async def _drive(conn: Any, unit: Unit[T]) -> tuple[T, bool]:
    woken = False
    try:
        op = next(unit)
        while True:
            if op.mode is Mode.WAKE:
                woken = True
                op = unit.send(None)
                continue
            try:
                if op.guarded:
                    async with conn.transaction():  # a savepoint: a violation leaves the rest
                        result = await _run(conn, op)
                else:
                    result = await _run(conn, op)
            except asyncpg.IntegrityConstraintViolationError as exc:
                if not op.guarded:  # the transaction is aborted: the unit cannot go on
                    raise IntegrityError(str(exc)) from exc
                op = unit.throw(IntegrityError(str(exc)))
                continue
            op = unit.send(result)
    except StopIteration as done:
        value: T = done.value
        return value, woken
    finally:
        unit.close()
