"""Endpoint secrets and custom header values are sealed at rest: stored as `fernet:…`, opened
only to show, to sign and to send."""

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text, update
from standardwebhooks.webhooks import Webhook

from hookline import secretbox
from hookline.api.app import create_app
from hookline.config import Settings
from hookline.delivery import signing
from hookline.models import Attempt, Base, Endpoint, utcnow
from hookline.secretbox import SEALED_PREFIX, SecretBox, SecretKeyError
from hookline.store import open_store
from hookline.webhooks import secrets as endpoint_secrets
from tests.delivery.helpers import headers_of, register_user, subscribe, wait_until
from tests.support import db as support_db
from tests.support.app import RunningApp, running_app
from tests.support.receiver import Received, Receiver

HOOK = "http://127.0.0.1:9/hook"


async def stored_secrets(running: RunningApp, endpoint_id: str) -> tuple[str, str | None]:
    """The `secret` and `old_secret` columns as they are in the database."""
    query = text("SELECT secret, old_secret FROM endpoints WHERE id = :id")
    async with running.app.state.test_db.engine.connect() as conn:
        secret, old_secret = (await conn.execute(query, {"id": endpoint_id})).one()
    return secret, old_secret


def assert_sealed(stored: str | None, plaintext: str) -> None:
    """Sealed, and no piece of the plaintext (its base64 part, or any 8 characters of it) shows."""
    assert stored is not None
    assert stored.startswith(SEALED_PREFIX)
    encoded = plaintext.removeprefix(signing.SECRET_PREFIX)
    assert plaintext not in stored
    assert encoded not in stored
    assert not any(encoded[i : i + 8] in stored for i in range(len(encoded) - 7))


async def shown_secret(client: httpx.AsyncClient, endpoint_id: str) -> str:
    response = await client.get(f"/webhooks/{endpoint_id}/secret")
    assert response.status_code == 200, response.text
    secret: str = response.json()["secret"]
    return secret


async def rotate(client: httpx.AsyncClient, endpoint_id: str) -> str:
    response = await client.post(f"/webhooks/{endpoint_id}/secret/rotate")
    assert response.status_code == 200, response.text
    secret: str = response.json()["secret"]
    return secret


def verifies(secret: str, received: Received) -> bool:
    Webhook(secret).verify(received.body, received.headers)  # raises when it does not
    return True


