"""Webhook endpoints by id (CONTRACT §5): manage one, its secret, its deliveries, recovery."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status

from hookline.api.auth import ADMIN_ONLY
from hookline.api.deps import DestinationsDep, SecretBoxDep, SenderDep, StoreDep
from hookline.api.pagination import Cursor, Page, PageLimit, page
from hookline.api.responses import AUTH
from hookline.events import log
from hookline.events.schemas import DeliveryOut, DeliveryStatus
from hookline.webhooks import endpoints
from hookline.webhooks.schemas import (
    EndpointOut,
    EndpointPatch,
    PingAttempt,
    RecoverIn,
    Requeued,
    RotatedSecret,
    SecretOut,
)

router = APIRouter(
    prefix="/webhooks/{endpoint_id}",
    tags=["webhooks"],
    dependencies=[ADMIN_ONLY],
    responses=AUTH,
)

EndpointId = Annotated[str, Path(min_length=1, max_length=64, description="A `wh_…` id.")]
_404: dict[int | str, dict[str, Any]] = {404: {"description": "No such webhook"}}


@router.get("", responses=_404)
async def get_webhook(endpoint_id: EndpointId, store: StoreDep) -> EndpointOut:
    """The endpoint, its events and delivery counts by status; never its secret."""
    return await store.read(endpoints.get(endpoint_id=endpoint_id))


@router.patch(
    "",
    responses={**_404, 409: {"description": "The new URL is taken by another webhook"}},
)
async def update_webhook(
    endpoint_id: EndpointId, patch: EndpointPatch, store: StoreDep, destinations: DestinationsDep
) -> EndpointOut:
    """Change the URL, events, description, custom headers, or enable/disable it.

    Disabling cancels its pending deliveries and fires `webhook_disabled`; enabling restarts
    its failure clock. Dropping events cancels their pending deliveries.
    """
    return await endpoints.update_endpoint(
        store=store, destinations=destinations, endpoint_id=endpoint_id, patch=patch
    )


@router.delete("", status_code=status.HTTP_204_NO_CONTENT, responses=_404)
async def delete_webhook(endpoint_id: EndpointId, store: StoreDep) -> Response:
    """Remove the endpoint: nothing more is sent to it, its deliveries go with it."""
    await store.write(endpoints.remove(endpoint_id=endpoint_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/secret", responses=_404)
async def get_secret(endpoint_id: EndpointId, store: StoreDep, box: SecretBoxDep) -> SecretOut:
    """The `whsec_…` secret that signs what this endpoint gets."""
    return SecretOut(secret=await store.read(endpoints.secret(box=box, endpoint_id=endpoint_id)))


@router.post(
    "/secret/rotate",
    responses={**_404, 409: {"description": "Rotated less than 24 hours ago"}},
)
async def rotate_secret(
    endpoint_id: EndpointId, store: StoreDep, box: SecretBoxDep
) -> RotatedSecret:
    """A new secret; for 24 hours both sign every attempt (two `v1,` signatures).

    Another rotation within those 24 hours is `409`: it would cut the overlap short.
    """
    return await store.write(endpoints.rotate_secret(box=box, endpoint_id=endpoint_id))


@router.post("/ping", responses=_404)
async def ping_webhook(endpoint_id: EndpointId, store: StoreDep, sender: SenderDep) -> PingAttempt:
    """Send one signed `ping` event to this endpoint now and answer with the attempt."""
    return await endpoints.ping(store=store, sender=sender, endpoint_id=endpoint_id)


@router.get("/deliveries", responses=_404)
async def list_deliveries(
    endpoint_id: EndpointId,
    store: StoreDep,
    status: Annotated[DeliveryStatus | None, Query(description="Only these.")] = None,
    limit: PageLimit = 50,
    cursor: Cursor = None,
) -> Page[DeliveryOut]:
    """Its deliveries, newest first."""
    found = await store.read(
        log.list_deliveries(endpoint_id=endpoint_id, status=status, limit=limit + 1, cursor=cursor)
    )
    return page(found, limit, lambda d: d.id)


@router.post(
    "/recover",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**_404, 409: {"description": "The webhook is disabled"}},
)
async def recover(endpoint_id: EndpointId, body: RecoverIn, store: StoreDep) -> Requeued:
    """Send its `failed` deliveries created in [since, until) again, now."""
    requeued = await store.write(
        log.recover(endpoint_id=endpoint_id, since=body.since, until=body.until)
    )
    return Requeued(requeued=requeued)
