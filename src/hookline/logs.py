"""Log lines: plain text or one JSON object a line (HOOKLINE_LOG_FORMAT), on stderr.

A line is a short message and, for the lines an operator searches or counts (an attempt, a
request, a start or stop, a disabled endpoint), named fields passed with `extra=fields(...)`:

    log.info("attempt succeeded", extra=logs.fields(delivery_id=..., status_code=200))

Text mode writes them after the message as `key=value` (a value with spaces or quotes is
quoted as JSON), JSON mode as keys of the object beside `time`, `level`, `logger` and
`message`. The same fields either way.

What goes in a field is chosen where the line is written: never a token, a secret, a header,
a query string or a payload. A traceback never shows a PostgreSQL error's text, which may quote
the statement's parameters (`loggable`); SQLite's name columns and constraints, never values.
"""

import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal, TextIO

from hookline.store.units import IntegrityError, StoreUnavailable

LogFormat = Literal["text", "json"]
FORMATS: Final = ("text", "json")

# The attribute of a LogRecord that holds its fields (set through `extra=`).
_FIELDS = "hookline_fields"
_TEXT_LAYOUT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# A text value written bare: no space, quote, equals sign or control character.
_BARE = re.compile(r"[^\s\"'=\\\x00-\x1f\x7f]+")
# Values JSON holds as they are, told by their exact type (a subclass takes the long way).
_JSON_TYPES = frozenset({str, int, float, bool, type(None)})

# Loggers that say too much at INFO for a service's log.
_QUIET = {"alembic": logging.WARNING}
# Seconds between two lines of a library's that repeats itself while the database is down.
REPEAT_AFTER = 60.0


def fields(**values: Any) -> dict[str, Any]:
    """The `extra=` of a log call whose line carries these fields (None values are left out)."""
    return {_FIELDS: _present(values)}


