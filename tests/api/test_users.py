"""POST /users and GET /users: registration, its errors, keyset pagination."""

import asyncio
from datetime import datetime

import pytest

from tests.support.links import next_link


async def register(client, username):
    response = await client.post("/users", json={"username": username})
    assert response.status_code == 201, response.text
    return response.json()


async def walk_pages(client, url):
    """Every page from `url` on, following the Link headers; returns the pages as lists."""
    pages = []
    while url is not None:
        response = await client.get(url)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        url = next_link(response)
        assert len(pages) < 100, "the Link headers never end"
    return pages


async def test_registration_answers_201_with_id_lowercased_name_time_and_token(api):
    response = await api.client.post("/users", json={"username": "Alice.Smith-01_x"})

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "username", "registered_at", "token"}
    assert body["id"].startswith("usr_")
    assert body["username"] == "alice.smith-01_x"
    assert datetime.fromisoformat(body["registered_at"]).tzinfo is not None
    assert body["token"].startswith("hl_user_")
    assert len(body["token"]) > len("hl_user_") + 20


async def test_each_registration_gets_its_own_id_and_token(api):
    first = await register(api.client, "alice")
    second = await register(api.client, "bob")

    assert first["id"] != second["id"]
    assert first["token"] != second["token"]


async def test_a_username_of_64_characters_is_accepted(api):
    body = await register(api.client, "a" * 64)

    assert body["username"] == "a" * 64


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("alice", "alice"),
        ("alice", "ALICE"),
        ("Alice", "aLiCe"),
    ],
)
async def test_duplicate_username_is_409_whatever_the_case(api, first, second):
    await register(api.client, first)

    response = await api.client.post("/users", json={"username": second})

    assert response.status_code == 409
    assert response.json() == {"detail": "Username already exists"}


async def test_concurrent_registrations_of_one_name_make_one_user(api):
    spellings = ["carol", "CAROL", "Carol", "cArOl", "caroL"]

    responses = await asyncio.gather(
        *(api.client.post("/users", json={"username": name}) for name in spellings)
    )

    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409]
    assert [u["username"] for u in (await api.client.get("/users")).json()] == ["carol"]


async def test_a_refused_duplicate_leaves_one_user(api):
    await register(api.client, "alice")
    await api.client.post("/users", json={"username": "Alice"})

    users = (await api.client.get("/users")).json()

    assert [u["username"] for u in users] == ["alice"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"username": ""}, id="empty"),
        pytest.param({"username": "a" * 65}, id="65-chars"),
        pytest.param({"username": "alice smith"}, id="space"),
        pytest.param({"username": "alice@example.com"}, id="at-sign"),
        pytest.param({"username": "ålice"}, id="unicode-letter"),
        pytest.param({"username": "alice\u200b"}, id="zero-width-space"),
        pytest.param({"username": "alice\n"}, id="trailing-newline"),
        pytest.param({"username": 42}, id="not-a-string"),
        pytest.param({}, id="missing-field"),
        pytest.param({"username": "alice", "admin": True}, id="unknown-field"),
    ],
)
async def test_invalid_registration_is_422_with_a_field_list(api, body):
    response = await api.client.post("/users", json=body)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, list)
    assert detail and all("loc" in error and "msg" in error for error in detail)


async def test_a_body_that_is_not_json_is_422(api):
    response = await api.client.post(
        "/users", content=b"username=alice", headers={"content-type": "application/json"}
    )

    assert response.status_code == 422


async def test_an_invalid_registration_stores_nothing(api):
    await api.client.post("/users", json={"username": "not valid"})

    assert (await api.client.get("/users")).json() == []


async def test_users_are_listed_oldest_first_without_tokens(api):
    names = ["carol", "alice", "bob"]
    registered = [await register(api.client, name) for name in names]

    response = await api.client.get("/users")

    assert response.status_code == 200
    assert response.json() == [
        {"id": u["id"], "username": u["username"], "registered_at": u["registered_at"]}
        for u in registered
    ]
    assert "link" not in response.headers


async def test_an_empty_user_list_is_an_empty_array(api):
    response = await api.client.get("/users")

    assert response.status_code == 200
    assert response.json() == []
    assert "link" not in response.headers


@pytest.mark.parametrize("limit", [1, 3])
async def test_following_link_headers_walks_every_user_once_in_order(api, limit):
    ids = [(await register(api.client, f"user{i:02d}"))["id"] for i in range(7)]

    pages = await walk_pages(api.client, f"/users?limit={limit}")

    assert all(len(page) == limit for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= limit
    assert [u["id"] for page in pages for u in page] == ids


async def test_the_last_full_page_has_no_link(api):
    for i in range(4):
        await register(api.client, f"user{i}")

    first = await api.client.get("/users?limit=2")
    last = await api.client.get(next_link(first))

    assert len(last.json()) == 2
    assert "link" not in last.headers


async def test_after_starts_the_page_past_that_user(api):
    ids = [(await register(api.client, f"user{i}"))["id"] for i in range(4)]

    response = await api.client.get("/users", params={"after": ids[1]})

    assert [u["id"] for u in response.json()] == ids[2:]


async def test_the_default_limit_is_100(api):
    for i in range(101):
        await register(api.client, f"user{i:03d}")

    response = await api.client.get("/users")

    assert len(response.json()) == 100
    assert next_link(response) is not None


async def test_a_limit_of_1000_is_allowed(api):
    await register(api.client, "alice")

    response = await api.client.get("/users?limit=1000")

    assert response.status_code == 200
    assert len(response.json()) == 1


@pytest.mark.parametrize("limit", ["0", "1001", "ten"])
async def test_a_limit_out_of_bounds_is_422(api, limit):
    response = await api.client.get("/users", params={"limit": limit})

    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)


async def test_the_next_link_is_relative_and_never_echoes_a_forged_host(api):
    for name in ("ann", "ben"):
        assert (await api.client.post("/users", json={"username": name})).status_code == 201

    response = await api.client.get("/users?limit=1", headers={"Host": "evil.example"})

    link = next_link(response)
    assert link is not None and link.startswith("/users?")
    assert "evil.example" not in response.headers["link"]
