"""POST /users/messages and GET /users/messages."""

from datetime import datetime

import pytest

from tests.support.links import next_link


@pytest.fixture
async def users(api):
    """alice, bob and carol, registered."""
    for name in ("alice", "bob", "carol"):
        response = await api.client.post("/users", json={"username": name})
        assert response.status_code == 201, response.text


def message(sender="alice", recipient="bob", subject="Hi", text="Hello there", **extra):
    return {"sender": sender, "recipient": recipient, "subject": subject, "message": text, **extra}


async def send(client, **fields):
    response = await client.post("/users/messages", json=message(**fields))
    assert response.status_code == 201, response.text
    return response.json()


async def test_sending_answers_201_with_the_stored_message(api, users):
    response = await api.client.post(
        "/users/messages", json=message(subject="Lunch?", text="At noon")
    )

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "sender", "recipient", "subject", "message", "received_at"}
    assert body["id"].startswith("msg_")
    assert (body["sender"], body["recipient"]) == ("alice", "bob")
    assert (body["subject"], body["message"]) == ("Lunch?", "At noon")
    assert datetime.fromisoformat(body["received_at"]).tzinfo is not None


async def test_both_names_are_answered_lowercased(api, users):
    body = await send(api.client, sender="ALICE", recipient="Bob")

    assert (body["sender"], body["recipient"]) == ("alice", "bob")


async def test_unknown_sender_is_404(api, users):
    response = await api.client.post("/users/messages", json=message(sender="mallory"))

    assert response.status_code == 404
    assert response.json() == {"detail": "Sender does not exist"}


async def test_unknown_recipient_is_404(api, users):
    response = await api.client.post("/users/messages", json=message(recipient="mallory"))

    assert response.status_code == 404
    assert response.json() == {"detail": "Recipient does not exist"}


@pytest.mark.parametrize(("sender", "recipient"), [("alice", "alice"), ("alice", "ALICE")])
async def test_sending_to_oneself_is_422_whatever_the_case(api, users, sender, recipient):
    response = await api.client.post(
        "/users/messages", json=message(sender=sender, recipient=recipient)
    )

    assert response.status_code == 422
    assert response.json() == {"detail": "Sender and recipient cannot be the same"}


@pytest.mark.parametrize(
    ("subject", "text"),
    [
        pytest.param("", "x", id="empty-subject-one-char-message"),
        pytest.param("s" * 200, "m" * 10_000, id="longest-subject-and-message"),
        pytest.param("Ünïcødé ✉", "multi\nline\ttext 🎉", id="unicode"),
    ],
)
async def test_messages_at_the_limits_are_stored_whole(api, users, subject, text):
    sent = await send(api.client, subject=subject, text=text)

    inbox = (await api.client.get("/users/messages", params={"recipient": "bob"})).json()

    assert (sent["subject"], sent["message"]) == (subject, text)
    assert [(m["subject"], m["message"]) for m in inbox] == [(subject, text)]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(message(subject="s" * 201), id="subject-201-chars"),
        pytest.param(message(text=""), id="empty-message"),
        pytest.param(message(text="m" * 10_001), id="message-10001-chars"),
        pytest.param({"sender": "alice", "recipient": "bob", "subject": "Hi"}, id="no-message"),
        pytest.param({"recipient": "bob", "subject": "Hi", "message": "x"}, id="no-sender"),
        pytest.param({"sender": "alice", "subject": "Hi", "message": "x"}, id="no-recipient"),
        pytest.param(message(recipient="bob smith"), id="recipient-with-space"),
        pytest.param(message(cc="carol"), id="unknown-field"),
    ],
)
async def test_invalid_message_is_422_with_a_field_list(api, users, body):
    response = await api.client.post("/users/messages", json=body)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, list)
    assert detail and all("loc" in error and "msg" in error for error in detail)


async def test_a_refused_message_is_not_stored(api, users):
    await api.client.post("/users/messages", json=message(text="m" * 10_001))
    await api.client.post("/users/messages", json=message(sender="mallory"))

    inbox = await api.client.get("/users/messages", params={"recipient": "bob"})

    assert inbox.json() == []


async def test_reading_messages_requires_a_recipient(api, users):
    response = await api.client.get("/users/messages")

    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)


async def test_reading_messages_of_an_unknown_recipient_is_404(api, users):
    response = await api.client.get("/users/messages", params={"recipient": "mallory"})

    assert response.status_code == 404
    assert response.json() == {"detail": "Recipient does not exist"}


async def test_an_empty_inbox_is_an_empty_array(api, users):
    response = await api.client.get("/users/messages", params={"recipient": "carol"})

    assert response.status_code == 200
    assert response.json() == []
    assert "link" not in response.headers


async def test_the_inbox_holds_only_that_recipients_messages_oldest_first(api, users):
    to_bob_1 = await send(api.client, sender="alice", recipient="bob", text="one")
    await send(api.client, sender="bob", recipient="alice", text="not for bob")
    await send(api.client, sender="alice", recipient="carol", text="not for bob either")
    to_bob_2 = await send(api.client, sender="carol", recipient="bob", text="two")

    response = await api.client.get("/users/messages", params={"recipient": "bob"})

    assert response.status_code == 200
    assert response.json() == [to_bob_1, to_bob_2]


@pytest.mark.parametrize("spelling", ["BOB", "bOb"])
async def test_the_recipient_is_found_whatever_the_case(api, users, spelling):
    sent = await send(api.client, recipient="bob")

    response = await api.client.get("/users/messages", params={"recipient": spelling})

    assert response.status_code == 200
    assert response.json() == [sent]


@pytest.mark.parametrize("limit", [1, 2])
async def test_following_link_headers_walks_the_inbox_once_in_order(api, users, limit):
    ids = [(await send(api.client, text=f"message {i}"))["id"] for i in range(5)]
    await send(api.client, recipient="carol", text="someone else's")

    pages = []
    url = f"/users/messages?recipient=bob&limit={limit}"
    while url is not None:
        response = await api.client.get(url)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        url = next_link(response)
        assert len(pages) <= 5, "the Link headers never end"

    assert all(len(page) == limit for page in pages[:-1])
    assert [m["id"] for page in pages for m in page] == ids


async def test_after_starts_the_inbox_past_that_message(api, users):
    ids = [(await send(api.client, text=f"message {i}"))["id"] for i in range(3)]

    response = await api.client.get("/users/messages", params={"recipient": "bob", "after": ids[0]})

    assert [m["id"] for m in response.json()] == ids[1:]
    assert "link" not in response.headers


@pytest.mark.parametrize("limit", ["0", "1001"])
async def test_an_inbox_limit_out_of_bounds_is_422(api, users, limit):
    response = await api.client.get("/users/messages", params={"recipient": "bob", "limit": limit})

    assert response.status_code == 422
