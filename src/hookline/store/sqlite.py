"""SQLite: many units in one transaction, committed by the event loop that made them.

SQLite has one writer. The units an event loop hands over are run in one transaction, each in
a savepoint (a unit that fails rolls back alone and its caller gets its error), committed, and
only then answered, so nothing is acknowledged before it is durable.

The loop commits its group itself, in its own thread, once a turn of it has passed without a
new unit (at most `HOLD_SECONDS` after the first): a commit costs about as much for one unit as
for thirty, so groups should be large, and a group committed in another thread while the loop
serves the next requests made both threads fight for the GIL (the writer lets go of it in every
statement and waits for it back): P2 and P1 each gained ~30% when the loops took their commits
over (docs/benchmarks.md). The price: a loop waits while it commits (a group of 32 units of
POST /users/messages takes ~4 ms), as it waits for any other work it does. That connection never
waits for a lock: when another process (or another loop of this one) holds the write lock, the
group goes to the writer thread, which waits for it as long as `BUSY_TIMEOUT_MS`; that thread
also runs the WAL checkpoints (they write the database file and fsync it), so the loop never
does. Reads run on a connection of their own in a reader thread (WAL lets them run beside the
writer); point reads by index run in the loop (`lookup`).
"""

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any, TypeVar

import orjson

from hookline.store.sql import PLAIN_TYPES, Statement, sqlite_time, sqlite_value
from hookline.store.units import IntegrityError, Mode, Op, StoreUnavailable, Unit

log = logging.getLogger("hookline.store")

T = TypeVar("T")

# Units committed in one transaction at most: bounds the latency a large group adds.
MAX_GROUP = 256
# How long an event loop keeps adding units to its group while each turn brings more.
HOLD_SECONDS = 0.002
# The loop's connection checkpoints nothing itself: after this many of its commits, the writer
# thread runs a passive checkpoint (SQLite's own default is every 1,000 WAL pages).
CHECKPOINT_EVERY = 100
BUSY_TIMEOUT_MS = 30_000
# A lookup run in the event loop gives up on a busy file this soon (and goes to the reader).
INLINE_BUSY_MS = 0


