"""Mistakes an operator can fix, told in one line: what is wrong, and what to do.

A bad setting, a malformed or wrong secret key, a database that does not exist or cannot be
reached at start, an address that cannot be listened on: `hookline` prints
`error: <what is wrong>; <what to do>` on stderr and exits with status 2 (the systemd units in
docs/deploy.md do not restart on it). Anything else keeps its traceback: a bug must stay
visible.

The places that meet these mistakes turn the errors they know into an `OperatorError` (with
`opening_database` and `binding`), and `cli.main` reports them through `explain`.
"""

import contextlib
import errno
import socket
from collections.abc import Iterator

from sqlalchemy import make_url

from hookline.config import Settings
from hookline.secretbox import SecretKeyError
from hookline.store.units import StoreUnavailable

EXIT_STATUS = 2

# SQLSTATEs a server answers a connection with, when the fix is in HOOKLINE_DATABASE_URL.
_NO_SUCH_DATABASE = "3D000"
_LOGIN_REFUSED = ("28000", "28P01")  # no such role / not allowed by pg_hba.conf; bad password
# SQLSTATE classes of a server that is there but does not take the connection now: starting up,
# shutting down, out of connection slots.
_NOT_NOW = ("08", "57P", "53")


class OperatorError(Exception):
    """A mistake in how hookline is set up or started, with what to do about it."""

    def __init__(self, problem: str, remedy: str) -> None:
        super().__init__(f"{problem}; {remedy}")
        self.problem = problem
        self.remedy = remedy


def explain(exc: BaseException) -> str | None:
    """The one line for an operator's mistake (without `error: `); None for anything else."""
    if isinstance(exc, OperatorError | SecretKeyError):
        return str(exc)
    return None


def invalid_settings(problems: list[str]) -> OperatorError:
    """Settings that do not validate, each `HOOKLINE_<NAME>: why`."""
    them = "it" if len(problems) == 1 else "them"
    return OperatorError(
        f"invalid configuration: {'; '.join(problems)}",
        f"correct {them} in the environment or in .env",
    )


@contextlib.contextmanager
def opening_database(settings: Settings) -> Iterator[None]:
    """Around a first connection to the database: a failure the operator can fix (no such
    database, a refused login, nothing answering at that address) becomes an OperatorError.

    Only the first connection belongs in it: every OSError met here is taken for the network's.
    """
    try:
        yield
    except Exception as exc:
        known = _database_error(exc, settings)
        if known is None:
            raise
        raise known from exc


@contextlib.contextmanager
def binding(host: str, port: int, *, host_option: str, port_option: str) -> Iterator[None]:
    """Around binding a listening socket: an address in use, not on this machine or not
    allowed becomes an OperatorError naming the option (`HOOKLINE_PORT`, `--port`) to change."""
    try:
        yield
    except OSError as exc:
        known = _bind_error(exc, host, port, host_option=host_option, port_option=port_option)
        if known is None:
            raise
        raise known from exc


def _bind_error(
    exc: OSError, host: str, port: int, *, host_option: str, port_option: str
) -> OperatorError | None:
    where = f"cannot listen on {_address(host, port)}"
    this_machine = "an address of this machine (0.0.0.0 for all)"
    if isinstance(exc, socket.gaierror):
        return OperatorError(
            f"{where}: the host name does not resolve", _use(host_option, this_machine)
        )
    if exc.errno == errno.EADDRINUSE:
        return OperatorError(f"{where}: address already in use", _use(port_option, "a free port"))
    if exc.errno == errno.EADDRNOTAVAIL:
        return OperatorError(
            f"{where}: the address is not one of this machine's", _use(host_option, this_machine)
        )
    if exc.errno == errno.EACCES:
        return OperatorError(
            f"{where}: permission denied (ports below 1024 need privileges)",
            _use(port_option, "a port of 1024 or above"),
        )
    return None


def _use(option: str, value: str) -> str:
    """What to do, for a setting (`HOOKLINE_PORT`) or a command-line option (`--port`)."""
    return f"pass {value} with {option}" if option.startswith("-") else f"set {option} to {value}"


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _database_error(exc: BaseException, settings: Settings) -> OperatorError | None:
    causes = list(_causes(exc))
    known = next((c for c in causes if isinstance(c, OperatorError)), None)
    if known is not None or settings.is_sqlite:  # SQLite: a file hookline creates itself
        return known
    url = make_url(settings.resolved_database_url)
    where = _address(url.host or str(url.query.get("host") or "localhost"), url.port or 5432)
    states = [str(getattr(cause, "sqlstate", "") or "") for cause in causes]
    if _NO_SUCH_DATABASE in states:
        return OperatorError(
            f'database "{url.database}" does not exist on {where}',
            f"create it (createdb {url.database}) or correct HOOKLINE_DATABASE_URL",
        )
    refused = next((c for c, s in zip(causes, states, strict=True) if s in _LOGIN_REFUSED), None)
    if refused is not None:
        return OperatorError(
            f"the database at {where} refused the login ({refused})",
            "correct the user or password in HOOKLINE_DATABASE_URL, or allow it in pg_hba.conf",
        )
    if any(s.startswith(_NOT_NOW) for s in states) or any(
        isinstance(c, OSError | StoreUnavailable) for c in causes
    ):
        return OperatorError(
            f"cannot reach the database at {where} ({_reason(causes[-1])})",
            "start PostgreSQL, or correct the host and port in HOOKLINE_DATABASE_URL",
        )
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it was raised from (`raise ... from`), outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__


def _reason(innermost: BaseException) -> str:
    """Why a connection failed, in a few words."""
    if isinstance(innermost, ConnectionRefusedError):
        return "connection refused"
    if isinstance(innermost, socket.gaierror):
        return "the host name does not resolve"
    if isinstance(innermost, TimeoutError):
        return "timed out"
    if isinstance(innermost, OSError) and innermost.strerror:
        return innermost.strerror.lower()
    return str(innermost) or type(innermost).__name__
