"""Units of work: a request's reads and writes, described once, run by either database.

A unit is a generator: it yields operations and gets their results back, so the same code runs
synchronously in SQLite's writer thread and asynchronously on an asyncpg connection:

    def register(username: str) -> Unit[str]:
        inserted = yield one(INSERT_USER, {"id": ..., "username": username})
        if inserted is None:
            raise Conflict("Username already exists")
        yield from outbox.enqueue(...)
        return user_id

`store.write(unit)` runs it in a transaction (on SQLite among others in one group commit, each
in its own savepoint) and answers after the commit; `store.read(unit)` runs it on a reader. A
unit that raises leaves nothing behind and its caller gets the exception.
"""

from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeAlias, TypeVar

from hookline.store.sql import Statement

T = TypeVar("T")


class Mode(Enum):
    ALL = "all"  # every row
    ONE = "one"  # the first row or None
    VALUE = "value"  # the first column of the first row, or None
    COUNT = "count"  # rows changed
    MANY = "many"  # one statement over many parameter sets; no result
    WAKE = "wake"  # wake the workers once this commits


@dataclass(frozen=True, slots=True)
class Op:
    statement: Statement | None
    params: Any
    mode: Mode
    # A failure of this statement (a unique violation) is raised into the unit, which may go on;
    # on PostgreSQL that needs a savepoint around it.
    guarded: bool = False


Unit: TypeAlias = Generator[Op, Any, T]


class IntegrityError(Exception):
    """A constraint refused a guarded statement (raised into the unit that yielded it)."""


class StoreUnavailable(Exception):
    """The database cannot be reached or is locked past the wait: nothing was written."""


Params = Mapping[str, Any] | None


def rows(statement: Statement, params: Params = None) -> Op:
    return Op(statement, params or {}, Mode.ALL)


def one(statement: Statement, params: Params = None, *, guarded: bool = False) -> Op:
    return Op(statement, params or {}, Mode.ONE, guarded)


def value(statement: Statement, params: Params = None) -> Op:
    return Op(statement, params or {}, Mode.VALUE)


def execute(statement: Statement, params: Params = None, *, guarded: bool = False) -> Op:
    return Op(statement, params or {}, Mode.COUNT, guarded)


def execute_many(statement: Statement, params: Iterable[Mapping[str, Any]]) -> Op:
    return Op(statement, list(params), Mode.MANY)


WAKE = Op(None, None, Mode.WAKE)


def wake() -> Op:
    """Wake the workers after this unit commits (it made something due)."""
    return WAKE


def just(result: T) -> Unit[T]:
    """A unit that touches nothing (for code paths that end before any statement)."""
    return result
    yield  # pragma: no cover - makes this a generator