def _present(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def line(logger: logging.Logger, level: int, message: str, **values: Any) -> None:
    """What `logger.log(level, message, extra=fields(**values))` does, for ~25% less (9 µs a
    line instead of 12, measured in isolation): the record is made here, without looking up
    the caller's file and line, which no line shows. For the lines written per attempt."""
    if not logger.isEnabledFor(level):
        return
    record = logging.LogRecord(logger.name, level, "", 0, message, None, None)
    setattr(record, _FIELDS, _present(values))
    logger.handle(record)


def fields_of(record: logging.LogRecord) -> Mapping[str, Any]:
    """The fields a record carries (empty for a plain line)."""
    found = getattr(record, _FIELDS, None)
    return found if isinstance(found, Mapping) else {}


def _plain(value: Any) -> Any:
    """A value as JSON holds it: datetimes as ISO 8601 UTC, anything unknown as its str()."""
    if type(value) in _JSON_TYPES:  # most fields: a line is written per attempt
        return value
    if isinstance(value, datetime):
        return _iso(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Formatter(logging.Formatter):
    def formatException(self, ei: Any) -> str:
        """The traceback, a database error's text left out (`loggable`)."""
        if ei[1] is not None:
            shown = loggable(ei[1])
            ei = (type(shown), shown, shown.__traceback__)
        return super().formatException(ei)


class TextFormatter(_Formatter):
    """`time LEVEL logger message key=value …`."""

    def __init__(self) -> None:
        super().__init__(_TEXT_LAYOUT)
        # The time's text to the second, for the second it was made for: the lines of one
        # second share it (strftime and localtime cost more than the rest of a short line).
        self._second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        msec_format = self.default_msec_format
        if datefmt is not None or msec_format is None or self.converter is not time.localtime:
            return super().formatTime(record, datefmt)
        second, text = self._second
        if int(record.created) != second:
            second = int(record.created)
            text = time.strftime(self.default_time_format, time.localtime(record.created))
            self._second = (second, text)
        return msec_format % (text, record.msecs)

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            line = super().format(record)
        else:
            # What Formatter.format makes of _TEXT_LAYOUT for a line without a traceback.
            record.message = record.getMessage()
            record.asctime = self.formatTime(record, self.datefmt)
            line = f"{record.asctime} {record.levelname} {record.name} {record.message}"
        extra = fields_of(record)
        if not extra:
            return line
        head, newline, rest = line.partition("\n")  # a traceback stays below the line
        pairs = " ".join(f"{k}={_text_value(v)}" for k, v in extra.items())
        return f"{head} {pairs}{newline}{rest}"


def _text_value(value: Any) -> str:
    kind = type(value)
    if kind is int or kind is float:
        return str(value)  # digits, sign, point, exponent, inf or nan: always bare
    if kind is str:
        text = value
    else:
        plain = _plain(value)
        if isinstance(plain, bool):
            return "true" if plain else "false"
        text = str(plain)
    return text if _BARE.fullmatch(text) else json.dumps(text, ensure_ascii=False)


class JsonFormatter(_Formatter):
    """One JSON object a line: time (UTC), level, logger, message, the fields, and a
    traceback as `exception` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _iso(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in fields_of(record).items():
            line.setdefault(key, _plain(value))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class Redacted(Exception):
    """An exception as the log shows it, with its traceback and chain (`loggable`)."""


# asyncpg's own check of a parameter, before anything is sent: "invalid input for query argument
# $9 in element #0 of executemany() sequence: 'its first 40 characters…' (why)".
_ARGUMENT = re.compile(r"invalid input for query argument \$\d+( in element #\d+ of \w+\(\))?")
_NAMED = ("schema_name", "table_name", "column_name", "constraint_name", "data_type_name")


def loggable(exc: BaseException) -> BaseException:
    """`exc` fit for the log. A PostgreSQL error (or the store's IntegrityError or
    StoreUnavailable made of one's text) anywhere in its chain is shown by its class, SQLSTATE
    and the schema's names it gives, without its message and DETAIL: the DETAIL quotes a
    failing row whole ("Failing row contains (…)": every column) or a key's values, a message
    may quote a value ('invalid input syntax for type …: "…"'), and asyncpg's check of a
    parameter quotes its first 40 characters. Without one, `exc` itself."""
    if all(_redacted(link) is None for link in _chain(exc)):
        return exc
    return _copy(exc, {})


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and every exception its traceback shows (causes and contexts, once each)."""
    found: dict[int, BaseException] = {}
    todo = [exc]
    while todo:
        link = todo.pop()
        if id(link) not in found:
            found[id(link)] = link
            todo.extend(e for e in (link.__cause__, link.__context__) if e is not None)
    return list(found.values())


def _copy(exc: BaseException, done: dict[int, Redacted]) -> Redacted:
    """`exc` and its chain as Redacted exceptions with the same tracebacks: a database error's
    text replaced, any other's kept."""
    if id(exc) in done:
        return done[id(exc)]
    text = _redacted(exc)
    shown = Redacted(f"{_name(exc)}: {exc}" if text is None else text)
    done[id(exc)] = shown.with_traceback(exc.__traceback__)
    shown.__cause__ = None if exc.__cause__ is None else _copy(exc.__cause__, done)
    shown.__context__ = None if exc.__context__ is None else _copy(exc.__context__, done)
    shown.__suppress_context__ = exc.__suppress_context__  # after __cause__, which sets it
    return shown


def _redacted(exc: BaseException) -> str | None:
    """What the log shows of a database error in place of its text; None for another."""
    driver, what = exc, _name(exc)
    if isinstance(exc, IntegrityError | StoreUnavailable) and exc.__cause__ is not None:
        driver, what = exc.__cause__, f"{what} of {_name(exc.__cause__)}"
    # asyncpg is imported only on PostgreSQL: none of its errors can exist without it.
    asyncpg: Any = sys.modules.get("asyncpg")
    if asyncpg is None or not isinstance(driver, asyncpg.PostgresError):
        return None
    parts = [f"SQLSTATE {driver.sqlstate}"]
    for name in _NAMED:
        given = getattr(driver, name, None)
        if given:
            parts.append(f"{name.removesuffix('_name').replace('_', ' ')} {given}")
    checked = _ARGUMENT.match(str(driver.args[0]) if driver.args else "")
    if checked is not None:
        parts.append(checked.group(0))
    return f"{what} ({', '.join(parts)}); its text is left out: it may quote the parameters"


def _name(exc: BaseException) -> str:
    kind = type(exc)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


class _Outage(logging.Filter):
    """asyncpg's pool retries its one standing connection while PostgreSQL is down, with a
    WARNING and a traceback each time (every 1, 2, 4 … s). hookline tells of the outage
    itself (one line, see delivery/outage.py and the API's 503s): let one of these through
    a minute, without its traceback, the error's one line in its place."""

    def __init__(self, prefix: str, *, every: float = REPEAT_AFTER) -> None:
        super().__init__()
        self._prefix = prefix
        self._every = every
        self._last: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self._prefix):
            return True
        if self._last is not None and record.created - self._last < self._every:
            return False
        self._last = record.created
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg = f"{record.msg} ({type(error).__name__}: {error})"
        record.exc_info = None
        record.exc_text = None
        return True


# logger: the start of the message it repeats
_OUTAGE_LINES = {"asyncpg.pool": "Failed to restore the pool connection floor"}


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure(log_format: LogFormat = "text", *, stream: TextIO | None = None) -> None:
    """Send every logger's lines (hookline's, uvicorn's, the libraries') to stderr in this
    format, at INFO; called once by each command at start, and again in each process that
    `hookline api --workers N` starts. A second call replaces the first one's handler."""
    unconfigure()
    # No line shows the thread or the process: not looking them up for every record saves
    # ~6% of an attempt line's cost (one line per attempt).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter(log_format))
    handler._hookline = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name, level in _QUIET.items():
        logging.getLogger(name).setLevel(level)
    for name, prefix in _OUTAGE_LINES.items():
        logging.getLogger(name).addFilter(_Outage(prefix))
    # uvicorn's loggers carry no handlers of their own (hookline gives uvicorn no log config):
    # their lines come here, in this format. Its access log never: it writes the query string,
    # where a client may have put a token (api/access_log.py logs requests instead).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = name != "uvicorn.access"
    logging.getLogger("uvicorn.access").disabled = True


def unconfigure() -> None:
    """Undo configure(): its handler and filters removed (uvicorn's loggers left as they are)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_hookline", False):
            root.removeHandler(handler)
            handler.close()
    for name in _OUTAGE_LINES:
        library = logging.getLogger(name)
        for found in list(library.filters):
            if isinstance(found, _Outage):
                library.removeFilter(found)
