"""Custom request headers an endpoint may set: what passes, and why the rest is refused."""

import pytest

from hookline.webhooks.headers import MAX_HEADERS, MAX_NAME, MAX_VALUE, check


def many(count: int) -> dict[str, str]:
    return {f"X-Custom-{n}": "v" for n in range(count)}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="none"),
        pytest.param({"Authorization": "Bearer abc.def"}, id="Authorization"),
        pytest.param({"X-Api-Key": "k3y"}, id="X-Api-Key"),
        pytest.param({"X-Tenant": "acme\tblue"}, id="tab in a value"),
        pytest.param({"X-Empty": ""}, id="empty value"),
        pytest.param({"x-lower": "v", "X-UPPER": "V"}, id="any case"),
        pytest.param({"!#$%&'*+-.^_`|~09azAZ": "v"}, id="every token character"),
        pytest.param({"X" * MAX_NAME: "v"}, id="longest name"),
        pytest.param({"X-Long": "v" * MAX_VALUE}, id="longest value"),
        pytest.param({"X-Printable": "".join(map(chr, range(0x20, 0x7F)))}, id="printable ASCII"),
        pytest.param(many(MAX_HEADERS), id="as many as allowed"),
        pytest.param({"X-Webhook-Tag": "v"}, id="webhook- inside a name"),
        pytest.param({"Hostname": "v"}, id="a reserved name as a prefix"),
    ],
)
def test_allowed_headers_are_returned_unchanged(headers: dict[str, str]) -> None:
    assert check(dict(headers)) == headers


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        pytest.param({"Content-Type": "text/plain"}, "reserved", id="Content-Type"),
        pytest.param({"content-length": "1"}, "reserved", id="content-length"),
        pytest.param({"HOST": "example.com"}, "reserved", id="HOST"),
        pytest.param({"User-Agent": "me"}, "reserved", id="User-Agent"),
        pytest.param({"Transfer-Encoding": "chunked"}, "reserved", id="Transfer-Encoding"),
        pytest.param({"Content-Encoding": "gzip"}, "reserved", id="Content-Encoding"),
        pytest.param({"Connection": "close"}, "reserved", id="Connection"),
        pytest.param({"Keep-Alive": "1"}, "reserved", id="Keep-Alive"),
        pytest.param({"TE": "trailers"}, "reserved", id="TE"),
        pytest.param({"Trailer": "x"}, "reserved", id="Trailer"),
        pytest.param({"Upgrade": "h2c"}, "reserved", id="Upgrade"),
        pytest.param({"Expect": "100-continue"}, "reserved", id="Expect"),
        pytest.param({"cOOkie": "a=b"}, "reserved", id="Cookie in mixed case"),
        pytest.param({"webhook-signature": "v1,x"}, "reserved", id="webhook-signature"),
        pytest.param({"Webhook-Id": "evt_1"}, "reserved", id="Webhook-Id"),
        pytest.param({"WEBHOOK-ANYTHING": "v"}, "reserved", id="webhook- prefix"),
        pytest.param({"Proxy-Authorization": "Basic x"}, "reserved", id="proxy- prefix"),
        pytest.param({"proxy-connection": "close"}, "reserved", id="proxy- prefix lowercase"),
        pytest.param({"X Api": "v"}, "not a valid header name", id="space in name"),
        pytest.param({"X:Api": "v"}, "not a valid header name", id="colon in name"),
        pytest.param({"X(Api)": "v"}, "not a valid header name", id="parentheses in name"),
        pytest.param({"X-Api\r\n": "v"}, "not a valid header name", id="CRLF in name"),
        pytest.param({"X-Ápi": "v"}, "not a valid header name", id="non-ASCII name"),
        pytest.param({"": "v"}, "not a valid header name", id="empty name"),
        pytest.param({"X" * (MAX_NAME + 1): "v"}, "longer than 64 characters", id="65-char name"),
        pytest.param(
            {"X-Long": "v" * (MAX_VALUE + 1)}, "longer than 1024 characters", id="1025-char value"
        ),
        pytest.param({"X-Split": "a\rb"}, "control characters", id="CR in value"),
        pytest.param({"X-Split": "a\nb"}, "control characters", id="LF in value"),
        pytest.param({"X-Split": "a\r\nX-Evil: 1"}, "control characters", id="header injection"),
        pytest.param({"X-Nul": "a\x00b"}, "control characters", id="NUL in value"),
        pytest.param({"X-Del": "a\x7fb"}, "control characters", id="DEL in value"),
        pytest.param({"X-Bell": "\x07"}, "control characters", id="BEL in value"),
        pytest.param({"X-Name": "Zoë"}, "must be ASCII", id="non-ASCII value"),
        pytest.param({"X-Name": "\x80"}, "must be ASCII", id="C1 control in value"),
        pytest.param({"X-Tenant": "a", "x-tenant": "b"}, "given twice", id="duplicate names"),
        pytest.param(many(MAX_HEADERS + 1), "at most 20 custom headers", id="21 headers"),
    ],
)
def test_refused_headers_say_why(headers: dict[str, str], reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as refused:
        check(headers)
    if len(headers) == 1:
        [name] = headers
        assert name[:MAX_NAME] in str(refused.value)
