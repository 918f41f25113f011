"""Operate a running hookline over its HTTP API: `hookline endpoints …`, `hookline deliveries …`,
`hookline events send …`, `hookline status`.

Where: HOOKLINE_URL (default http://127.0.0.1:8000) or --url; who: HOOKLINE_TOKEN or --token.
Tables for people; --json prints the API's JSON as it came (a list followed over several
pages as one `{"data": [...], "next_cursor": …}`). An operator's mistake — no token, nothing
at HOOKLINE_URL, a 401 or 403, an unknown id, a refused body — is one line on stderr and exit
status 2 (apiclient raises an OperatorError; cli.main reports it).
"""

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from hookline.apiclient import DEFAULT_URL, Api, by_label, metric, one_line, parse_metrics
from hookline.operator_errors import OperatorError

PAGE_MAX = 250  # the API's largest `limit`
DELIVERY_STATUSES = ("pending", "succeeded", "failed", "cancelled")

Url = Annotated[
    str,
    typer.Option(
        "--url", envvar="HOOKLINE_URL", help="Where hookline's API is.", show_default=True
    ),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="HOOKLINE_TOKEN",
        help="A bearer token: the admin's, or a user's (which sees only its own).",
        show_default=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print the API's JSON, for scripts.")]
Limit = Annotated[int, typer.Option(min=1, help="At most this many (pages are followed).")]


def _app(help_text: str) -> typer.Typer:
    return typer.Typer(
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )


endpoints_app = _app("The endpoints (webhook URLs) of a running hookline.")
deliveries_app = _app("Deliveries: what was sent where, every attempt, retries.")
events_app = _app("Application events.")


def register(app: typer.Typer) -> None:
    """Add the commands that operate a running hookline to the `hookline` command."""
    app.add_typer(endpoints_app, name="endpoints")
    app.add_typer(deliveries_app, name="deliveries")
    app.add_typer(events_app, name="events")
    app.command("status")(status)


# Output


def _print_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Plain fixed-width columns, two spaces apart; the last column is not padded."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *cells]:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return one_line(str(value))


def _fields(pairs: Iterable[tuple[str, object]]) -> str:
    """`name: value` lines, the values aligned."""
    items = [(name, _cell(value)) for name, value in pairs]
    width = max(len(name) for name, _ in items) + 1
    return "\n".join(f"{(name + ':').ljust(width)} {value}" for name, value in items)


def _when(value: object) -> str | None:
    """An API timestamp (`2026-11-28T12:00:00.123456Z`) as `2026-11-28 12:00:00Z`."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _shorten(text: object, width: int = 80) -> str | None:
    if text is None or text == "":
        return None
    line = one_line(str(text))
    return line if len(line) <= width else line[: width - 1] + "…"


# Lists


def _pages(
    api: Api, path: str, params: Mapping[str, Any], limit: int, *, what: str | None = None
) -> dict[str, Any]:
    """Follow `next_cursor` until `limit` items: `{"data": [...], "next_cursor": …}` (the
    cursor after the last item given, null when there are no more)."""
    items: list[Any] = []
    cursor: str | None = None
    while True:
        page_params = {**params, "limit": min(limit - len(items), PAGE_MAX), "cursor": cursor}
        page = _json_object(api, api.get(path, params=page_params, what=what).json(), path)
        data = page.get("data")
        if not isinstance(data, list):
            raise _not_hookline(api, path)
        items.extend(data)
        cursor = page.get("next_cursor")
        if not cursor or not data or len(items) >= limit:
            return {"data": items, "next_cursor": cursor or None}


def _json_object(api: Api, payload: Any, path: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise _not_hookline(api, path)
    return payload


def _not_hookline(api: Api, path: str) -> OperatorError:
    return OperatorError(
        f"the answer to GET {path} from {api} is not hookline's", "check HOOKLINE_URL"
    )


def _more_note(listing: Mapping[str, Any], noun: str) -> None:
    if listing.get("next_cursor"):
        typer.echo(f"(more {noun}: raise --limit to see them)", err=True)


# endpoints


@endpoints_app.command("list")
def endpoints_list(
    event: Annotated[str | None, typer.Option(help="Only those subscribed to this event.")] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enabled/--disabled", help="Only enabled or disabled ones.")
    ] = None,
    owner: Annotated[str | None, typer.Option(help="Only this user's (admin token).")] = None,
    limit: Limit = 100,
    as_json: Json = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Endpoints, newest first (GET /endpoints)."""
    api = Api(url, token)
    params = {"event": event, "enabled": enabled, "owner": owner}
    listing = _pages(api, "/endpoints", params, limit)
    if as_json:
        _print_json(listing)
        return
    if not listing["data"]:
        typer.echo("no endpoints")
        return
    rows = [
        (
            e.get("id"),
            _endpoint_state(e),
            e.get("owner"),
            ",".join(str(name) for name in e.get("events") or []),
            _when(e.get("created_at")),
            e.get("url"),
        )
        for e in listing["data"]
    ]
    typer.echo(table(("ID", "STATE", "OWNER", "EVENTS", "CREATED", "URL"), rows))
    _more_note(listing, "endpoints")


def _endpoint_state(endpoint: Mapping[str, Any]) -> str:
    if not endpoint.get("enabled", True):
        return "disabled"
    return "failing" if endpoint.get("failing_since") else "enabled"


@endpoints_app.command("show")
def endpoints_show(
    endpoint_id: Annotated[str, typer.Argument(metavar="ID", help="The endpoint's id (wh_…).")],
    as_json: Json = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """One endpoint and its deliveries by status (GET /endpoints/{id})."""
    api = Api(url, token)
    path = f"/endpoints/{_segment(endpoint_id)}"
    endpoint = _json_object(api, api.get(path, what=f"endpoint {endpoint_id}").json(), path)
    if as_json:
        _print_json(endpoint)
        return
    state = _endpoint_state(endpoint)
    if state == "disabled":
        since = _when(endpoint.get("disabled_at"))
        state += f" since {since}" if since else ""
        reason = endpoint.get("disabled_reason")
        state += f" ({reason})" if reason else ""
    elif state == "failing":
        state += f" since {_when(endpoint.get('failing_since'))}"
    headers = endpoint.get("headers") or {}
    stats = endpoint.get("stats") or {}
    typer.echo(
        _fields(
            [
                ("id", endpoint.get("id")),
                ("url", endpoint.get("url")),
                ("state", state),
                ("owner", endpoint.get("owner")),
                ("events", ", ".join(str(name) for name in endpoint.get("events") or [])),
                ("description", endpoint.get("description")),
                ("headers", ", ".join(f"{k}: {v}" for k, v in headers.items())),
                ("filter", _compact(endpoint.get("filter"))),
                ("rate limit", _compact(endpoint.get("rate_limit"))),
                ("ordered", endpoint.get("ordered")),
                ("created", _when(endpoint.get("created_at"))),
                ("deliveries", ", ".join(f"{n} {s}" for s, n in stats.items())),
            ]
        )
    )


def _compact(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _segment(value: str) -> str:
    """An id as one path segment (an id with a `/` must not reach another route)."""
    from urllib.parse import quote

    return quote(value, safe="")


# deliveries


@deliveries_app.command("list")
def deliveries_list(
    endpoint: Annotated[
        str | None, typer.Option(metavar="ID", help="Only this endpoint's deliveries.")
    ] = None,
    status_filter: Annotated[
        str | None,
        typer.Option(
            "--status", help=f"Only those in this status ({', '.join(DELIVERY_STATUSES)})."
        ),
    ] = None,
    limit: Limit = 50,
    as_json: Json = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Deliveries, newest first (GET /endpoints/{id}/deliveries, or GET /deliveries)."""
    api = Api(url, token)
    params = {"status": status_filter}
    if endpoint is not None:
        path = f"/endpoints/{_segment(endpoint)}/deliveries"
        listing = _pages(api, path, params, limit, what=f"endpoint {endpoint}")
    else:
        # GET /deliveries (every endpoint's) is newer than the per-endpoint list: ask whether
        # this hookline has it before following its pages.
        probe = api.send("GET", "/deliveries", params={**params, "limit": 1})
        if probe.status in (404, 405) and _generic_not_found(probe.json()):
            raise OperatorError(
                f"the hookline at {api} lists deliveries per endpoint only",
                "pass --endpoint ID (see `hookline endpoints list`)",
            )
        if not 200 <= probe.status < 300:
            raise api.refusal("GET", "/deliveries", probe, what=None)
        listing = _pages(api, "/deliveries", params, limit)
    if as_json:
        _print_json(listing)
        return
    if not listing["data"]:
        typer.echo("no deliveries")
        return
    rows = [
        (
            d.get("id"),
            d.get("status"),
            d.get("attempts_made"),
            d.get("event"),
            d.get("endpoint_id"),
            _when(d.get("created_at")),
            _when(d.get("next_attempt_at") or d.get("finished_at")),
        )
        for d in listing["data"]
    ]
    headers = ("ID", "STATUS", "ATTEMPTS", "EVENT", "ENDPOINT", "CREATED", "NEXT/FINISHED")
    typer.echo(table(headers, rows))
    _more_note(listing, "deliveries")


def _generic_not_found(payload: Any) -> bool:
    """FastAPI's answer for a path it has no route for (not an id it did not find)."""
    return isinstance(payload, dict) and payload.get("detail") in (
        "Not Found",
        "Method Not Allowed",
    )


@deliveries_app.command("show")
def deliveries_show(
    delivery_id: Annotated[str, typer.Argument(metavar="ID", help="The delivery's id (dlv_…).")],
    as_json: Json = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """One delivery and every attempt (GET /deliveries/{id})."""
    api = Api(url, token)
    path = f"/deliveries/{_segment(delivery_id)}"
    delivery = _json_object(api, api.get(path, what=f"delivery {delivery_id}").json(), path)
    if as_json:
        _print_json(delivery)
        return
    _print_delivery(delivery)


def _print_delivery(delivery: Mapping[str, Any]) -> None:
    status = str(delivery.get("status"))
    if delivery.get("next_attempt_at"):
        status += f", next attempt {_when(delivery.get('next_attempt_at'))}"
    typer.echo(
        _fields(
            [
                ("id", delivery.get("id")),
                ("status", status),
                ("event", f"{delivery.get('event')} ({delivery.get('event_id')})"),
                ("endpoint", f"{delivery.get('endpoint_id')} {delivery.get('url')}"),
                ("attempts", delivery.get("attempts_made")),
                ("created", _when(delivery.get("created_at"))),
                ("finished", _when(delivery.get("finished_at"))),
            ]
        )
    )
    attempts = delivery.get("attempts") or []
    if not attempts:
        typer.echo("\nno attempt yet")
        return
    rows = [
        (
            a.get("number"),
            _when(a.get("started_at")),
            a.get("duration_ms"),
            a.get("status_code") if a.get("status_code") is not None else a.get("error_kind"),
            _shorten(a.get("error"))
            or (
                f"answered: {_shorten(a.get('response_body'))}" if a.get("response_body") else None
            ),
        )
        for a in attempts
    ]
    typer.echo("")
    typer.echo(table(("#", "STARTED", "MS", "RESULT", "ERROR"), rows))


@deliveries_app.command("retry")
def deliveries_retry(
    delivery_id: Annotated[str, typer.Argument(metavar="ID", help="The delivery's id (dlv_…).")],
    as_json: Json = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Send a delivery again now, whatever its status (POST /deliveries/{id}/retry)."""
    api = Api(url, token)
    path = f"/deliveries/{_segment(delivery_id)}/retry"
    answer = api.post(path, what=f"delivery {delivery_id}")
    payload = answer.json()
    if as_json:
        _print_json(payload)
        return
    made = payload.get("attempts_made") if isinstance(payload, dict) else None
    typer.echo(
        f"{delivery_id} is due now: the worker sends it again"
        + (f" (attempts so far: {made})" if made is not None else "")
    )


# events


@events_app.command("send")
def events_send(
    event_type: Annotated[str, typer.Argument(metavar="TYPE", help="A defined event type.")],
    data: Annotated[
        str,
        typer.Option(
            help="The event's data: JSON, @file.json, or - for standard input.", show_default=True
        ),
    ] = "{}",
    user: Annotated[
        str | None, typer.Option(help="The username the event concerns (its endpoints get it).")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="Sent as Idempotency-Key: the same key and body again sends nothing."),
    ] = None,
    as_json: Json = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Send an application event (POST /events, admin token)."""
    body: dict[str, Any] = {"event": event_type, "data": _read_data(data)}
    if user is not None:
        body["user"] = user
    api = Api(url, token)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    hints = {
        404: "check the type's name (GET /event-types lists them; POST /event-types defines one)"
        + (" and that --user names a registered user" if user is not None else ""),
        422: f"make --data match the type's schema (GET /event-types/{event_type})",
    }
    answer = api.post("/events", body, headers=headers, hints=hints)
    payload = answer.json()
    if as_json:
        _print_json(payload)
        return
    if not isinstance(payload, dict):
        raise _not_hookline(api, "/events")
    replayed = answer.headers.get("idempotent-replayed", "").lower() == "true"
    count = payload.get("deliveries")
    sent = _plural(count, "delivery", "deliveries") if isinstance(count, int) else "sent"
    typer.echo(
        f"{payload.get('id')} ({payload.get('event')}): "
        + (f"replayed: this key sent it before ({sent}); nothing new" if replayed else sent)
    )


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _read_data(value: str) -> Any:
    where = "--data"
    try:
        if value == "-":
            where, text = "standard input", sys.stdin.read()
        elif value.startswith("@"):
            where, text = value[1:], Path(value[1:]).read_text(encoding="utf-8")
        else:
            text = value
    except (OSError, UnicodeDecodeError) as exc:
        raise OperatorError(
            f"cannot read --data from {where} ({exc})", "pass JSON, @file.json or -"
        ) from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise OperatorError(
            f"{where} is not JSON ({exc})", 'pass JSON, e.g. --data \'{"order_id": "o-1"}\''
        ) from exc


# status

# Each metric under its names, newest first: /metrics is moving to prometheus_client.
_DELIVERIES = ("hookline_deliveries",)
_DUE = ("hookline_deliveries_due",)
_IN_FLIGHT = ("hookline_deliveries_in_flight",)
_OLDEST = ("hookline_oldest_due_age_seconds", "hookline_oldest_due_seconds")
_ENDPOINTS = ("hookline_endpoints",)
_EVENTS = ("hookline_events", "hookline_events_total")
_BUILD = ("hookline_build_info",)


def status(
    as_json: Json = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Readiness and the delivery queue (GET /ready, GET /metrics with the admin token).

    Exit status 1 when hookline is not ready.
    """
    api = Api(url, token)
    api.check_token()  # the queue needs it: a mistake is told before anything else
    ready_answer = api.send("GET", "/ready", auth=False)
    ready_payload = ready_answer.json()
    if ready_answer.status not in (200, 503) or not isinstance(ready_payload, dict):
        raise api.refusal("GET", "/ready", ready_answer, what=None)
    ready = ready_answer.status == 200
    readiness = str(ready_payload.get("status", "unknown"))
    queue: dict[str, Any] | None = None
    unavailable: str | None = None
    metrics_answer = api.send("GET", "/metrics")
    if 200 <= metrics_answer.status < 300:
        queue = _queue(metrics_answer.body.decode("utf-8", errors="replace"))
    elif metrics_answer.status >= 500 and not ready:
        unavailable = f"{metrics_answer.status} {_detail_of(metrics_answer.json())}"
    else:
        raise api.refusal("GET", "/metrics", metrics_answer, what=None)
    if as_json:
        _print_json({"url": str(api), "ready": ready, "readiness": readiness, **(queue or {})})
    else:
        _print_status(str(api), ready, readiness, queue, unavailable)
    if not ready:
        raise typer.Exit(1)


def _detail_of(payload: Any) -> str:
    if isinstance(payload, dict) and isinstance(payload.get("detail"), str):
        return one_line(payload["detail"])
    return ""


def _queue(text: str) -> dict[str, Any]:
    samples = parse_metrics(text)
    build = next(iter(samples.get(_BUILD[0], {})), ())
    return {
        "version": dict(build).get("version"),
        "deliveries": _counts(by_label(samples, "status", *_DELIVERIES)),
        "due": _count(metric(samples, *_DUE)),
        "in_flight": _count(metric(samples, *_IN_FLIGHT)),
        "oldest_due_age_seconds": metric(samples, *_OLDEST),
        "endpoints": _counts(by_label(samples, "state", *_ENDPOINTS)),
        "events": _count(metric(samples, *_EVENTS)),
    }


def _count(value: float | None) -> int | None:
    return None if value is None else round(value)


def _counts(values: Mapping[str, float] | None) -> dict[str, int] | None:
    return None if values is None else {k: round(v) for k, v in values.items()}


def _print_status(
    where: str,
    ready: bool,
    readiness: str,
    queue: Mapping[str, Any] | None,
    unavailable: str | None,
) -> None:
    version = f" (hookline {queue['version']})" if queue and queue.get("version") else ""
    lines: list[tuple[str, object]] = [
        ("hookline", f"{where}{version}"),
        ("ready", "yes" if ready else f"NO: {readiness}"),
    ]
    if queue is None:
        lines.append(("queue", f"unknown ({unavailable})"))
        typer.echo(_fields(lines))
        return
    deliveries = queue["deliveries"]
    oldest = queue["oldest_due_age_seconds"]
    lines += [
        ("deliveries", _listed(deliveries, DELIVERY_STATUSES)),
        ("due now", queue["due"]),
        ("in flight", queue["in_flight"]),
        ("oldest due", None if oldest is None else _age(oldest)),
        ("endpoints", _listed(queue["endpoints"], ("enabled", "disabled"))),
        ("events", queue["events"]),
    ]
    typer.echo(_fields(lines))


def _listed(values: Mapping[str, int] | None, order: Sequence[str]) -> str | None:
    if values is None:
        return None
    names = [n for n in order if n in values] + [n for n in values if n not in order]
    return ", ".join(f"{values[n]} {n}" for n in names)


def _age(seconds: float) -> str:
    if seconds <= 0:
        return "none due"
    if seconds < 60:
        return f"waiting {seconds:.1f} s"
    if seconds < 3600:
        return f"waiting {seconds / 60:.1f} min"
    return f"waiting {seconds / 3600:.1f} h"
