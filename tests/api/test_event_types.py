"""The event-type catalog: built-in and defined types, schemas checked when set,
archiving, and every route that takes an event name knowing the catalog's types."""

from typing import Any

import pytest
from openapi_spec_validator import validate

from tests.delivery.helpers import subscribe
from tests.support.app import RunningApp

HOOK = "http://127.0.0.1:9/hook"
BUILTIN = ["ping", "user_registered", "user_send_message", "webhook_disabled"]
ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["order_id", "total"],
    "properties": {
        "order_id": {"type": "string"},
        "total": {"type": "number", "minimum": 0},
        "items": {"type": "array", "items": {"$ref": "#/$defs/item"}},
    },
    "$defs": {"item": {"type": "object", "properties": {"sku": {"type": "string"}}}},
}


async def define(api: RunningApp, name: str, **fields: Any) -> dict[str, Any]:
    response = await api.client.post("/event-types", json={"name": name, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_catalog_holds_the_built_in_types_with_their_schemas(api: RunningApp) -> None:
    response = await api.client.get("/event-types")

    assert response.status_code == 200
    types = response.json()["data"]
    assert [t["name"] for t in types] == BUILTIN
    assert all(t["builtin"] and not t["archived"] for t in types)
    by_name = {t["name"]: t for t in types}
    assert set(by_name["user_registered"]["schema"]["required"]) == {
        "id",
        "username",
        "registered_at",
    }


async def test_a_defined_type_is_listed_read_and_changed(api: RunningApp) -> None:
    created = await define(api, "order.created", description="An order", schema=ORDER_SCHEMA)
    patched = await api.client.patch(
        "/event-types/order.created", json={"description": "An order was placed"}
    )
    read = await api.client.get("/event-types/ORDER.CREATED")
    listed = [t["name"] for t in (await api.client.get("/event-types")).json()["data"]]

    assert created["builtin"] is False and created["schema"] == ORDER_SCHEMA
    assert created["created_at"] is not None
    assert patched.status_code == 200, patched.text
    assert read.json()["description"] == "An order was placed"
    assert read.json()["schema"] == ORDER_SCHEMA
    assert listed == sorted([*BUILTIN, "order.created"])


async def test_a_schema_can_be_removed_and_a_type_archived(api: RunningApp) -> None:
    await define(api, "order.created", schema=ORDER_SCHEMA)

    cleared = await api.client.patch("/event-types/order.created", json={"schema": None})
    archived = await api.client.patch("/event-types/order.created", json={"archived": True})

    assert cleared.json()["schema"] is None
    assert archived.json()["archived"] is True


async def test_the_catalog_pages_by_name(api: RunningApp) -> None:
    for name in ("a.one", "b.two", "c.three"):
        await define(api, name)

    first = (await api.client.get("/event-types", params={"limit": 3})).json()
    second = (
        await api.client.get("/event-types", params={"limit": 3, "cursor": first["next_cursor"]})
    ).json()

    assert [t["name"] for t in first["data"]] == ["a.one", "b.two", "c.three"]
    assert [t["name"] for t in second["data"]] == BUILTIN[:3]
    assert second["next_cursor"] == BUILTIN[2]


@pytest.mark.parametrize("name", ["user_registered", "ping", "order.created"])
async def test_a_type_that_exists_cannot_be_defined_again(api: RunningApp, name: str) -> None:
    await define(api, "order.created")

    response = await api.client.post("/event-types", json={"name": name})

    assert response.status_code == 409
    assert response.json() == {"detail": f"Event type '{name}' already exists"}


@pytest.mark.parametrize("name", ["", "Order", "order created", "*", "x" * 65, "café"])
async def test_a_bad_name_is_422(api: RunningApp, name: str) -> None:
    response = await api.client.post("/event-types", json={"name": name})

    assert response.status_code == 422, response.text
    assert (await api.client.get("/event-types")).json()["data"][0]["name"] == "ping"


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        pytest.param({"type": "nonsense"}, "Invalid JSON Schema at /type", id="unknown type"),
        pytest.param({"minimum": "zero"}, "Invalid JSON Schema at /minimum", id="wrong keyword"),
        pytest.param({"pattern": "("}, "Invalid JSON Schema", id="a regex that does not compile"),
        pytest.param({"$ref": "#/$defs/missing"}, "Invalid JSON Schema", id="a dangling $ref"),
        pytest.param(
            {"$ref": "http://127.0.0.1:9/schema.json"},
            "Invalid JSON Schema",
            id="a remote $ref (never fetched)",
        ),
    ],
)
async def test_an_invalid_schema_is_422_saying_why_and_nothing_is_stored(
    api: RunningApp, schema: dict[str, Any], says: str
) -> None:
    created = await api.client.post("/event-types", json={"name": "bad", "schema": schema})
    await define(api, "good")
    patched = await api.client.patch("/event-types/good", json={"schema": schema})

    for response in (created, patched):
        assert response.status_code == 422, response.text
        assert says in response.json()["detail"]
    assert (await api.client.get("/event-types/bad")).status_code == 404
    assert (await api.client.get("/event-types/good")).json()["schema"] is None


