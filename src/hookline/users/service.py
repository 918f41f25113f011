"""Users and messages; each change publishes its event in the same transaction."""

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from hookline import tokens
from hookline.errors import Conflict, NotFound, Unprocessable
from hookline.events import service as events
from hookline.ids import new_id
from hookline.models import Message, User, utcnow
from hookline.users.schemas import MessageOut, UserCreated, UserOut


async def register(*, session: AsyncSession, username: str) -> UserCreated:
    username = username.lower()
    token = tokens.new_token(tokens.USER_PREFIX)
    user = User(
        id=new_id("usr"),
        username=username,
        token_hash=tokens.token_hash(token),
        registered_at=utcnow(),
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:  # the unique index is the check: no read before the write
        raise Conflict("Username already exists") from exc
    out = UserOut.model_validate(user, from_attributes=True)
    await events.publish(
        session=session, event=events.USER_REGISTERED, data=out.model_dump(mode="json")
    )
    return UserCreated(**out.model_dump(), token=token)


async def issue_token(*, session: AsyncSession, username: str) -> str:
    """A new token for the user; the one it had stops working."""
    token = tokens.new_token(tokens.USER_PREFIX)
    changed = await session.execute(
        update(User)
        .where(User.username == username.strip().lower())
        .values(token_hash=tokens.token_hash(token))
        .returning(User.id)
    )
    if changed.first() is None:
        raise NotFound(f"User '{username}' does not exist")
    return token


async def list_users(*, session: AsyncSession, limit: int, after: str | None) -> list[UserOut]:
    query = select(User).order_by(User.id).limit(limit)
    if after is not None:
        query = query.where(User.id > after)
    users = (await session.execute(query)).scalars().all()
    return [UserOut.model_validate(u, from_attributes=True) for u in users]


async def send_message(
    *, session: AsyncSession, sender: str, recipient: str, subject: str, message: str
) -> MessageOut:
    sender, recipient = sender.lower(), recipient.lower()
    if sender == recipient:
        raise Unprocessable("Sender and recipient cannot be the same")
    found = await session.execute(
        select(User.username, User.id).where(User.username.in_((sender, recipient)))
    )
    ids: dict[str, str] = {name: user_id for name, user_id in found.all()}
    if sender not in ids:
        raise NotFound("Sender does not exist")
    if recipient not in ids:
        raise NotFound("Recipient does not exist")
    row = Message(
        id=new_id("msg"),
        sender_id=ids[sender],
        recipient_id=ids[recipient],
        subject=subject,
        body=message,
        received_at=utcnow(),
    )
    session.add(row)
    await session.flush()
    out = MessageOut(
        id=row.id,
        sender=sender,
        recipient=recipient,
        subject=subject,
        message=message,
        received_at=row.received_at,
    )
    await events.publish(
        session=session, event=events.USER_SEND_MESSAGE, data=out.model_dump(mode="json")
    )
    return out


async def inbox(
    *, session: AsyncSession, recipient: str, limit: int, after: str | None
) -> list[MessageOut]:
    recipient_user = await _find(session, recipient.lower())
    if recipient_user is None:
        raise NotFound("Recipient does not exist")
    sender = aliased(User)
    query = (
        select(Message, sender.username)
        .join(sender, sender.id == Message.sender_id)
        .where(Message.recipient_id == recipient_user.id)
        .order_by(Message.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(Message.id > after)
    rows = (await session.execute(query)).all()
    return [
        MessageOut(
            id=m.id,
            sender=sender_name,
            recipient=recipient_user.username,
            subject=m.subject,
            message=m.body,
            received_at=m.received_at,
        )
        for m, sender_name in rows
    ]


async def _find(session: AsyncSession, username: str) -> User | None:
    return (
        await session.execute(select(User).where(User.username == username))
    ).scalar_one_or_none()
