"""A small client of a running hookline's HTTP API, for the operator commands (operate.py).

Standard library only (urllib), so the commands add no dependency. Every answer the operator
can act on — no token, nothing listening at HOOKLINE_URL, a 401 or 403, a 404, a refused
body — becomes an OperatorError: one line on stderr and exit status 2 (see cli.main).
"""

import http.client
import json
import math
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from hookline import __version__
from hookline.operator_errors import OperatorError

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT = 30.0

_TOKEN_HINT = "pass it with --token or HOOKLINE_TOKEN (the admin's is in data/admin-token)"


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer of the API."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects are reported, not followed: a redirected request would carry the token
    elsewhere, and a redirected POST would turn into a GET."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects())


@dataclass
class Api:
    """The API of the hookline at `url`, called with `token`."""

    url: str
    token: str | None
    timeout: float = TIMEOUT
    _base: str = field(init=False)

    def __post_init__(self) -> None:
        self._base = _base_url(self.url)

    def get(
        self, path: str, *, params: Mapping[str, Any] | None = None, what: str | None = None
    ) -> Answer:
        return self.call("GET", path, params=params, what=what)

    def post(
        self,
        path: str,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        what: str | None = None,
        hints: Mapping[int, str] | None = None,
    ) -> Answer:
        return self.call("POST", path, body=body, headers=headers, what=what, hints=hints)

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        what: str | None = None,
        hints: Mapping[int, str] | None = None,
        auth: bool = True,
    ) -> Answer:
        """One request; a 2xx is returned, anything else raises an OperatorError. `what` names
        what the path is about ("endpoint wh_…"), for a 404; `hints` say what to do about
        a status the API explains (404, 409, 422, …)."""
        answer = self.send(method, path, params=params, body=body, headers=headers, auth=auth)
        if 200 <= answer.status < 300:
            return answer
        raise self.refusal(method, path, answer, what=what, hints=hints)

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
    ) -> Answer:
        """One request, whatever its answer; an OperatorError only when none came."""
        if auth:
            self.check_token()
        query = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        url = self._base + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        sent = {"Accept": "application/json", "User-Agent": f"hookline-cli/{__version__}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        if auth and self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        sent.update(headers or {})
        request = urllib.request.Request(url, data=data, headers=sent, method=method)
        failures = (urllib.error.URLError, OSError, ValueError, http.client.HTTPException)
        try:
            response = _opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:  # an answer all the same
            response = exc
        except failures as exc:
            raise self.unreachable(exc) from exc
        try:
            status = response.status if response.status is not None else response.getcode()
            return Answer(status, _headers(response.headers), response.read())
        except failures as exc:
            raise self.unreachable(exc) from exc
        finally:
            response.close()

    def check_token(self) -> None:
        if not self.token:
            raise OperatorError("no token given", _TOKEN_HINT)

    def unreachable(self, exc: BaseException) -> OperatorError:
        return OperatorError(
            f"hookline is not reachable at {self._base} ({_reason(exc)})",
            "start it, or set HOOKLINE_URL to where it listens",
        )

    def refusal(
        self,
        method: str,
        path: str,
        answer: Answer,
        *,
        what: str | None = None,
        hints: Mapping[int, str] | None = None,
    ) -> OperatorError:
        """The OperatorError for an answer that is not a success."""
        detail = _detail(answer)
        status = answer.status
        hint = (hints or {}).get(status)
        if status == 401:
            return OperatorError(
                f"hookline at {self._base} refused the token (401 {detail})",
                f"check the token; {_TOKEN_HINT}",
            )
        if status == 403:
            return OperatorError(
                f"the token may not {method} {path} (403 {detail})",
                "use the admin token, or a token of the user this belongs to",
            )
        if status == 404:
            if detail in ("Not Found", "(no body)"):  # no such route: not hookline, or older
                return OperatorError(
                    f"{method} {path} is not found at {self._base} (404)",
                    "check HOOKLINE_URL and the hookline version there",
                )
            if what is not None:
                return OperatorError(
                    f"no {what} at {self._base} (404 {detail})",
                    hint or "check the id (a user's token sees only that user's own)",
                )
            return OperatorError(f"{detail} (404 from {self._base})", hint or "check the names")
        if 300 <= status < 400:
            where = answer.headers.get("location", "?")
            return OperatorError(
                f"{self._base} answered {status} redirecting to {where}",
                "set HOOKLINE_URL to hookline's own address",
            )
        if status == 429:
            wait = answer.headers.get("retry-after")
            return OperatorError(
                f"hookline at {self._base} is rate-limiting this token (429 {detail})",
                f"try again in {wait} s" if wait else "try again later",
            )
        if status >= 500:
            return OperatorError(
                f"hookline at {self._base} failed to answer {method} {path} ({status} {detail})",
                "see its log (GET /ready tells whether its database answers)",
            )
        return OperatorError(
            f"{method} {path} was refused ({status} {detail})", hint or _remedy(status)
        )

    def __str__(self) -> str:
        return self._base


def _remedy(status: int) -> str:
    if status == 409:
        return "it conflicts with what is there already"
    if status == 413:
        return "send less"
    return "correct the request"


def _base_url(url: str) -> str:
    """HOOKLINE_URL without a trailing slash; an OperatorError if it is not an http(s) URL."""
    text = url.strip().rstrip("/")
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise OperatorError(
            f"HOOKLINE_URL {url!r} is not a URL ({exc})", f"set it to e.g. {DEFAULT_URL}"
        ) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OperatorError(
            f"HOOKLINE_URL {url!r} is not an http:// or https:// URL",
            f"set it to e.g. {DEFAULT_URL}",
        )
    return text


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _headers(message: Message) -> dict[str, str]:
    return {name.lower(): value for name, value in message.items()}


def _reason(exc: BaseException) -> str:
    """Why no answer came, in a few words."""
    inner: BaseException = exc
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        inner = exc.reason
    if isinstance(inner, ConnectionRefusedError):
        return "connection refused"
    if isinstance(inner, socket.gaierror):
        return "the host name does not resolve"
    if isinstance(inner, TimeoutError):
        return "timed out"
    if isinstance(inner, ConnectionResetError):
        return "the connection was reset"
    if isinstance(inner, OSError) and inner.strerror:
        return inner.strerror.lower()
    return str(inner) or type(inner).__name__


def _detail(answer: Answer) -> str:
    """The `detail` of an error answer in one line: a 422's list as `where: why; …`."""
    payload = answer.json()
    detail = payload.get("detail") if isinstance(payload, dict) else None
    if isinstance(detail, str):
        return one_line(detail)
    if isinstance(detail, list) and detail:
        return "; ".join(_validation_error(item) for item in detail)
    text = answer.body.decode("utf-8", errors="replace").strip()
    return one_line(text[:200]) if text else "(no body)"


def _validation_error(item: Any) -> str:
    if not isinstance(item, dict):
        return one_line(str(item))
    loc = [str(part) for part in item.get("loc", []) if part != "body"]
    where = ".".join(loc)
    message = one_line(str(item.get("msg", "invalid")))
    return f"{where}: {message}" if where else message


_UNPRINTABLE = re.compile(r"[^\S ]|[\x00-\x1f\x7f-\x9f]")


def one_line(text: str) -> str:
    """`text` on one line, without control characters (a receiver's answer or a user's
    description is shown in the operator's terminal: no escape sequences get through)."""
    return _UNPRINTABLE.sub(" ", text).strip()


# The Prometheus text format, as far as `hookline status` reads it.

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')

Labels = tuple[tuple[str, str], ...]


def parse_metrics(text: str) -> dict[str, dict[Labels, float]]:
    """The samples of a Prometheus text exposition: name → {sorted labels → value}.

    With prometheus_client's parser when it is installed (hookline's /metrics is written with
    it); else, or when that parser refuses the text, a lenient reading of the sample lines.
    """
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        return _parse_samples(text)
    samples: dict[str, dict[Labels, float]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = tuple(sorted(sample.labels.items()))
                samples.setdefault(sample.name, {})[labels] = float(sample.value)
    except ValueError:
        return _parse_samples(text)
    return samples


def _parse_samples(text: str) -> dict[str, dict[Labels, float]]:
    """The sample lines of the text format, comments and what does not parse skipped."""
    samples: dict[str, dict[Labels, float]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels_text, value_text = match.groups()
        try:
            value = float(value_text)
        except ValueError:
            continue
        labels = tuple(sorted((k, _unescape(v)) for k, v in _LABEL.findall(labels_text or "")))
        samples.setdefault(name, {})[labels] = value
    return samples


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)


def metric(samples: Mapping[str, Mapping[Labels, float]], *names: str) -> float | None:
    """The unlabelled value of the first of `names` present (old and new names of one metric)."""
    for name in names:
        values = samples.get(name)
        if values:
            if () in values:
                return values[()]
            return math.fsum(values.values())
    return None


def by_label(
    samples: Mapping[str, Mapping[Labels, float]], label: str, *names: str
) -> dict[str, float] | None:
    """{label value → value} of the first of `names` present."""
    for name in names:
        values = samples.get(name)
        if values:
            found: dict[str, float] = {}
            for labels, value in values.items():
                own = dict(labels).get(label)
                if own is not None:
                    found[own] = found.get(own, 0.0) + value
            return found
    return None