def connect(
    path: Path, *, readonly: bool = False, busy_ms: int = BUSY_TIMEOUT_MS
) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, foreign keys on."""
    conn = sqlite3.connect(
        path,
        isolation_level=None,
        check_same_thread=False,
        cached_statements=512,
        timeout=busy_ms / 1000,
    )
    conn.row_factory = sqlite3.Row
    if not readonly:
        _use_wal(conn)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={busy_ms}")
    if readonly:
        conn.execute("PRAGMA query_only=ON")
    else:
        # The writer's savepoint (one per unit) and statement journals in memory: on disk, past
        # 64 KiB (a unit or two), every page a unit first touches was also written to a temp file,
        # about 50 pwrite calls per unit of POST /users/messages.
        conn.execute("PRAGMA temp_store=MEMORY")
    return conn


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL unless it is already (the switch fails at once, without the busy
    wait, while another connection writes; once set it stays set for every connection)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _params(
    statement: Statement, given: Any, now: datetime | None, now_text: str | None = None
) -> dict[str, Any]:
    """The values bound for one execution: `given` as SQLite holds them, and `now` (as text:
    `now_text` when the caller formatted it already) where the statement uses it."""
    params = {
        name: v if type(v) in PLAIN_TYPES else sqlite_value(v)  # most are: no call for those
        for name, v in given.items()
    }
    if statement.uses_now:
        assert now is not None
        if "now" not in params:
            params["now"] = now_text if now_text is not None else sqlite_time(now)
        for name in statement.after:
            seconds = given.get(name)
            at = None if seconds is None else now + timedelta(seconds=seconds)
            params[f"{name}__at"] = sqlite_value(at) if at is not None else None
    return params


def _rows(statement: Statement, rows: Any, now: datetime | None) -> dict[str, Any]:
    """The parameters of a batched statement: `rows` as its JSON array, and `now`."""
    after = set(statement.after)
    values = []
    for row in rows:
        found = []
        for name in statement.row_columns:
            value = row[name]
            if name in after and value is not None:
                assert now is not None
                value = now + timedelta(seconds=value)
            found.append(value if type(value) in PLAIN_TYPES else sqlite_value(value))
        values.append(found)
    params: dict[str, Any] = {"rows": orjson.dumps(values).decode()}
    if now is not None:
        params["now"] = sqlite_time(now)
    return params


class _Run:
    """Runs units' operations on one connection; remembers whether a unit asked for a wake."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.woken = False

    def op(self, op: Op) -> Any:
        if op.mode is Mode.WAKE:
            self.woken = True
            return None
        statement = op.statement
        assert statement is not None
        now = datetime.now(UTC) if statement.uses_now else None
        if op.mode is Mode.MANY:
            if statement.sqlite_rows is not None:
                if op.params:
                    self.conn.execute(statement.sqlite_rows, _rows(statement, op.params, now))
                return None
            now_text = None if now is None else sqlite_time(now)
            batch = [_params(statement, p, now, now_text) for p in op.params]
            if batch:
                self.conn.executemany(statement.sqlite, batch)
            return None
        cursor = self.conn.execute(statement.sqlite, _params(statement, op.params, now))
        if op.mode is Mode.COUNT:
            if cursor.description is not None:
                cursor.fetchall()  # a RETURNING clause's rows: finish the statement
            return cursor.rowcount
        found = cursor.fetchall()
        if op.mode is Mode.ALL:
            return found
        if op.mode is Mode.ONE:
            return found[0] if found else None
        return found[0][0] if found else None

    def unit(self, unit: Unit[T]) -> T:
        """Drive the unit to its end; a constraint error goes into it, where it may be caught."""
        try:
            op = next(unit)
            while True:
                try:
                    result = self.op(op)
                except sqlite3.IntegrityError as exc:
                    op = unit.throw(IntegrityError(str(exc)))
                    continue
                op = unit.send(result)
        except StopIteration as done:
            value: T = done.value
            return value


@dataclass
class _Job:
    unit: Unit[Any]
    loop: asyncio.AbstractEventLoop
    future: "asyncio.Future[Any]"
    result: Any = None
    error: BaseException | None = None
    woken: bool = field(default=False)


_STOP = None
_CHECKPOINT: list[_Job] = []  # queued as is: the writer thread checkpoints the WAL


