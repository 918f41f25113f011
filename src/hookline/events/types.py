"""The event-type catalog: the built-in types, and those an application defines,
each with an optional JSON Schema (2020-12) for its events' `data`.

Schemas are checked and data validated by `jsonschema_rs` (a maintained implementation of the
specification), offline: a `$ref` to a remote document is refused, never fetched (it would let
a schema make hookline send requests anywhere).
"""

from collections.abc import Sequence
from functools import lru_cache
from itertools import islice
from typing import Any

import jsonschema_rs
import orjson

from hookline.errors import Conflict, NotFound, Unprocessable
from hookline.events.schemas import EventTypeCreate, EventTypeOut, EventTypePatch
from hookline.models import utcnow
from hookline.store import units
from hookline.store.health import WEBHOOK_DISABLED
from hookline.store.sql import js, sql, ts_required
from hookline.store.units import Unit

USER_REGISTERED = "user_registered"
USER_SEND_MESSAGE = "user_send_message"
PING = "ping"
WILDCARD = "*"

_TIME = {"type": "string", "format": "date-time"}
_TEXT = {"type": "string"}


def _object(description: str, **properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": list(properties),
    }


# What hookline itself sends: the data of each, as receivers get it (tests hold every delivery
# of these to these schemas).
BUILTIN: dict[str, EventTypeOut] = {
    t.name: t
    for t in (
        EventTypeOut(
            name=USER_REGISTERED,
            description="A user registered (POST /users).",
            schema=_object("The new user.", id=_TEXT, username=_TEXT, registered_at=_TIME),
            builtin=True,
        ),
        EventTypeOut(
            name=USER_SEND_MESSAGE,
            description="A user sent a message to another (POST /users/messages).",
            schema=_object(
                "The message; `sender` and `recipient` are usernames.",
                id=_TEXT,
                sender=_TEXT,
                recipient=_TEXT,
                subject=_TEXT,
                message=_TEXT,
                received_at=_TIME,
            ),
            builtin=True,
        ),
        EventTypeOut(
            name=WEBHOOK_DISABLED,
            description="hookline disabled an endpoint (its deliveries kept failing, it answered"
            " 410 Gone, or someone disabled it).",
            schema=_object(
                "The endpoint and why.",
                id=_TEXT,
                url={"type": "string", "format": "uri"},
                reason=_TEXT,
                disabled_at=_TIME,
            ),
            builtin=True,
        ),
        EventTypeOut(
            name=PING,
            description="A test event sent to an endpoint directly (when it is created, or by a"
            " ping route); never subscribed to.",
            schema={"type": "object", "description": "Whatever the ping was sent with."},
            builtin=True,
        ),
    )
}
# What an endpoint can subscribe to among the built-in types.
SUBSCRIBABLE_BUILTIN = (USER_REGISTERED, USER_SEND_MESSAGE, WEBHOOK_DISABLED)

_COLUMNS = "name, description, schema, archived, created_at"
_ALL = sql(f"SELECT {_COLUMNS} FROM event_types ORDER BY name")
_ONE = sql(f"SELECT {_COLUMNS} FROM event_types WHERE name = :name")
_ADD = sql(
    "INSERT INTO event_types (name, description, schema, archived, created_at)"
    " VALUES (:name, :description, :schema, FALSE, :created_at)"
    " ON CONFLICT DO NOTHING RETURNING name"
)
_SET_DESCRIPTION = sql("UPDATE event_types SET description = :description WHERE name = :name")
_SET_SCHEMA = sql("UPDATE event_types SET schema = :schema WHERE name = :name")
_SET_ARCHIVED = sql("UPDATE event_types SET archived = :archived WHERE name = :name")


def canonical(name: str) -> str:
    """Event names in bodies and filters are case-insensitive."""
    return name.strip().lower()


def _out(row: Sequence[Any]) -> EventTypeOut:
    return EventTypeOut(
        name=row[0],
        description=row[1],
        schema=js(row[2]),
        builtin=False,
        archived=bool(row[3]),
        created_at=ts_required(row[4]),
    )


def list_types() -> Unit[list[EventTypeOut]]:
    """Every type, built-in and defined, by name."""
    defined = [_out(row) for row in (yield units.rows(_ALL))]
    return sorted([*BUILTIN.values(), *defined], key=lambda t: t.name)