@pytest.mark.parametrize("name", BUILTIN)
async def test_the_built_in_types_cannot_be_changed(api: RunningApp, name: str) -> None:
    response = await api.client.patch(f"/event-types/{name}", json={"archived": True})

    assert response.status_code == 422
    assert response.json() == {"detail": f"Event type '{name}' is built in: it cannot be changed"}
    assert (await api.client.get(f"/event-types/{name}")).json()["archived"] is False


async def test_an_unknown_type_is_404(api: RunningApp) -> None:
    read = await api.client.get("/event-types/nope")
    patched = await api.client.patch("/event-types/nope", json={"archived": True})

    assert (read.status_code, patched.status_code) == (404, 404)
    assert read.json() == {"detail": "Event type 'nope' not found"}


# --- Every route that takes an event name knows the catalog's types -------------------------


async def test_a_defined_type_can_be_subscribed_listed_pinged_and_filtered(
    api: RunningApp,
) -> None:
    await define(api, "order.created")

    registered = await api.client.post("/webhook", json={"event": "Order.Created", "url": HOOK})
    listed = await api.client.get("/webhooks")
    filtered = await api.client.get("/webhooks", params={"event_filter": "order.created"})
    pinged = await api.client.post("/ping", params={"event_filter": "order.created"})
    events = await api.client.get("/events", params={"event": "order.created"})

    assert registered.status_code == 201, registered.text
    assert registered.json()["event"] == "order.created"
    assert {"event": "order.created", "urls": [HOOK]} in listed.json()["webhooks"]
    assert filtered.json() == {"webhooks": [{"event": "order.created", "urls": [HOOK]}]}
    assert pinged.json()["failed_webhooks_count"] == 1
    assert events.status_code == 200 and events.json()["data"] == []


async def test_get_webhooks_lists_every_type_empty_ones_too(api: RunningApp) -> None:
    await define(api, "order.created")

    listed = (await api.client.get("/webhooks")).json()["webhooks"]

    assert [entry["event"] for entry in listed] == [
        "order.created",
        "user_registered",
        "user_send_message",
        "webhook_disabled",
    ]
    assert all(entry["urls"] == [] for entry in listed)


async def test_an_archived_type_cannot_be_newly_subscribed_to_but_stays_where_it_was(
    api: RunningApp,
) -> None:
    await define(api, "order.created")
    kept = await subscribe(api.client, HOOK, "order.created")
    await api.client.patch("/event-types/order.created", json={"archived": True})

    refused = await api.client.post(
        "/webhook", json={"event": "order.created", "url": "http://127.0.0.1:9/new"}
    )
    patched = await api.client.patch(
        f"/endpoints/{kept['id']}", json={"events": ["order.created", "user_registered"]}
    )

    assert refused.status_code == 422
    assert refused.json() == {
        "detail": "Event type 'order.created' is archived: it cannot be subscribed to"
    }
    assert patched.status_code == 200, patched.text
    assert patched.json()["events"] == ["order.created", "user_registered"]


# --- OpenAPI webhooks -----------------------------------------------------------------------


async def test_openapi_has_one_webhook_per_type_and_validates(api: RunningApp) -> None:
    await define(api, "order.created", description="An order", schema=ORDER_SCHEMA)

    document = (await api.client.get("/openapi.json")).json()

    validate(document)  # OpenAPI 3.1, by openapi-spec-validator
    assert document["openapi"].startswith("3.1")
    assert sorted(document["webhooks"]) == sorted([*BUILTIN, "order.created"])
    order = document["webhooks"]["order.created"]["post"]
    envelope = order["requestBody"]["content"]["application/json"]["schema"]
    assert envelope["required"] == ["id", "event", "timestamp", "data"]
    assert envelope["properties"]["event"] == {"const": "order.created"}
    # The type's schema, its local $ref inlined: `#/$defs` would point into the OpenAPI document.
    items = envelope["properties"]["data"]["properties"]["items"]["items"]
    assert items == {"type": "object", "properties": {"sku": {"type": "string"}}}
    assert {p["name"] for p in order["parameters"]} == {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }


async def test_openapi_follows_the_catalog_as_it_changes(api: RunningApp) -> None:
    before = (await api.client.get("/openapi.json")).json()["webhooks"]
    await define(api, "invoice.paid", schema={"type": "object", "required": ["invoice"]})
    after = (await api.client.get("/openapi.json")).json()["webhooks"]

    assert "invoice.paid" not in before
    data = after["invoice.paid"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert data["properties"]["data"] == {"type": "object", "required": ["invoice"]}