@asynccontextmanager
async def started_without_raising(
    app: FastAPI, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan and a client that gets what an HTTP client would: a 500, not the
    exception (the admin token, as tests/support/app.py sends it)."""
    assert settings.admin_token is not None
    headers = {"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as client:
            yield client


async def test_a_registered_secret_is_stored_sealed_and_shown_open(api: RunningApp) -> None:
    registered = await subscribe(api.client, HOOK)

    secret, old_secret = await stored_secrets(api, registered["id"])

    assert_sealed(secret, registered["secret"])
    assert old_secret is None
    assert await shown_secret(api.client, registered["id"]) == registered["secret"]


async def test_the_plaintext_secrets_are_stored_nowhere_in_the_database(api: RunningApp) -> None:
    response = await api.client.post(
        "/webhook",
        json={"event": "user_registered", "url": HOOK},
        headers={"Idempotency-Key": "register-once"},
    )
    assert response.status_code == 201, response.text
    registered = response.json()
    rotated = await rotate(api.client, registered["id"])

    dump = []
    async with api.app.state.test_db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            dump.extend(repr(tuple(row)) for row in await conn.execute(select(table)))
    everything = "\n".join(dump)

    for plaintext in (registered["secret"], rotated):
        assert plaintext.removeprefix(signing.SECRET_PREFIX) not in everything
    replayed = await api.client.post(
        "/webhook",
        json={"event": "user_registered", "url": HOOK},
        headers={"Idempotency-Key": "register-once"},
    )
    assert replayed.status_code == 201, replayed.text
    assert replayed.json()["secret"] == rotated


async def test_a_delivery_is_signed_with_the_opened_secret(
    settings: Settings, receiver: Receiver
) -> None:
    async with running_app(settings, run_worker=True) as running:
        registered = await subscribe(running.client, receiver.url("/hook"))
        await register_user(running.client, "alice")
        await receiver.wait_for(1, path="/hook", timeout=5)

    [received] = receiver.at("/hook")
    assert verifies(registered["secret"], received)


async def test_after_a_rotation_both_stored_secrets_are_sealed_and_both_sign(
    settings: Settings, receiver: Receiver
) -> None:
    async with running_app(settings, run_worker=True) as running:
        registered = await subscribe(running.client, receiver.url("/hook"))
        rotated = await rotate(running.client, registered["id"])
        secret, old_secret = await stored_secrets(running, registered["id"])
        await register_user(running.client, "alice")
        await receiver.wait_for(1, path="/hook", timeout=5)

    assert_sealed(secret, rotated)
    assert_sealed(old_secret, registered["secret"])
    assert_sealed(old_secret, rotated)
    [received] = receiver.at("/hook")
    assert len(received.headers["webhook-signature"].split(" ")) == 2
    assert verifies(rotated, received)
    assert verifies(registered["secret"], received)


@pytest.mark.parametrize("mid_rotation", [False, True], ids=["secret", "secret-and-old-secret"])
async def test_a_plaintext_secret_from_before_sealing_is_sealed_at_the_next_start_and_signs(
    settings: Settings, receiver: Receiver, mid_rotation: bool
) -> None:
    legacy, legacy_old = signing.generate_secret(), signing.generate_secret()
    async with running_app(settings) as before:
        registered = await subscribe(before.client, receiver.url("/hook"))
        values: dict[str, Any] = {"secret": legacy}
        if mid_rotation:
            values |= {"old_secret": legacy_old, "old_secret_until": utcnow() + timedelta(hours=1)}
        async with before.app.state.test_db.sessions.begin() as session:
            await session.execute(
                update(Endpoint).where(Endpoint.id == registered["id"]).values(**values)
            )
        assert await stored_secrets(before, registered["id"]) == (
            legacy,
            legacy_old if mid_rotation else None,
        )

    async with running_app(settings, run_worker=True) as after:
        secret, old_secret = await stored_secrets(after, registered["id"])
        shown = await shown_secret(after.client, registered["id"])
        await register_user(after.client, "alice")
        await receiver.wait_for(1, path="/hook", timeout=5)

    assert_sealed(secret, legacy)
    assert shown == legacy
    [received] = receiver.at("/hook")
    assert verifies(legacy, received)
    if mid_rotation:
        assert_sealed(old_secret, legacy_old)
        assert verifies(legacy_old, received)
    else:
        assert old_secret is None


async def test_a_configured_secret_key_seals_and_no_key_file_is_written(
    make_settings: Callable[..., Settings],
) -> None:
    key = secretbox.generate_key()
    settings = make_settings(secret_key=key)
    async with running_app(settings) as running:
        registered = await subscribe(running.client, HOOK)
        secret, _ = await stored_secrets(running, registered["id"])

    assert SecretBox([key]).open(secret) == registered["secret"]
    assert not (settings.data_dir / secretbox.SECRET_KEY_FILE).exists()


async def test_without_a_configured_key_the_generated_key_file_seals(settings: Settings) -> None:
    async with running_app(settings) as running:
        registered = await subscribe(running.client, HOOK)
        secret, _ = await stored_secrets(running, registered["id"])

    key = (settings.data_dir / secretbox.SECRET_KEY_FILE).read_text().strip()
    assert SecretBox([key]).open(secret) == registered["secret"]


async def test_an_app_with_new_comma_old_keys_opens_secrets_sealed_with_the_old_key(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    old_key, new_key = secretbox.generate_key(), secretbox.generate_key()
    async with running_app(make_settings(secret_key=old_key)) as before:
        registered = await subscribe(before.client, receiver.url("/hook"))

    async with running_app(
        make_settings(secret_key=f"{new_key},{old_key}"), run_worker=True
    ) as after:
        shown = await shown_secret(after.client, registered["id"])
        rotated = await rotate(after.client, registered["id"])
        secret, _ = await stored_secrets(after, registered["id"])
        await register_user(after.client, "alice")
        await receiver.wait_for(1, path="/hook", timeout=5)

    assert shown == registered["secret"]
    assert SecretBox([new_key]).open(secret) == rotated  # new secrets are sealed with the first
    [received] = receiver.at("/hook")
    assert verifies(rotated, received)
    assert verifies(registered["secret"], received)


async def test_an_app_whose_key_does_not_open_the_stored_secrets_says_so(
    make_settings: Callable[..., Settings],
) -> None:
    async with running_app(make_settings(secret_key=secretbox.generate_key())) as before:
        registered = await subscribe(before.client, HOOK)
    settings = make_settings(secret_key=secretbox.generate_key())
    app = create_app(settings)

    try:
        async with started_without_raising(app, settings) as client:
            response = await client.get(f"/webhooks/{registered['id']}/secret")
    except SecretKeyError as exc:  # refusing to start is the clearest answer
        assert "HOOKLINE_SECRET_KEY" in str(exc)
        return
    assert response.status_code >= 500
    assert response.headers["content-type"].startswith("application/json"), response.text
    assert "HOOKLINE_SECRET_KEY" in response.json()["detail"]


async def test_a_delivery_whose_secret_does_not_open_is_not_dropped_silently(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    async with running_app(make_settings(secret_key=secretbox.generate_key())) as before:
        await subscribe(before.client, receiver.url("/hook"))

    try:
        settings = make_settings(secret_key=secretbox.generate_key())
        async with running_app(settings, run_worker=True) as after:
            await register_user(after.client, "alice")

            async def attempt_errors() -> list[str]:
                query = select(Attempt.error).where(Attempt.error.is_not(None))
                async with after.app.state.test_db.sessions() as session:
                    return [str(e) for e in (await session.execute(query)).scalars()]

            errors = await wait_until(attempt_errors, timeout=2, what="an attempt recorded")
    except SecretKeyError as exc:  # refusing to start is the clearest answer
        assert "HOOKLINE_SECRET_KEY" in str(exc)
        return
    assert any("HOOKLINE_SECRET_KEY" in error for error in errors)
    assert receiver.at("/hook") == []


# -- Custom header values: sealed like secrets ------------------------------------------------

TOKEN = "Bearer receiver-credential-0f1e2d3c4b5a6978"
NEW_TOKEN = "Bearer receiver-credential-replaced-8a7b6c5d"
API_KEY = "api-key-5e6f7a8b9c0d1e2f"


async def stored_headers(running: RunningApp, endpoint_id: str) -> Any:
    """The `headers` column as it is in the database (plain SQL), parsed."""
    query = text("SELECT headers FROM endpoints WHERE id = :id")
    async with running.app.state.test_db.engine.connect() as conn:
        raw = (await conn.execute(query, {"id": endpoint_id})).scalar_one()
    return json.loads(raw) if isinstance(raw, str) else raw


def assert_headers_sealed(stored: Any, given: dict[str, str], key: str | None = None) -> None:
    """The names as given, each value sealed (opening to the value with `key`), none shown."""
    assert isinstance(stored, dict)
    assert set(stored) == set(given)
    for name, value in given.items():
        assert stored[name].startswith(SEALED_PREFIX)
        assert value not in stored[name]
        assert not any(value[i : i + 8] in stored[name] for i in range(len(value) - 7))
        if key is not None:
            assert SecretBox([key]).open(stored[name]) == value


async def everything_stored(running: RunningApp) -> str:
    dump = []
    async with running.app.state.test_db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            dump.extend(repr(tuple(row)) for row in await conn.execute(select(table)))
    return "\n".join(dump)


async def create_endpoint(
    client: httpx.AsyncClient, url: str, custom: dict[str, str], idempotency_key: str | None = None
) -> httpx.Response:
    body = {"url": url, "events": ["user_registered"], "headers": custom}
    sent = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}
    return await client.post("/endpoints", json=body, headers=sent)


async def test_custom_header_values_are_stored_sealed_and_shown_as_given(
    make_settings: Callable[..., Settings],
) -> None:
    key = secretbox.generate_key()
    given = {"Authorization": TOKEN, "X-Api-Key": API_KEY}
    async with running_app(make_settings(secret_key=key)) as running:
        client = running.client
        created = await create_endpoint(client, HOOK, given, "create-once")
        assert created.status_code == 201, created.text
        endpoint_id = created.json()["id"]
        at_creation = await stored_headers(running, endpoint_id)
        shown = (await client.get(f"/endpoints/{endpoint_id}")).json()["headers"]
        listed = (await client.get("/endpoints")).json()["data"]
        before_patch = await everything_stored(running)

        patched = await client.patch(
            f"/endpoints/{endpoint_id}", json={"headers": {"Authorization": NEW_TOKEN}}
        )
        assert patched.status_code == 200, patched.text
        after_patch = await stored_headers(running, endpoint_id)
        replayed = await create_endpoint(client, HOOK, given, "create-once")
        after_all = await everything_stored(running)

    assert created.json()["headers"] == given
    assert_headers_sealed(at_creation, given, key)
    assert shown == given
    assert [e["headers"] for e in listed] == [given]
    assert patched.json()["headers"] == {"Authorization": NEW_TOKEN}
    assert_headers_sealed(after_patch, {"Authorization": NEW_TOKEN}, key)
    # Nowhere in plain text: not in the endpoint's row, nor in the stored idempotent answer.
    for value in (TOKEN, API_KEY):
        assert value not in before_patch
    for value in (TOKEN, NEW_TOKEN, API_KEY):
        assert value not in after_all
    # A replay reads the endpoint's own headers, as it reads its secret.
    assert replayed.status_code == 201, replayed.text
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json()["headers"] == {"Authorization": NEW_TOKEN}
    assert replayed.json()["secret"] == created.json()["secret"]


async def test_the_receiver_gets_the_header_values_opened(
    settings: Settings, receiver: Receiver
) -> None:
    given = {"Authorization": TOKEN, "X-Api-Key": API_KEY}
    async with running_app(settings, run_worker=True) as running:
        created = await create_endpoint(running.client, receiver.url("/hook"), given)
        assert created.status_code == 201, created.text
        endpoint_id = created.json()["id"]
        stored = await stored_headers(running, endpoint_id)
        await register_user(running.client, "alice")  # delivered by the worker
        await receiver.wait_for(1, path="/hook", timeout=5)
        pinged = await running.client.post(f"/endpoints/{endpoint_id}/ping")  # sent at once
        assert pinged.status_code == 200, pinged.text
        engine = running.app.state.test_db.engine

        async def both_attempts_recorded() -> bool:
            async with engine.connect() as conn:
                return len((await conn.execute(select(Attempt.id))).all()) == 2

        await wait_until(both_attempts_recorded, timeout=5, what="both attempts recorded")
        dump = await everything_stored(running)

    assert_headers_sealed(stored, given)
    # Nor in the attempts' recorded request headers: the names, with the values redacted.
    assert TOKEN not in dump and API_KEY not in dump
    recorded = pinged.json()["attempt"]["request_headers"]
    assert (recorded["authorization"], recorded["x-api-key"]) == ("(redacted)", "(redacted)")
    delivered, ping = receiver.at("/hook")
    for received in (delivered, ping):
        assert headers_of(received)["authorization"] == TOKEN
        assert headers_of(received)["x-api-key"] == API_KEY
        assert verifies(created.json()["secret"], received)
    assert pinged.json()["attempt"]["status_code"] == 200


async def test_a_header_value_that_does_not_open_fails_as_a_secret_does(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    key = secretbox.generate_key()
    settings = make_settings(secret_key=key)
    async with running_app(settings) as before:
        created = await create_endpoint(
            before.client, receiver.url("/hook"), {"X-Api-Key": API_KEY}
        )
        assert created.status_code == 201, created.text
        endpoint_id = created.json()["id"]
        # Its secret opens (the app starts); its header value was sealed with a lost key.
        lost = SecretBox([secretbox.generate_key()]).seal(API_KEY)
        async with before.app.state.test_db.sessions.begin() as session:
            await session.execute(
                update(Endpoint)
                .where(Endpoint.id == endpoint_id)
                .values(headers={"X-Api-Key": lost})
            )

    app = create_app(settings, run_worker=True)
    async with started_without_raising(app, settings) as client:
        shown = await client.get(f"/endpoints/{endpoint_id}")
        listed = await client.get("/endpoints")
        registered = await client.post("/users", json={"username": "alice"})
        assert registered.status_code == 201, registered.text
        db = support_db.test_db(settings)
        try:

            async def attempt_errors() -> list[str]:
                query = select(Attempt.error).where(Attempt.error.is_not(None))
                async with db.sessions() as session:
                    return [str(e) for e in (await session.execute(query)).scalars()]

            errors = await wait_until(attempt_errors, timeout=5, what="an attempt recorded")
        finally:
            await db.engine.dispose()

    for response in (shown, listed):
        assert response.status_code == 500
        assert "HOOKLINE_SECRET_KEY" in response.json()["detail"]
    assert any("HOOKLINE_SECRET_KEY" in error for error in errors)  # recorded, to be retried
    assert receiver.at("/hook") == []


async def test_resealing_with_a_new_key_reseals_the_header_values(
    make_settings: Callable[..., Settings],
) -> None:
    old_key, new_key = secretbox.generate_key(), secretbox.generate_key()
    given = {"Authorization": TOKEN}
    async with running_app(make_settings(secret_key=old_key)) as before:
        created = await create_endpoint(before.client, HOOK, given)
        assert created.status_code == 201, created.text
        endpoint_id = created.json()["id"]
        sealed_old = await stored_headers(before, endpoint_id)

    settings = make_settings(secret_key=f"{new_key},{old_key}")
    store = open_store(settings)
    try:
        changed = await endpoint_secrets.reseal(store, secretbox.load(settings), every=True)
    finally:
        await store.close()

    async with running_app(make_settings(secret_key=new_key)) as after:
        sealed_new = await stored_headers(after, endpoint_id)
        shown = (await after.client.get(f"/endpoints/{endpoint_id}")).json()["headers"]

    assert changed == 1
    assert_headers_sealed(sealed_old, given, old_key)
    assert_headers_sealed(sealed_new, given, new_key)
    with pytest.raises(SecretKeyError):
        SecretBox([old_key]).open(sealed_new["Authorization"])
    assert shown == given


async def test_a_plaintext_header_value_is_sealed_at_the_next_start(
    make_settings: Callable[..., Settings],
) -> None:
    key = secretbox.generate_key()
    settings = make_settings(secret_key=key)
    async with running_app(settings) as before:
        created = await create_endpoint(before.client, HOOK, {"X-Api-Key": "placeholder"})
        endpoint_id = created.json()["id"]
        async with before.app.state.test_db.sessions.begin() as session:
            await session.execute(
                update(Endpoint)
                .where(Endpoint.id == endpoint_id)
                .values(headers={"X-Api-Key": API_KEY})
            )
        assert await stored_headers(before, endpoint_id) == {"X-Api-Key": API_KEY}

    async with running_app(settings) as after:
        stored = await stored_headers(after, endpoint_id)
        shown = (await after.client.get(f"/endpoints/{endpoint_id}")).json()["headers"]

    assert_headers_sealed(stored, {"X-Api-Key": API_KEY}, key)
    assert shown == {"X-Api-Key": API_KEY}


async def test_deleting_an_endpoint_removes_its_header_values(api: RunningApp) -> None:
    created = await create_endpoint(api.client, HOOK, {"Authorization": TOKEN})
    endpoint_id = created.json()["id"]

    deleted = await api.client.delete(f"/endpoints/{endpoint_id}")

    assert deleted.status_code == 204, deleted.text
    assert await stored_headers(api, endpoint_id) is None