def find(name: str) -> Unit[EventTypeOut | None]:
    """The type of this (case-insensitive) name, or None."""
    name = canonical(name)
    if name in BUILTIN:
        return BUILTIN[name]
    if "\x00" in name or len(name) > 64:  # no type has such a name (PostgreSQL refuses NUL)
        return None
    row = yield units.one(_ONE, {"name": name})
    return None if row is None else _out(row)


def get(name: str) -> Unit[EventTypeOut]:
    found = yield from find(name)
    if found is None:
        raise NotFound(f"Event type '{name}' not found")
    return found


def create(body: EventTypeCreate) -> Unit[EventTypeOut]:
    if body.schema_ is not None:
        check_schema(body.schema_)
    params = {
        "name": body.name,
        "description": body.description,
        "schema": body.schema_,
        "created_at": utcnow(),
    }
    if body.name in BUILTIN or (yield units.value(_ADD, params)) is None:
        raise Conflict(f"Event type '{body.name}' already exists")
    return (yield from get(body.name))


def update(name: str, patch: EventTypePatch) -> Unit[EventTypeOut]:
    found = yield from get(name)
    if found.builtin:
        raise Unprocessable(f"Event type '{found.name}' is built in: it cannot be changed")
    given, where = patch.model_fields_set, {"name": found.name}
    if "description" in given:
        yield units.execute(_SET_DESCRIPTION, {**where, "description": patch.description})
    if "schema_" in given:
        if patch.schema_ is not None:
            check_schema(patch.schema_)
        yield units.execute(_SET_SCHEMA, {**where, "schema": patch.schema_})
    if patch.archived is not None:
        yield units.execute(_SET_ARCHIVED, {**where, "archived": patch.archived})
    return (yield from get(found.name))


def subscribable(name: str) -> Unit[str]:
    """The canonical name of a type an endpoint may newly subscribe to (or `*`); NotFound as
    the original service answered for an unknown one, 422 for an archived one."""
    given, name = name, canonical(name)
    if name == WILDCARD or name in SUBSCRIBABLE_BUILTIN:
        return name
    found = None if name == PING else (yield from find(name))
    if found is None:
        raise NotFound(f"Event '{given}' not found")
    if found.archived:
        raise Unprocessable(f"Event type '{name}' is archived: it cannot be subscribed to")
    return name


def listed() -> Unit[list[str]]:
    """The types that `GET /webhooks` and `POST /ping` know: every subscribable type."""
    types = yield from list_types()
    return [t.name for t in types if t.name != PING]


# -- JSON Schema ----------------------------------------------------------------------------

MAX_REPORTED_ERRORS = 20


def check_schema(schema: dict[str, Any]) -> None:
    """Unprocessable, saying why, unless `schema` is a usable JSON Schema (2020-12)."""
    try:
        jsonschema_rs.meta.validate(schema)
        _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    except TypeError as exc:  # a number JSON readers cannot take (past 64 bits)
        raise Unprocessable(f"Invalid JSON Schema: {exc}") from exc
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        where = "/".join(str(part) for part in getattr(exc, "instance_path", ()))
        raise Unprocessable(
            f"Invalid JSON Schema{f' at /{where}' if where else ''}: {_first_line(exc)}"
        ) from exc


def validate(name: str, schema: dict[str, Any] | None, data: dict[str, Any]) -> None:
    """Unprocessable naming each failing path (as FastAPI names fields) unless `data` matches."""
    if schema is None:
        return
    validator = _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    try:
        errors = [
            {
                "type": "json_schema",
                "loc": ["body", "data", *error.instance_path],
                "msg": f"{error.message} (event type '{name}')",
            }
            for error in islice(validator.iter_errors(data), MAX_REPORTED_ERRORS)
        ]
    except jsonschema_rs.ReferencingError as exc:  # pragma: no cover - refused when stored
        raise Unprocessable(f"Event type '{name}': its schema cannot be used: {exc}") from exc
    if errors:
        raise Unprocessable(errors)


def standalone(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """The schema with its local `$ref`s inlined, to stand inside another document (OpenAPI's
    `webhooks`), where `#/...` would point into that document; a recursive one keeps its refs."""
    if schema is None:
        return None
    try:
        inlined: dict[str, Any] = jsonschema_rs.dereference(schema, offline=True)
    except (jsonschema_rs.ReferencingError, ValueError):  # pragma: no cover - checked when set
        return schema
    return inlined


@lru_cache(maxsize=256)
def _validator(schema: bytes) -> Any:
    """A compiled validator per schema (keyed by its canonical JSON), offline."""
    return jsonschema_rs.Draft202012Validator(
        orjson.loads(schema), validate_formats=True, offline=True
    )


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
