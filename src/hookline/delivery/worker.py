"""The worker's life: claim due deliveries, send them, record results in batches, stop cleanly."""

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from hookline import housekeeping, logs
from hookline.config import Settings
from hookline.delivery import envelope, notify, outage, policy, report
from hookline.delivery.sender import Outcome, Sender
from hookline.store import Store, claims, health, postgres_dsn
from hookline.store.claims import Claimed, Finished
from hookline.store.units import Unit

log = logging.getLogger("hookline.worker")

# Seconds between prunes of old events and idempotency keys (the first comes after one period).
HOUSEKEEPING_INTERVAL = 600.0
# Bodies kept for the events most recently sent: an event's endpoints are claimed together.
RECENT_BODIES = 1024


class Worker:
    """Keeps up to `worker_concurrency` attempts in flight, `worker_per_endpoint` per endpoint."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        sender: Sender,
        housekeeping_interval: float = HOUSEKEEPING_INTERVAL,
    ) -> None:
        self._housekeeping_interval = housekeeping_interval
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._settings = settings
        self._store = store
        self._sender = sender
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._per_endpoint: Counter[str] = Counter()
        self._finished: list[Settled] = []
        self._bodies: dict[str, bytes] = {}
        self._wake = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._stopping = False
        self._claim_at = max(1, settings.worker_concurrency // 8)
        self._top_up = (settings.worker_per_endpoint + 1) // 2
        # An endpoint with more than this many attempts in flight is not topped up.
        self._full_above = settings.worker_per_endpoint - self._top_up
        # Whether the last claim was cut short by free slots: more may be due right now.
        self._slots_ran_out = False
        self._drained = False
        # A database outage is one warning, not a traceback per poll.
        self._trouble = outage.Trouble(log, retry_every=settings.poll_interval)
        # The slow lane: endpoints whose last attempt timed out (a receiver that hangs, or a
        # firewall that drops packets) share a few slots, one attempt each at a time, so that
        # however many hang, the healthy ones keep the rest. An answer takes one out of it,
        # into probation.
        self._slow_lane = max(1, settings.worker_concurrency // 8)
        self._slow: set[str] = set()
        # Probation (a "half-open" start): the worker learns that an endpoint hangs only when
        # an attempt times out, so an endpoint it has not seen answer (since it started, or
        # since the endpoint left the slow lane) is unproven: one attempt at a time, and the
        # unproven and slow endpoints together at most `_probation` attempts, so that a
        # quarter of the slots stays with the proven ones however many hang. Its first answer
        # (any status) proves it: the normal cap from then on; a timeout sends it to the slow
        # lane.
        concurrency = settings.worker_concurrency
        self._probation = max(1, concurrency - concurrency // 4)
        self._proven: set[str] = set()
        # Unproven endpoints whose deliveries were given back for want of room in probation:
        # skipped until an unproven or slow attempt ends.
        self._waiting: set[str] = set()

    def wake(self) -> None:
        """Look for due deliveries now (called after a commit that published events)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop claiming; run() then drains what is in flight and returns."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        log.info(
            "worker started",
            extra=logs.fields(
                worker=self.owner,
                concurrency=self._settings.worker_concurrency,
                per_endpoint=self._settings.worker_per_endpoint,
            ),
        )
        flusher = asyncio.create_task(self._flush_loop())
        housekeeper = asyncio.create_task(self._housekeeping_loop())
        listener = None
        if not self._settings.is_sqlite:
            dsn = postgres_dsn(self._settings)
            listener = asyncio.create_task(notify.listen(dsn, self.wake))
        try:
            while not self._stopping:
                self._wake.clear()
                full = await self._claim_batch()
                if full and not self._stopping:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.poll_interval)
        finally:
            self._stopping = True
            housekeeper.cancel()  # each prune batch is its own transaction: safe to cut
            if listener is not None:
                listener.cancel()
            await asyncio.gather(housekeeper, *filter(None, [listener]), return_exceptions=True)
            in_flight = await self._drain()
            # The flusher is told to stop, never cancelled: a cancel mid-flush would drop the
            # batch it holds.
            self._drained = True
            self._flush_now.set()
            await asyncio.gather(flusher, return_exceptions=True)
            await self._flush()
            # Give back the leases of attempts cut short. Recorded ones hold no lease any more;
            # ones whose record failed keep theirs, to lapse and be sent again.
            unrecorded = {item.finished.delivery_id for item in self._finished}
            await self._release([i for i in in_flight if i not in unrecorded])
            log.info("worker stopped", extra=logs.fields(worker=self.owner))

    async def _claim_batch(self) -> bool:
        """Claim as many deliveries as there are free slots; True if another claim may find more.

        A proven endpoint is topped up only when at least `self._top_up` of its slots are free,
        and by at most that many, so a claim never exceeds the per-endpoint cap. The claim
        cannot tell unproven endpoints it has not met from proven ones, so what it brings for
        them beyond one attempt each, or beyond probation's room, is given back.
        """
        free = self._settings.worker_concurrency - len(self._inflight)
        if free <= 0:
            return False
        # Busy: full, or unproven (or slow) with an attempt out; none gets more now.
        busy = {
            e
            for e, n in self._per_endpoint.items()
            if n > self._full_above or e not in self._proven
        }
        slow_in_flight = sum(self._per_endpoint[e] for e in self._slow)
        unproven_in_flight = sum(n for e, n in self._per_endpoint.items() if e not in self._proven)
        lane = min(free, self._slow_lane - slow_in_flight, self._probation - unproven_in_flight)
        skip = busy | self._slow | self._waiting
        try:
            # The healthy lane first, without the slow endpoints; then what room the slow lane
            # has, one attempt per endpoint, skipping the slow ones that have one out already.
            claimed = await self._store.write(
                claims.claim(
                    owner=self.owner,
                    limit=free,
                    lease_seconds=self._settings.lease_seconds,
                    per_endpoint=self._top_up,
                    skip_endpoints=[*skip],
                )
            )
            if self._slow and lane > 0 and len(claimed) < free:
                lane_skip = busy | self._waiting | {c.endpoint_id for c in claimed}
                claimed += await self._store.write(
                    claims.claim(
                        owner=self.owner,
                        limit=min(lane, free - len(claimed)),
                        lease_seconds=self._settings.lease_seconds,
                        per_endpoint=1,
                        skip_endpoints=[*lane_skip],
                    )
                )
        except Exception as exc:
            self._trouble.failed("claiming deliveries", exc, "; retrying after the poll interval")
            return False
        self._trouble.succeeded()
        start, give_back = self._admit(claimed, self._probation - unproven_in_flight)
        for item in start:
            self._per_endpoint[item.endpoint_id] += 1
            self._inflight[item.delivery_id] = asyncio.create_task(self._attempt(item))
        if give_back:
            await self._release([item.delivery_id for item in give_back])
        self._slots_ran_out = len(claimed) == free
        # An endpoint that got all a claim gives one may have more due: claim again at once if
        # it has room for more (it is skipped once full; each round starts an attempt or
        # claims nothing, so this ends). When no endpoint was skipped, the claim looked at the
        # oldest due rows only, and such an endpoint's backlog may hide other endpoints'
        # deliveries: claim again then too. Else every endpoint not skipped was probed, and a
        # claim now would find nothing more.
        topped = [
            e for e, n in Counter(i.endpoint_id for i in claimed).items() if n >= self._top_up
        ]
        room = any(self._per_endpoint[e] <= self._full_above for e in topped)
        return self._slots_ran_out or room or bool(topped and not skip)

    def _admit(self, claimed: list[Claimed], room: int) -> tuple[list[Claimed], list[Claimed]]:
        """Split a claim into what to send now and what to give back: a proven endpoint's
        deliveries all go (the claim kept to its cap); any other sends one at a time while
        probation has `room` (the slow ones come last, from their lane), else waits, the rest
        given back."""
        start: list[Claimed] = []
        give_back: list[Claimed] = []
        probing: set[str] = set()
        for item in claimed:
            endpoint_id = item.endpoint_id
            if endpoint_id in self._proven:
                start.append(item)
            elif endpoint_id not in probing and room > 0:
                probing.add(endpoint_id)
                room -= 1
                start.append(item)
            else:
                give_back.append(item)
                if endpoint_id not in probing:
                    self._waiting.add(endpoint_id)
        return start, give_back

    async def _attempt(self, item: Claimed) -> None:
        try:
            if item.wait > 0:  # a rate-limited endpoint's turn (the claim spaced them)
                await asyncio.sleep(item.wait)
            body = self._body(item)
            outcome = await self._sender.send(
                url=item.url,
                msg_id=item.event_id,
                body=body,
                secrets=item.secrets,
                headers=item.headers,
            )
            self._finished.append(self._settle(item, outcome))
            # An ordered endpoint's next delivery waits for this result: record it now.
            if item.ordered or len(self._finished) >= self._settings.result_batch_size:
                self._flush_now.set()
        finally:
            del self._inflight[item.delivery_id]
            self._per_endpoint[item.endpoint_id] -= 1
            if self._per_endpoint[item.endpoint_id] <= 0:
                del self._per_endpoint[item.endpoint_id]
            # Claim again when it can find something: the endpoint may be topped up again, or
            # the last claim left due deliveries behind for want of slots and a useful number
            # of slots is free (a claim costs about as much as several sends).
            endpoint_reopened = self._per_endpoint[item.endpoint_id] == self._full_above
            free = self._settings.worker_concurrency - len(self._inflight)
            if endpoint_reopened or (self._slots_ran_out and free >= self._claim_at):
                self._wake.set()

    def _body(self, item: Claimed) -> bytes:
        """The body of `item`'s event: made once for all the endpoints that get it (an event
        never changes), kept for the last `RECENT_BODIES` events."""
        body = self._bodies.get(item.event_id)
        if body is None:
            if len(self._bodies) >= RECENT_BODIES:
                self._bodies.clear()
            body = self._bodies[item.event_id] = envelope.render(
                event_id=item.event_id,
                event=item.event,
                created_at=item.event_created_at,
                data=item.data,
            )
        return body

    def _settle(self, item: Claimed, outcome: Outcome) -> "Settled":
        endpoint_id = item.endpoint_id
        if endpoint_id not in self._proven and self._waiting:
            # An unproven or slow attempt ended: the endpoints waiting for probation may fit.
            self._waiting.clear()
            self._wake.set()
        if outcome.error_kind == "timeout":
            self._slow.add(endpoint_id)
            self._proven.discard(endpoint_id)
        elif outcome.status_code is not None:
            if endpoint_id in self._slow:
                self._slow.discard(endpoint_id)  # into probation: one attempt at a time
            elif endpoint_id not in self._proven:
                self._proven.add(endpoint_id)  # proven: topped up to the cap from now on
                self._wake.set()
        number = item.attempts_made + 1
        decision = policy.decide(outcome, number, self._settings, probe=item.probe)
        finished = Finished(
            item.delivery_id,
            item.endpoint_id,
            number,
            {**outcome.as_row(), "trigger": item.trigger},
            decision.status,
            decision.delay,
        )
        report.attempt(item, number, outcome, decision)
        return Settled(finished, decision.disable_reason, item.probe)

    async def _housekeeping_loop(self) -> None:
        """Prune now and then; in small transactions, so delivery is never held up for long."""
        while True:
            await asyncio.sleep(self._housekeeping_interval)
            try:
                await housekeeping.run_once(self._store, self._settings)
            except Exception as exc:
                self._trouble.failed("pruning old events", exc, "; trying again next period")

    async def _flush_loop(self) -> None:
        while not self._drained:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_now.wait(), self._settings.result_flush_interval)
            self._flush_now.clear()
            await self._flush()

    async def _flush(self) -> None:
        if not self._finished:
            return
        batch, self._finished = self._finished, []
        try:
            disabled = await self._store.write(
                record(self.owner, batch, disable_after=self._settings.disable_after)
            )
        except asyncio.CancelledError:
            # Keep them: recording again is harmless, as complete() drops results whose
            # lease was already given up by an earlier, committed record.
            self._finished[:0] = batch
            raise
        except Exception as exc:
            # Keep them for the next flush; if that never comes the leases lapse and the
            # deliveries are sent again (at least once).
            self._trouble.failed("recording attempts", exc, f" ({len(batch)}); will retry")
            self._finished[:0] = batch
            await asyncio.sleep(self._settings.poll_interval)
            return
        self._trouble.succeeded()
        if disabled:
            reasons = {s.finished.endpoint_id: s.disable_reason for s in batch if s.disable_reason}
            for endpoint_id in disabled:
                reason = reasons.get(endpoint_id) or (
                    f"every delivery failed for more than {self._settings.disable_after:g} s"
                )
                report.endpoint_disabled(endpoint_id, reason)
            self._wake.set()  # their webhook_disabled events are due

    async def _drain(self) -> list[str]:
        """Let in-flight attempts finish (each is bounded by the timeout), cancel stragglers.

        Returns the ids of every delivery that was in flight.
        """
        if not self._inflight:
            return []
        tasks = list(self._inflight.values())
        ids = list(self._inflight)
        _, pending = await asyncio.wait(tasks, timeout=self._settings.delivery_timeout + 1)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return ids

    async def _release(self, delivery_ids: list[str]) -> None:
        try:
            await self._store.write(claims.release(owner=self.owner, delivery_ids=delivery_ids))
        except Exception as exc:
            detail = f" ({len(delivery_ids)}); they lapse on their own"
            self._trouble.failed("releasing leases", exc, detail)


@dataclass(slots=True)  # made per attempt: not frozen, whose __init__ costs ~7x
class Settled:
    """A finished attempt on its way to the store, with what it means for its endpoint."""

    finished: Finished
    disable_reason: str | None
    probe: bool

    def health(self) -> health.AttemptResult:
        finished = self.finished
        started_at = finished.attempt["started_at"]
        return health.AttemptResult(
            finished.endpoint_id, finished.succeeded, started_at, self.disable_reason
        )


def record(owner: str, batch: Sequence[Settled], *, disable_after: float) -> Unit[list[str]]:
    """Record the attempts `owner` still holds leases for and advance their endpoints' clocks,
    in one transaction; return the endpoints this disabled.

    A probe (a ping) never moves the clock, but a 410 it got disables.
    """
    recorded = yield from claims.complete(owner=owner, finished=[s.finished for s in batch])
    kept = {item.delivery_id for item in recorded}
    results = [
        s.health()
        for s in batch
        if s.finished.delivery_id in kept and (not s.probe or s.disable_reason is not None)
    ]
    disabled: list[str] = yield from health.record(results, disable_after=disable_after)
    return disabled
