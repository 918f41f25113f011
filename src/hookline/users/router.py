"""The original service's user routes: registration, listing, messages."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from hookline.api.deps import SessionDep
from hookline.api.pagination import After, Limit, set_next_link
from hookline.users import service
from hookline.users.schemas import MessageCreate, MessageOut, UserCreate, UserCreated, UserOut

router = APIRouter(tags=["users"])

_404: dict[int | str, dict[str, Any]] = {404: {"description": "Sender or recipient does not exist"}}


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "Username already exists"}},
)
async def register_user(body: UserCreate, session: SessionDep) -> UserCreated:
    """Register a user (the name is stored lowercased) and fire `user_registered`."""
    return await service.register(session=session, username=body.username)


@router.get("/users")
async def list_users(
    request: Request,
    response: Response,
    session: SessionDep,
    limit: Limit = 100,
    after: After = None,
) -> list[UserOut]:
    """Users, oldest first; a `Link: <…>; rel="next"` header when there are more."""
    users = await service.list_users(session=session, limit=limit + 1, after=after)
    if len(users) > limit:
        users = users[:limit]
        set_next_link(request, response, users[-1].id)
    return users


@router.post("/users/messages", status_code=status.HTTP_201_CREATED, responses=_404)
async def send_message(body: MessageCreate, session: SessionDep) -> MessageOut:
    """Send a message from one user to another and fire `user_send_message`."""
    return await service.send_message(
        session=session,
        sender=body.sender,
        recipient=body.recipient,
        subject=body.subject,
        message=body.message,
    )


@router.get("/users/messages", responses=_404)
async def read_messages(
    request: Request,
    response: Response,
    session: SessionDep,
    recipient: Annotated[str, Query(min_length=1, max_length=64)],
    limit: Limit = 100,
    after: After = None,
) -> list[MessageOut]:
    """Messages sent to `recipient`, oldest first, paginated like `GET /users`."""
    messages = await service.inbox(
        session=session, recipient=recipient, limit=limit + 1, after=after
    )
    if len(messages) > limit:
        messages = messages[:limit]
        set_next_link(request, response, messages[-1].id)
    return messages
