"""Users and messages; each change publishes its event in the same unit of work."""

from typing import Any

from hookline import tokens
from hookline.errors import Conflict, NotFound, Unprocessable
from hookline.events import service as events
from hookline.ids import new_id
from hookline.models import utcnow
from hookline.store import units
from hookline.store.sql import sql, ts_required
from hookline.store.units import Unit
from hookline.users.schemas import MessageOut, UserCreated, UserOut

# The unique indexes are the checks: no read before the write.
_ADD_USER = sql(
    "INSERT INTO users (id, username, token_hash, registered_at)"
    " VALUES (:id, :username, :token_hash, :registered_at) ON CONFLICT DO NOTHING RETURNING id"
)
_SET_TOKEN = sql(
    "UPDATE users SET token_hash = :token_hash WHERE username = :username RETURNING id"
)
_LIST = sql(
    "SELECT id, username, registered_at FROM users WHERE id > :after ORDER BY id LIMIT :limit"
)
_IDS = sql("SELECT username, id FROM users WHERE username IN (:sender, :recipient)")
_ADD_MESSAGE = sql(
    "INSERT INTO messages (id, sender_id, recipient_id, subject, body, received_at)"
    " VALUES (:id, :sender_id, :recipient_id, :subject, :body, :received_at)"
)
_FIND = sql("SELECT id, username FROM users WHERE username = :username")
_INBOX = sql(
    "SELECT m.id, u.username, m.subject, m.body, m.received_at FROM messages m"
    " JOIN users u ON u.id = m.sender_id"
    " WHERE m.recipient_id = :recipient_id AND m.id > :after ORDER BY m.id LIMIT :limit"
)


def register(*, username: str) -> Unit[UserCreated]:
    username = username.lower()
    token = tokens.new_token(tokens.USER_PREFIX)
    out = UserOut(id=new_id("usr"), username=username, registered_at=utcnow())
    row = {**out.model_dump(), "token_hash": tokens.token_hash(token)}
    if (yield units.value(_ADD_USER, row)) is None:
        raise Conflict("Username already exists")
    yield from events.publish(
        event=events.USER_REGISTERED, data=out.model_dump(mode="json"), user_id=out.id
    )
    return UserCreated(**out.model_dump(), token=token)


def issue_token(*, username: str) -> Unit[str]:
    """A new token for the user; the one it had stops working."""
    token = tokens.new_token(tokens.USER_PREFIX)
    params = {"token_hash": tokens.token_hash(token), "username": username.strip().lower()}
    if (yield units.value(_SET_TOKEN, params)) is None:
        raise NotFound(f"User '{username}' does not exist")
    return token


def list_users(*, limit: int, after: str | None) -> Unit[list[UserOut]]:
    found = yield units.rows(_LIST, {"after": after or "", "limit": limit})
    return [UserOut(id=r[0], username=r[1], registered_at=ts_required(r[2])) for r in found]


def send_message(*, sender: str, recipient: str, subject: str, message: str) -> Unit[MessageOut]:
    sender, recipient = sender.lower(), recipient.lower()
    if sender == recipient:
        raise Unprocessable("Sender and recipient cannot be the same")
    found = yield units.rows(_IDS, {"sender": sender, "recipient": recipient})
    ids: dict[str, str] = {row[0]: row[1] for row in found}
    if sender not in ids:
        raise NotFound("Sender does not exist")
    if recipient not in ids:
        raise NotFound("Recipient does not exist")
    out = MessageOut(
        id=new_id("msg"),
        sender=sender,
        recipient=recipient,
        subject=subject,
        message=message,
        received_at=utcnow(),
    )
    row: dict[str, Any] = {
        "id": out.id,
        "sender_id": ids[sender],
        "recipient_id": ids[recipient],
        "subject": subject,
        "body": message,
        "received_at": out.received_at,
    }
    yield units.execute(_ADD_MESSAGE, row)
    # It concerns the recipient: its own endpoints get it.
    yield from events.publish(
        event=events.USER_SEND_MESSAGE, data=out.model_dump(mode="json"), user_id=ids[recipient]
    )
    return out


def inbox(*, recipient: str, limit: int, after: str | None) -> Unit[list[MessageOut]]:
    user = yield units.one(_FIND, {"username": recipient.lower()})
    if user is None:
        raise NotFound("Recipient does not exist")
    found = yield units.rows(
        _INBOX, {"recipient_id": user[0], "after": after or "", "limit": limit}
    )
    return [
        MessageOut(
            id=r[0],
            sender=r[1],
            recipient=user[1],
            subject=r[2],
            message=r[3],
            received_at=ts_required(r[4]),
        )
        for r in found
    ]
