"""One warning per database outage, not a traceback per poll.

The worker asks the database something every poll interval; while it cannot be reached each
of those fails. `Trouble` tells of an outage (`StoreUnavailable`) once when it starts and
once when the database answers again, with how long it lasted. Any other failure (a bug, a
schema not migrated yet) keeps its traceback, at most once a minute for each kind of work,
with a count of the ones left out.

That traceback never shows the statement's parameters (receivers' answers, custom header values,
payloads): a PostgreSQL error's text can quote them, so it is shown by its kind, SQLSTATE and
the names of what it concerns instead (`logs.loggable`).
"""

import logging
import time
from collections import Counter
from collections.abc import Callable

from hookline import logs
from hookline.store import StoreUnavailable

REPEAT_AFTER = 60.0  # seconds between two tracebacks of the same kind of work


class Trouble:
    def __init__(
        self,
        log: logging.Logger,
        *,
        retry_every: float,
        repeat_after: float = REPEAT_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._retry_every = retry_every
        self._repeat_after = repeat_after
        self._clock = clock
        self._outage_since: float | None = None
        self._outage_failures = 0
        self._reported_at: dict[str, float] = {}
        self._left_out: Counter[str] = Counter()

    @property
    def in_outage(self) -> bool:
        return self._outage_since is not None

    def failed(self, work: str, exc: BaseException, detail: str = "") -> None:
        """`work` (e.g. "claiming deliveries") failed with `exc`; `detail` is added to its line."""
        if isinstance(exc, StoreUnavailable):
            self._outage_failures += 1
            if self._outage_since is None:
                self._outage_since = self._clock()
                self._log.warning(
                    "database unavailable; retrying every %g s (one line when it is back)",
                    self._retry_every,
                    extra=logs.fields(work=work, error=_short(exc)),
                )
            return
        now = self._clock()
        last = self._reported_at.get(work)
        if last is not None and now - last < self._repeat_after:
            self._left_out[work] += 1
            return
        self._reported_at[work] = now
        left_out = self._left_out.pop(work, 0)
        since = f" ({left_out} more since the last report)" if left_out else ""
        self._log.error("%s failed%s%s", work, detail, since, exc_info=logs.loggable(exc))

    def succeeded(self) -> None:
        """The database answered: end the outage, if there was one."""
        if self._outage_since is None:
            return
        lasted = self._clock() - self._outage_since
        self._log.info(
            "database available again",
            extra=logs.fields(outage_s=round(lasted, 1), failed_tries=self._outage_failures),
        )
        self._outage_since = None
        self._outage_failures = 0


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200] if text.strip() else type(exc).__name__
