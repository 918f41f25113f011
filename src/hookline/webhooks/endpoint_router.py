"""Webhook endpoints: list and create them; by id manage one, its secret, its
deliveries, recovery.

The routes by id are served under `/endpoints/{id}` (documented) and under `/webhooks/{id}`
(the name scripts used first), by the same handlers. A user's token reaches only its own
endpoints; another's is 404, as if it did not exist.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status

from hookline.api import idempotency
from hookline.api.auth import CallerDep
from hookline.api.deps import DestinationsDep, SecretBoxDep, SenderDep, SettingsDep, StoreDep
from hookline.api.idempotency import IdempotencyKeyHeader
from hookline.api.pagination import Cursor, Page, PageLimit, page
from hookline.api.responses import AUTH
from hookline.events import log
from hookline.events.schemas import DeliveryOut, DeliveryStatus
from hookline.webhooks import endpoints
from hookline.webhooks.schemas import (
    EndpointCreate,
    EndpointCreated,
    EndpointOut,
    EndpointPatch,
    EndpointSummary,
    PingAttempt,
    RecoverIn,
    Requeued,
    RotatedSecret,
    SecretOut,
)

collection = APIRouter(prefix="/endpoints", tags=["endpoints"], responses=AUTH)
# Included twice by the app: under /endpoints and, hidden from the schema, under /webhooks.
by_id = APIRouter(prefix="/{endpoint_id}", tags=["endpoints"], responses=AUTH)

EndpointId = Annotated[str, Path(min_length=1, max_length=64, description="A `wh_…` id.")]
_404: dict[int | str, dict[str, Any]] = {404: {"description": "No such endpoint"}}


@collection.get("")
async def list_endpoints(
    store: StoreDep,
    caller: CallerDep,
    box: SecretBoxDep,
    event: Annotated[
        str | None, Query(max_length=64, description="Subscribed to this event (or to `*`).")
    ] = None,
    enabled: Annotated[bool | None, Query(description="Only enabled, or disabled, ones.")] = None,
    url_contains: Annotated[
        str | None, Query(min_length=1, max_length=2048, description="Case-insensitive.")
    ] = None,
    owner: Annotated[
        str | None, Query(min_length=1, max_length=64, description="Only this user's.")
    ] = None,
    limit: PageLimit = 50,
    cursor: Cursor = None,
) -> Page[EndpointSummary]:
    """Endpoints, newest first: the admin's and every user's for the admin, a user's own for
    that user."""
    found = await store.read(
        endpoints.list_endpoints(
            box=box,
            scope=caller.scope,
            event=event,
            enabled=enabled,
            url_contains=url_contains,
            owner=owner,
            limit=limit + 1,
            cursor=cursor,
        )
    )
    return page(found, limit, lambda e: e.id)


@collection.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=EndpointCreated,
    responses={
        404: {"description": "Unknown event type, or owner"},
        409: {
            "description": "The URL is taken, the user owns as many endpoints as it may,"
            " or Idempotency-Key reused"
        },
    },
)
async def create_endpoint(
    body: EndpointCreate,
    store: StoreDep,
    caller: CallerDep,
    settings: SettingsDep,
    destinations: DestinationsDep,
    box: SecretBoxDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> EndpointCreated:
    """Create an endpoint with its events, description, headers and secret in one call; the
    answer carries its secret. A user's token makes it that user's own."""
    creation = await endpoints.creation(
        destinations=destinations,
        box=box,
        body=body,
        scope=caller.scope,
        max_per_user=settings.max_endpoints_per_user,
        ping_new=settings.ping_on_create,
    )
    return await store.write(
        idempotency.once(
            # Keys are the caller's own: two users may pick the same one.
            scope=f"POST /endpoints {caller.username or '#admin'}",
            key=idempotency_key,
            request=body,
            work=creation,
            status_code=status.HTTP_201_CREATED,
            # Neither secrets nor custom headers are stored with answers: a replay reads the
            # endpoint's own.
            remember=endpoints.remembered_creation,
            restore=endpoints.with_secret_and_headers(box),
        )
    )


@by_id.get("", responses=_404)
async def get_endpoint(
    endpoint_id: EndpointId, store: StoreDep, caller: CallerDep, box: SecretBoxDep
) -> EndpointOut:
    """The endpoint, its events and delivery counts by status (pings left out: they are
    probes); never its secret."""
    return await store.read(endpoints.get(box=box, endpoint_id=endpoint_id, scope=caller.scope))


@by_id.patch(
    "",
    responses={**_404, 409: {"description": "The new URL is taken by another endpoint"}},
)
async def update_endpoint(
    endpoint_id: EndpointId,
    patch: EndpointPatch,
    store: StoreDep,
    caller: CallerDep,
    destinations: DestinationsDep,
    box: SecretBoxDep,
) -> EndpointOut:
    """Change the URL, events, description, custom headers, or enable/disable it.

    Disabling cancels its pending deliveries and fires `webhook_disabled`; enabling restarts
    its failure clock. Dropping events cancels their pending deliveries.
    """
    return await endpoints.update_endpoint(
        store=store,
        destinations=destinations,
        box=box,
        endpoint_id=endpoint_id,
        patch=patch,
        scope=caller.scope,
    )


@by_id.delete("", status_code=status.HTTP_204_NO_CONTENT, responses=_404)
async def delete_endpoint(endpoint_id: EndpointId, store: StoreDep, caller: CallerDep) -> Response:
    """Remove the endpoint: nothing more is sent to it (its pending deliveries are cancelled)
    and every route by its id is `404`; its deliveries and their attempts stay readable
    (`GET /deliveries/{id}`, `GET /deliveries?endpoint_id=`, `GET /events/{id}`) until
    retention prunes them. Its URL may be used again."""
    await store.write(endpoints.remove(endpoint_id=endpoint_id, scope=caller.scope))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@by_id.get("/secret", responses=_404)
async def get_secret(
    endpoint_id: EndpointId, store: StoreDep, caller: CallerDep, box: SecretBoxDep
) -> SecretOut:
    """The `whsec_…` secret that signs what this endpoint gets."""
    secret = await store.read(
        endpoints.secret(box=box, endpoint_id=endpoint_id, scope=caller.scope)
    )
    return SecretOut(secret=secret)


@by_id.post(
    "/secret/rotate",
    responses={**_404, 409: {"description": "Rotated less than 24 hours ago"}},
)
async def rotate_secret(
    endpoint_id: EndpointId, store: StoreDep, caller: CallerDep, box: SecretBoxDep
) -> RotatedSecret:
    """A new secret; for 24 hours both sign every attempt (two `v1,` signatures).

    Another rotation within those 24 hours is `409`: it would cut the overlap short.
    """
    return await store.write(
        endpoints.rotate_secret(box=box, endpoint_id=endpoint_id, scope=caller.scope)
    )


@by_id.post("/ping", responses=_404)
async def ping_endpoint(
    endpoint_id: EndpointId, store: StoreDep, caller: CallerDep, sender: SenderDep
) -> PingAttempt:
    """Send one signed `ping` event to this endpoint now and answer with the attempt."""
    return await endpoints.ping(
        store=store, sender=sender, endpoint_id=endpoint_id, scope=caller.scope
    )


@by_id.get("/deliveries", responses=_404)
async def list_deliveries(
    endpoint_id: EndpointId,
    store: StoreDep,
    caller: CallerDep,
    status: Annotated[DeliveryStatus | None, Query(description="Only these.")] = None,
    limit: PageLimit = 50,
    cursor: Cursor = None,
) -> Page[DeliveryOut]:
    """Its deliveries, newest first."""
    found = await store.read(
        log.list_deliveries(
            endpoint_id=endpoint_id,
            status=status,
            limit=limit + 1,
            cursor=cursor,
            scope=caller.scope,
        )
    )
    return page(found, limit, lambda d: d.id)


@by_id.post(
    "/recover",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**_404, 409: {"description": "The endpoint is disabled"}},
)
async def recover(
    endpoint_id: EndpointId, body: RecoverIn, store: StoreDep, caller: CallerDep
) -> Requeued:
    """Send its deliveries created in [since, until) whose status is in `statuses` (default
    `["failed"]`; `cancelled` and `pending` may be added) again, now: a pending one waiting
    for a later retry is sent now. Pings are never sent again. A disabled endpoint must be
    enabled first (`409`)."""
    requeued = await store.write(
        log.recover(
            endpoint_id=endpoint_id,
            since=body.since,
            until=body.until,
            statuses=body.statuses,
            scope=caller.scope,
        )
    )
    return Requeued(requeued=requeued)
