"""The original service's webhook routes: register, remove, list, ping."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response, status

from hookline.api import idempotency
from hookline.api.auth import ADMIN_ONLY
from hookline.api.deps import (
    DestinationsDep,
    SecretBoxDep,
    SenderDep,
    SettingsDep,
    StoreDep,
)
from hookline.api.idempotency import IdempotencyKeyHeader
from hookline.api.responses import AUTH
from hookline.webhooks import pings, service
from hookline.webhooks.schemas import PingReport, WebhookIn, WebhookList, WebhookRegistered

router = APIRouter(tags=["webhooks"], dependencies=[ADMIN_ONLY], responses=AUTH)

EventFilter = Annotated[
    str | None, Query(max_length=64, description="Only this event (case-insensitive).")
]
_404: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown event, or no URLs registered for it"}
}


@router.post(
    "/webhook",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookRegistered,
    responses={
        404: {"description": "Unknown event"},
        409: {"description": "Already registered, or Idempotency-Key reused"},
    },
)
async def register_webhook(
    body: WebhookIn,
    store: StoreDep,
    settings: SettingsDep,
    destinations: DestinationsDep,
    box: SecretBoxDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> WebhookRegistered:
    """Subscribe a URL to an event; the answer carries the endpoint's signing secret."""
    registration = await service.registration(
        destinations=destinations,
        box=box,
        event=body.event,
        url=body.url,
        ping_new=settings.ping_on_create,
    )
    return await store.write(
        idempotency.once(
            scope="POST /webhook",
            key=idempotency_key,
            request=body,
            work=registration,
            status_code=status.HTTP_201_CREATED,
            remember=_remembered_registration,
            restore=service.with_secret(box),
        )
    )


def _remembered_registration(registered: WebhookRegistered) -> dict[str, Any]:
    # Secrets are not stored with answers: a replay reads the endpoint's own.
    return registered.model_dump(mode="json", exclude={"secret"})


@router.delete(
    "/webhook",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "Unknown event or URL"}},
)
async def remove_webhook(body: WebhookIn, store: StoreDep) -> Response:
    """Unsubscribe a URL from an event; its pending deliveries of that event are cancelled."""
    await store.write(service.unregister(event=body.event, url=body.url))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/webhooks", responses=_404)
async def list_webhooks(store: StoreDep, event_filter: EventFilter = None) -> WebhookList:
    """Every event with its subscribed URLs."""
    return WebhookList(webhooks=await store.read(service.urls_by_event(event_filter=event_filter)))


@router.post("/ping", responses=_404, response_model_exclude_none=True)
async def ping_webhooks(
    store: StoreDep,
    sender: SenderDep,
    event_filter: EventFilter = None,
    data: Annotated[dict[str, Any] | None, Body()] = None,
) -> PingReport:
    """Send a signed `ping` to every subscribed URL now and report who answered 2xx."""
    return await pings.ping(store=store, sender=sender, event_filter=event_filter, data=data)