class SqliteBackend:
    dialect = "sqlite"

    def __init__(self, path: Path, on_wake: Callable[[], None]) -> None:
        self.path = path
        self._on_wake = on_wake
        self._jobs: SimpleQueue[list[_Job] | None] = SimpleQueue()
        # The units each event loop has handed over in its current turn, not yet queued.
        self._batches: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        # Each loop's group being held: its size at the last look, and when it began.
        self._held: dict[asyncio.AbstractEventLoop, tuple[int, float]] = {}
        # The loops' writing connection (one loop commits at a time; another hands over).
        self._loop_writer: sqlite3.Connection | None = None
        self._loop_writing = threading.Lock()
        self._loop_commits = 0
        self._stopped = False  # the writer was told to stop: nothing queued now is run
        self._writer = threading.Thread(
            target=self._write_loop, name="hookline-writer", daemon=True
        )
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="hookline-reader")
        self._reader_conn: sqlite3.Connection | None = None
        self._inline_conn: sqlite3.Connection | None = None
        self._closed = False
        self._writer.start()

    # -- the public face ---------------------------------------------------------------------

    async def write(self, unit: Unit[T], *, aside: bool = False) -> T:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        loop = asyncio.get_running_loop()
        job = _Job(unit, loop, loop.create_future())
        if aside:  # a long unit: the writer thread runs it, in a group of its own
            self._jobs.put([job])
        elif (batch := self._batches.get(loop)) is not None:
            batch.append(job)
        else:
            self._batches[loop] = [job]
            loop.call_soon(self._hand_off, loop)
        result: T = await job.future
        return result

    def _hand_off(self, loop: asyncio.AbstractEventLoop, *, now: bool = False) -> None:
        """Commit the units `loop` handed over, once a turn brought none (or the group is full,
        or held `HOLD_SECONDS`); here if the write lock is free, else by the writer thread."""
        batch = self._batches.get(loop)
        if batch and not now and len(batch) < MAX_GROUP:
            at = loop.time()
            seen, since = self._held.get(loop, (0, at))
            if len(batch) != seen and at - since < HOLD_SECONDS:
                self._held[loop] = (len(batch), since)
                loop.call_soon(self._hand_off, loop)
                return
        self._held.pop(loop, None)
        batch = self._batches.pop(loop, None)
        if not batch:
            return
        if self._stopped:
            _settle(batch, None, StoreUnavailable("the store is closed"))
            return
        # Only the loop that made them answers its units' callers (close() may hand over
        # another loop's).
        here = asyncio.get_running_loop() is loop
        if not (here and self._commit_here(batch)):
            self._jobs.put(batch)

    def _commit_here(self, group: list[_Job]) -> bool:
        """Commit `group` in this thread and answer it; False (nothing run) if the write lock
        is taken, by another process or another loop."""
        if not self._loop_writing.acquire(blocking=False):
            return False
        try:
            try:
                if self._loop_writer is None:
                    self._loop_writer = connect(self.path, busy_ms=0)
                    self._loop_writer.execute("PRAGMA wal_autocheckpoint=0")
                self._loop_writer.execute("BEGIN IMMEDIATE")
            except sqlite3.Error:
                return False  # busy (or failing): the writer thread waits, and reports
            conn = self._loop_writer
            try:
                self._run_group(conn, group)
            except sqlite3.Error as exc:
                _fail(group, exc)
                _rollback(conn)
            self._loop_commits += 1
            if self._loop_commits % CHECKPOINT_EVERY == 0:
                self._jobs.put(_CHECKPOINT)
        finally:
            self._loop_writing.release()
        woken = any(job.woken for job in group)
        _settle(group, self._on_wake if woken else None)
        return True

    async def read(self, unit: Unit[T]) -> T:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._read, unit)

    async def lookup(self, make_unit: Callable[[], Unit[T]]) -> T:
        """A point read by index, run right here in the event loop: a WAL reader never waits
        for the writer, and the hand-off to a thread costs more than such a read. Should the
        file be busy (a checkpoint, another process recovering it), it goes to the reader."""
        if self._closed:
            raise StoreUnavailable("the store is closed")
        try:
            if self._inline_conn is None:
                self._inline_conn = connect(self.path, readonly=True, busy_ms=INLINE_BUSY_MS)
            return _Run(self._inline_conn).unit(make_unit())
        except sqlite3.OperationalError:
            return await self.read(make_unit())

    async def close(self) -> None:
        if self._inline_conn is not None:
            self._inline_conn.close()
            self._inline_conn = None
        if self._closed:
            return
        self._closed = True
        for loop in list(self._batches):  # written just now: they go before the stop
            self._hand_off(loop, now=True)
        self._stopped = True
        self._jobs.put(_STOP)
        await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
        with self._loop_writing:
            if self._loop_writer is not None:
                self._loop_writer.close()
                self._loop_writer = None
        self._reader.submit(self._close_reader)
        self._reader.shutdown(wait=True)

    # -- the reader thread -------------------------------------------------------------------

    def _read(self, unit: Unit[T]) -> T:
        try:
            if self._reader_conn is None:
                self._reader_conn = connect(self.path, readonly=True)
            conn = self._reader_conn
            conn.execute("BEGIN")  # one snapshot for every statement of the unit
            try:
                return _Run(conn).unit(unit)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if _fatal(exc):
                raise StoreUnavailable(str(exc)) from exc
            raise

    def _close_reader(self) -> None:
        if self._reader_conn is not None:
            self._reader_conn.close()
            self._reader_conn = None

    # -- the writer thread -------------------------------------------------------------------

    def _write_loop(self) -> None:
        """The groups a loop could not commit (the write lock was taken), and the checkpoints."""
        conn: sqlite3.Connection | None = None
        waiting: list[_Job] = []  # taken from the queue, not yet run (past MAX_GROUP)
        stopping = False  # _STOP was taken: run what is waiting, then end
        checkpoint = False
        try:
            while True:
                if not waiting:
                    first = self._jobs.get()
                    if first is _STOP:
                        return
                    checkpoint = first is _CHECKPOINT
                    waiting.extend(first)
                while len(waiting) < MAX_GROUP and not stopping:
                    try:
                        jobs = self._jobs.get_nowait()
                    except Empty:
                        break
                    if jobs is _STOP:
                        stopping = True
                    else:
                        checkpoint = checkpoint or jobs is _CHECKPOINT
                        waiting.extend(jobs)
                group, waiting = waiting[:MAX_GROUP], waiting[MAX_GROUP:]
                try:
                    if conn is None:
                        conn = connect(self.path)
                    if group:
                        self._commit(conn, group)
                    if checkpoint:
                        checkpoint = False
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:
                    _fail(group, exc)
                    if conn is not None:
                        _rollback(conn)
                self._answer(group)
                if stopping and not waiting:
                    return
        finally:
            if conn is not None:
                conn.close()

    def _commit(self, conn: sqlite3.Connection, group: list[_Job]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        self._run_group(conn, group)

    def _run_group(self, conn: sqlite3.Connection, group: list[_Job]) -> None:
        """Each unit in a savepoint of the transaction begun, then commit."""
        for job in group:
            run = _Run(conn)
            conn.execute("SAVEPOINT unit")
            try:
                job.result = run.unit(job.unit)
            except sqlite3.Error as exc:
                if _fatal(exc):
                    raise  # the database itself failed: the whole group fails
                conn.execute("ROLLBACK TO unit")
                job.error = exc
            except BaseException as exc:  # the unit's own error: it alone rolls back
                conn.execute("ROLLBACK TO unit")
                job.error = exc
            finally:
                job.unit.close()
            conn.execute("RELEASE unit")
            job.woken = run.woken and job.error is None
        conn.execute("COMMIT")

    def _answer(self, group: list[_Job]) -> None:
        woken = any(job.woken for job in group)
        by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        for job in group:
            by_loop.setdefault(job.loop, []).append(job)
        for loop, jobs in by_loop.items():
            # A closed loop (RuntimeError) has nobody waiting for these any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, jobs, self._on_wake if woken else None)


def _fail(group: list[_Job], exc: sqlite3.Error) -> None:
    """The transaction failed as a whole: every unit of it that had no error of its own gets
    this one."""
    log.warning("a write transaction failed: %s", exc)
    failure = StoreUnavailable(f"the database refused the write: {exc}")
    for job in group:
        if job.error is None:
            job.error, job.result = failure, None


def _settle(
    jobs: list[_Job], wake: Callable[[], None] | None, error: BaseException | None = None
) -> None:
    """Answer the jobs' callers (in their loop); `error` answers them all, unrun."""
    for job in jobs:
        if error is not None:
            job.unit.close()
        if job.future.done():
            continue
        if error is not None:
            job.future.set_exception(error)
        elif job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)
    if wake is not None:
        wake()


# Errors of the database as a whole (not of one unit's statement): the group cannot commit.
_FATAL = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_CANTOPEN",
    "SQLITE_CORRUPT",
    "SQLITE_NOTADB",
    "SQLITE_READONLY",
    "SQLITE_PROTOCOL",
)


def _fatal(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(_FATAL)


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        log.exception("rolling back a failed write transaction failed")
