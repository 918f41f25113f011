"""Statements written once, for both databases, and the values that cross the driver.

SQL is written with `:name` parameters and a few macros for what the two dialects spell apart:

- `{now}`: the database's clock on PostgreSQL (`now()`: every process agrees on it); on SQLite,
  one machine, the process's clock, bound as the `now` parameter by the store.
- `{in:name}`: membership in the list `name` (`= ANY($n)` on PostgreSQL, `IN (SELECT value
  FROM json_each(?))` on SQLite), so a statement stays one prepared text whatever the length.
- `{skip_locked}`: `FOR UPDATE SKIP LOCKED` on PostgreSQL, nothing on SQLite (whose writes are
  serialized by its one writer).
- `{after:name}`: the time `name` seconds after `{now}` (NULL when `name` is NULL).

The text for each dialect is built when the statement is made (at import), never per call.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from itertools import combinations
from typing import Any

import orjson

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_IN = re.compile(r"\{in:(\w+)\}")
_AFTER = re.compile(r"\{after:(\w+)\}")


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement's text per dialect; `names` orders PostgreSQL's positional parameters."""

    sqlite: str
    postgres: str
    names: tuple[str, ...]
    uses_now: bool  # on SQLite: the store binds `now`
    after: tuple[str, ...]  # on SQLite: the store binds `<name>__at` = now + <name> seconds
    # On SQLite, for many rows at once (`batched`): one statement over `:rows`, and each row's
    # values in that JSON array in this order.
    sqlite_rows: str | None = None
    row_columns: tuple[str, ...] = ()


def sql(text: str, *, postgres: str | None = None, sqlite: str | None = None) -> Statement:
    """A statement from one text (or one per dialect where they differ too much)."""
    lite = _expand(sqlite if sqlite is not None else text, postgresql=False)
    pg = _expand(postgres if postgres is not None else text, postgresql=True)
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    pg_text = _PARAM.sub(number, pg)
    after = tuple(_AFTER.findall(sqlite if sqlite is not None else text))
    return Statement(
        sqlite=lite,
        postgres=pg_text,
        names=tuple(names),
        uses_now=":now" in lite or bool(after),
        after=after,
    )


def batched(statement: Statement, *, sqlite: str, columns: Sequence[str]) -> Statement:
    """`statement`, which `execute_many` runs once a row, run once for all the rows on SQLite:
    `sqlite` reads them from `:rows`, a JSON array holding each row's `columns` in order (a
    `{after:name}` value as its time, under `name`), with `value ->> n`. Each execution of a
    statement costs SQLite and the driver ~2 µs beyond its row's own work."""
    return replace(
        statement, sqlite_rows=_expand(sqlite, postgresql=False), row_columns=tuple(columns)
    )


def _expand(text: str, *, postgresql: bool) -> str:
    if postgresql:
        text = _IN.sub(r"= ANY(:\1)", text)
        text = _AFTER.sub(r"(now() + make_interval(secs => :\1))", text)
        return text.replace("{now}", "now()").replace("{skip_locked}", "FOR UPDATE SKIP LOCKED")
    text = _IN.sub(r"IN (SELECT value FROM json_each(:\1))", text)
    # SQLite keeps times as text in one fixed format: the store adds the seconds in Python.
    text = _AFTER.sub(r":\1__at", text)
    return text.replace("{now}", ":now").replace("{skip_locked}", "")


def variants(
    select: str, order: str, *, always: Sequence[str] = (), optional: Mapping[str, str]
) -> dict[frozenset[str], Statement]:
    """One statement per combination of the optional conditions, keyed by the names given:
    each stays a plain range of an index, which `(:x IS NULL OR ...)` would not."""
    found = {}
    for n in range(len(optional) + 1):
        for names in combinations(optional, n):
            where = [*always, *(optional[name] for name in names)]
            condition = f" WHERE {' AND '.join(where)}" if where else ""
            found[frozenset(names)] = sql(f"{select}{condition} {order}")
    return found


def pick(statements: dict[frozenset[str], Statement], params: Mapping[str, Any]) -> Statement:
    """The variant for the optional conditions whose parameter is not None."""
    return statements[frozenset(name for name, value in params.items() if value is not None)]


# -- values crossing the driver ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Json:
    """A value for a JSON column that is a list (lists are arrays otherwise)."""

    value: Any


TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # how SQLite columns have held times since the start


PLAIN_TYPES = frozenset((str, int, float, bool, type(None)))  # bound as they are


# The last time formatted and its text: a unit binds one time to several rows (an event's
# deliveries), so the same object comes again. Replaced whole, so threads may share it.
_last_time: tuple[datetime | None, str] = (None, "")


def sqlite_time(value: datetime) -> str:
    """A time as SQLite columns hold it (formatted by hand: strftime costs several times more)."""
    global _last_time
    last = _last_time
    if value is last[0]:
        return last[1]
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store")
    text = _format_time(value if value.tzinfo is UTC else value.astimezone(UTC))
    _last_time = (value, text)
    return text


def _format_time(value: datetime) -> str:
    return "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (  # noqa: UP031 - the fastest here
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


def sqlite_value(value: Any) -> Any:
    if type(value) in PLAIN_TYPES:
        return value
    if isinstance(value, datetime):
        return sqlite_time(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict | list | tuple):
        return orjson.dumps(value).decode()
    if isinstance(value, Json):
        return orjson.dumps(value.value).decode()
    return value


def postgres_value(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    if isinstance(value, Json):
        return orjson.dumps(value.value).decode()
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        raise ValueError("naive datetime given to the store")
    return value


def ts(value: Any) -> datetime | None:
    """A time column as an aware UTC datetime, from either driver."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def ts_required(value: Any) -> datetime:
    found = ts(value)
    if found is None:
        raise ValueError("a required time column is NULL")
    return found


def js(value: Any) -> Any:
    """A JSON column as Python values, from either driver (both hand back text)."""
    if value is None or not isinstance(value, str | bytes):
        return value
    return orjson.loads(value)
