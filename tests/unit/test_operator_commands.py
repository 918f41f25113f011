"""The pure parts of the operator commands: pages followed up to --limit, /metrics read under
its old and new names, tables, and the one line an error answer becomes."""

import json
import sys
from typing import Any

import pytest

from hookline import operate
from hookline.apiclient import Answer, Api, parse_metrics
from hookline.operator_errors import OperatorError


class _PagedApi(Api):
    """An Api whose GET answers from a list of pages, recording the limits asked for."""

    def __init__(self, items: list[int], page_size: int) -> None:
        super().__init__("http://127.0.0.1:1", "hl_admin_x")
        self.items = items
        self.page_size = page_size
        self.asked: list[tuple[int, str | None]] = []

    def get(self, path: str, *, params: Any = None, what: str | None = None) -> Answer:
        limit, cursor = params["limit"], params["cursor"]
        self.asked.append((limit, cursor))
        start = 0 if cursor is None else int(cursor)
        end = start + min(limit, self.page_size)
        page = {
            "data": self.items[start:end],
            "next_cursor": str(end) if end < len(self.items) else None,
        }
        return Answer(200, {}, json.dumps(page).encode())


def test_pages_are_followed_up_to_the_limit() -> None:
    api = _PagedApi(list(range(10)), page_size=3)
    listing = operate._pages(api, "/endpoints", {}, 7)
    assert listing == {"data": list(range(7)), "next_cursor": "7"}
    assert api.asked == [(7, None), (4, "3"), (1, "6")]  # never more than --limit

    everything = operate._pages(_PagedApi(list(range(10)), page_size=3), "/x", {}, 100)
    assert everything == {"data": list(range(10)), "next_cursor": None}


def test_a_page_is_at_most_what_the_api_allows() -> None:
    api = _PagedApi(list(range(600)), page_size=250)
    listing = operate._pages(api, "/endpoints", {}, 600)
    assert len(listing["data"]) == 600
    assert [limit for limit, _ in api.asked] == [250, 250, 100]


OLD = """\
# HELP hookline_deliveries Deliveries by status.
# TYPE hookline_deliveries gauge
hookline_deliveries{status="pending"} 3
hookline_deliveries{status="succeeded"} 10
hookline_deliveries{status="failed"} 1
hookline_deliveries{status="cancelled"} 0
hookline_deliveries_due 2
hookline_deliveries_in_flight 1
hookline_oldest_due_seconds 12.5
hookline_endpoints{state="enabled"} 4
hookline_endpoints{state="disabled"} 1
hookline_events 14
hookline_build_info{version="0.1.0"} 1
"""

# As prometheus_client writes them: floats, the new name of the oldest due age, a counter.
NEW = """\
# HELP hookline_deliveries Deliveries by status.
# TYPE hookline_deliveries gauge
hookline_deliveries{status="pending"} 3.0
hookline_deliveries{status="succeeded"} 10.0
hookline_deliveries{status="failed"} 1.0
hookline_deliveries{status="cancelled"} 0.0
hookline_deliveries_due 2.0
hookline_deliveries_in_flight 1.0
hookline_oldest_due_age_seconds 12.5
hookline_endpoints{state="enabled"} 4.0
hookline_endpoints{state="disabled"} 1.0
# TYPE hookline_events_total counter
hookline_events_total 14.0
hookline_events_created 1.7e+09
hookline_build_info{version="0.1.0"} 1.0
"""


@pytest.fixture(params=["prometheus_client's parser", "without it"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """/metrics read with prometheus_client's parser, and as where it is not installed."""
    if request.param == "without it":
        monkeypatch.setitem(sys.modules, "prometheus_client.parser", None)


@pytest.mark.usefixtures("parser")
@pytest.mark.parametrize("text", [OLD, NEW], ids=["hand-written", "prometheus_client"])
def test_status_reads_the_old_and_the_new_metric_names(text: str) -> None:
    assert operate._queue(text) == {
        "version": "0.1.0",
        "deliveries": {"pending": 3, "succeeded": 10, "failed": 1, "cancelled": 0},
        "due": 2,
        "in_flight": 1,
        "oldest_due_age_seconds": 12.5,
        "endpoints": {"enabled": 4, "disabled": 1},
        "events": 14,
    }


@pytest.mark.usefixtures("parser")
def test_metrics_labels_are_unescaped() -> None:
    samples = parse_metrics('m{a="x\\"y",b="1\\\\2"} 5 1700000000000\n')
    assert samples == {"m": {(("a", 'x"y'), ("b", "1\\2")): 5.0}}


def test_a_table_pads_every_column_but_the_last_and_keeps_one_line_per_row() -> None:
    printed = operate.table(
        ("ID", "NAME", "URL"), [("a", None, "http://x"), ("bbb", "n\x1b[2Jm", "")]
    )
    assert printed.splitlines() == [
        "ID   NAME    URL",
        "a    -       http://x",
        "bbb  n [2Jm  -",  # no escape sequence reaches the terminal
    ]


def test_a_422_is_one_line_naming_each_failing_path() -> None:
    body = {
        "detail": [
            {"loc": ["body", "data", "order_id"], "msg": "1 is not of type 'string'"},
            {"loc": ["body", "user"], "msg": "too\nlong"},
        ]
    }
    answer = Answer(422, {}, json.dumps(body).encode())
    error = Api("http://127.0.0.1:8000", "t").refusal("POST", "/events", answer)
    assert isinstance(error, OperatorError)
    assert "\n" not in str(error)
    assert "data.order_id: 1 is not of type 'string'; user: too long" in str(error)
