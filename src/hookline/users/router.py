"""The original service's user routes: registration, listing, messages."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status

from hookline.api import idempotency
from hookline.api.auth import AdminDep, CallerDep, require_self
from hookline.api.deps import StoreDep, runtime_of
from hookline.api.idempotency import IdempotencyKeyHeader
from hookline.api.pagination import After, Limit, set_next_link
from hookline.api.responses import AUTH
from hookline.fields import USERNAME_PATTERN
from hookline.users import service
from hookline.users.schemas import (
    MessageCreate,
    MessageOut,
    UserCreate,
    UserCreated,
    UserOut,
    UserToken,
)

router = APIRouter(tags=["users"])

_404: dict[int | str, dict[str, Any]] = {404: {"description": "Sender or recipient does not exist"}}


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    response_model=UserCreated,
    responses={409: {"description": "Username already exists, or Idempotency-Key reused"}},
)
async def register_user(
    body: UserCreate, store: StoreDep, idempotency_key: IdempotencyKeyHeader = None
) -> UserCreated:
    """Register a user (the name is stored lowercased) and fire `user_registered`.

    A replay under the same `Idempotency-Key` answers `"token": null`: the token is shown once.
    """
    created = await store.write(
        idempotency.once(
            scope="POST /users",
            key=idempotency_key,
            request=body,
            work=service.register(username=body.username),
            status_code=status.HTTP_201_CREATED,
            remember=_remembered_registration,
        )
    )
    return created


def _remembered_registration(created: UserCreated) -> dict[str, Any]:
    # Tokens are stored hashed: a replay cannot show one.
    return created.model_dump(mode="json") | {"token": None}


def _remembered_message(sent: MessageOut) -> dict[str, Any]:
    return sent.model_dump(mode="json")


@router.get("/users", responses=AUTH)
async def list_users(
    request: Request,
    response: Response,
    store: StoreDep,
    _caller: CallerDep,
    limit: Limit = 100,
    after: After = None,
) -> list[UserOut]:
    """Users, oldest first; a `Link: <…>; rel="next"` header when there are more."""
    users = await store.read(service.list_users(limit=limit + 1, after=after))
    if len(users) > limit:
        users = users[:limit]
        set_next_link(request, response, users[-1].id)
    return users


@router.post(
    "/users/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=MessageOut,
    responses={**AUTH, **_404, 409: {"description": "Idempotency-Key reused"}},
)
async def send_message(
    body: MessageCreate,
    request: Request,
    caller: CallerDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> MessageOut:
    """Send a message from one user to another and fire `user_send_message`.

    A user sends only as itself (`403` otherwise); the admin as anyone.
    """
    require_self(caller, body.sender, "send messages as itself")
    # The store from the request, not StoreDep: a dependency fewer to solve on P2's route.
    sent = await runtime_of(request).store.write(
        idempotency.once(
            # Keys are the caller's own: two users may pick the same one.
            scope=f"POST /users/messages {caller.username or '#admin'}",
            key=idempotency_key,
            request=body,
            work=service.send_message(
                sender=body.sender,
                recipient=body.recipient,
                subject=body.subject,
                message=body.message,
            ),
            status_code=status.HTTP_201_CREATED,
            remember=_remembered_message,
        )
    )
    return sent


@router.get("/users/messages", responses={**AUTH, **_404})
async def read_messages(
    request: Request,
    response: Response,
    store: StoreDep,
    caller: CallerDep,
    recipient: Annotated[str, Query(min_length=1, max_length=64, pattern=USERNAME_PATTERN)],
    limit: Limit = 100,
    after: After = None,
) -> list[MessageOut]:
    """Messages sent to `recipient`, oldest first, paginated like `GET /users`.

    A user reads only its own (`403` otherwise); the admin anyone's.
    """
    require_self(caller, recipient, "read messages sent to itself")
    messages = await store.read(service.inbox(recipient=recipient, limit=limit + 1, after=after))
    if len(messages) > limit:
        messages = messages[:limit]
        set_next_link(request, response, messages[-1].id)
    return messages


@router.post("/users/{username}/token", responses={**AUTH, 404: {"description": "No such user"}})
async def issue_token(
    username: Annotated[str, Path(min_length=1, max_length=64, pattern=USERNAME_PATTERN)],
    store: StoreDep,
    _admin: AdminDep,
) -> UserToken:
    """A new token for a user who lost theirs (admin only); the old one stops working."""
    token = await store.write(service.issue_token(username=username))
    return UserToken(username=username.strip().lower(), token=token)
