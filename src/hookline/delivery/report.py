"""What the worker tells of each attempt: one log line and the metrics, once its outcome and
what it means for the delivery are known.

A line names the event, the delivery, the endpoint, the URL's host (never the URL: its path
or query may hold a token), the attempt's number, its status code or error kind, its
duration and, when the delivery will be tried again, when. Never a header, a secret, the
body sent or the answer received, nor the error's text (an invalid URL's error quotes it).
"""

import functools
import logging
from datetime import timedelta
from urllib.parse import urlsplit

from hookline import logs
from hookline.delivery import metrics
from hookline.delivery.policy import Decision
from hookline.delivery.sender import Outcome
from hookline.models import utcnow
from hookline.store.claims import Claimed
from hookline.store.status import Status

log = logging.getLogger("hookline.worker")


@functools.lru_cache(maxsize=4096)  # the same few endpoints' URLs, attempt after attempt
def host_of(url: str) -> str:
    """The host of a URL, without scheme, credentials, port, path or query ("?" if none)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    return host or "?"


def attempt(item: Claimed, number: int, outcome: Outcome, decision: Decision) -> None:
    """Log attempt `number` of `item` (INFO if it succeeded, else WARNING) and count it."""
    metrics.observe(outcome, first=number == 1, event_created_at=item.event_created_at)
    level = logging.INFO if outcome.ok else logging.WARNING
    if not log.isEnabledFor(level):
        return  # the line's fields cost more than the check
    retry_in = retry_at = None
    if decision.status is Status.PENDING and decision.delay is not None:
        retry_in = round(decision.delay, 3)
        # The delay runs on the database's clock from the record; this is the worker's guess.
        retry_at = utcnow() + timedelta(seconds=decision.delay)
    logs.line(
        log,
        level,
        "attempt succeeded" if outcome.ok else "attempt failed",
        event_id=item.event_id,
        event=item.event,
        delivery_id=item.delivery_id,
        endpoint_id=item.endpoint_id,
        host=host_of(item.url),
        attempt=number,
        status_code=outcome.status_code,
        error_kind=outcome.error_kind,
        duration_ms=outcome.duration_ms,
        delivery=str(decision.status),
        retry_in_s=retry_in,
        retry_at=retry_at,
    )


def endpoint_disabled(endpoint_id: str, reason: str) -> None:
    log.warning(
        "endpoint disabled", extra=logs.fields(endpoint_id=endpoint_id, reason=reason, by="worker")
    )
