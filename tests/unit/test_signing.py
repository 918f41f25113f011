import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from hookline.delivery import envelope, signing

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_sign_matches_standard_webhooks_test_vector() -> None:
    assert signing.sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE


def test_sign_accepts_secret_without_prefix() -> None:
    bare = VECTOR_SECRET.removeprefix(signing.SECRET_PREFIX)
    assert signing.sign(bare, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE


def test_verify_accepts_test_vector() -> None:
    assert signing.verify(
        VECTOR_SECRET,
        VECTOR_ID,
        str(VECTOR_TIMESTAMP),
        VECTOR_SIGNATURE,
        VECTOR_BODY,
        now=VECTOR_TIMESTAMP + 10,
    )


def test_generated_secrets_are_prefixed_24_random_bytes() -> None:
    first, second = signing.generate_secret(), signing.generate_secret()
    assert first.startswith("whsec_")
    assert len(signing.secret_key(first)) == 24
    assert first != second


def _headers(msg_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def test_standardwebhooks_package_verifies_our_signature() -> None:
    secret = signing.generate_secret()
    timestamp = int(time.time())
    body = b'{"id": "evt_1", "event": "user_registered", "data": {"username": "alice"}}'
    header = signing.signature_header([secret], "evt_1", timestamp, body)

    payload = Webhook(secret).verify(body, _headers("evt_1", timestamp, header))

    assert payload["event"] == "user_registered"


def test_rotation_header_is_verified_by_each_secret_separately() -> None:
    old, new = signing.generate_secret(), signing.generate_secret()
    timestamp = int(time.time())
    body = b'{"event": "ping"}'
    header = signing.signature_header([new, old], "evt_2", timestamp, body)

    assert len(header.split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, _headers("evt_2", timestamp, header))
        assert signing.verify(secret, "evt_2", str(timestamp), header, body)


NOW = 1_700_000_000
GOOD_SECRET = VECTOR_SECRET
OTHER_SECRET = "whsec_" + "A" * 32
BODY = b'{"event": "user_registered"}'
GOOD_SIGNATURE = signing.sign(GOOD_SECRET, "evt_3", NOW, BODY)


@pytest.mark.parametrize(
    ("secret", "timestamp", "header", "body"),
    [
        pytest.param(OTHER_SECRET, str(NOW), GOOD_SIGNATURE, BODY, id="wrong secret"),
        pytest.param(GOOD_SECRET, str(NOW), GOOD_SIGNATURE, BODY + b" ", id="tampered body"),
        pytest.param(GOOD_SECRET, str(NOW - 301), GOOD_SIGNATURE, BODY, id="old timestamp"),
        pytest.param(GOOD_SECRET, str(NOW + 301), GOOD_SIGNATURE, BODY, id="future timestamp"),
        pytest.param(GOOD_SECRET, "yesterday", GOOD_SIGNATURE, BODY, id="timestamp not a number"),
        pytest.param(GOOD_SECRET, f"+{NOW}", GOOD_SIGNATURE, BODY, id="timestamp respelled"),
        pytest.param(GOOD_SECRET, str(NOW), "!!garbage!!", BODY, id="garbage header"),
        pytest.param(GOOD_SECRET, str(NOW), "v1,%%%%", BODY, id="signature not base64"),
        pytest.param(GOOD_SECRET, str(NOW), "v1,ñ", BODY, id="signature not ascii"),
        pytest.param(GOOD_SECRET, str(NOW), "", BODY, id="empty header"),
        pytest.param(
            GOOD_SECRET, str(NOW), GOOD_SIGNATURE.removeprefix("v1,"), BODY, id="missing v1 prefix"
        ),
        pytest.param(
            GOOD_SECRET, str(NOW), GOOD_SIGNATURE.replace("v1,", "v2,"), BODY, id="other version"
        ),
        pytest.param("whsec_!!!", str(NOW), GOOD_SIGNATURE, BODY, id="malformed secret"),
        pytest.param("whsec_", str(NOW), GOOD_SIGNATURE, BODY, id="empty secret"),
    ],
)
def test_verify_rejects(secret: str, timestamp: str, header: str, body: bytes) -> None:
    assert not signing.verify(secret, "evt_3", timestamp, header, body, now=NOW)


def test_verify_accepts_a_match_among_unknown_and_wrong_signatures() -> None:
    header = f"v2,abc v1,{'A' * 44} garbage {GOOD_SIGNATURE}"
    assert signing.verify(GOOD_SECRET, "evt_3", str(NOW), header, BODY, now=NOW)


def test_verify_accepts_timestamp_at_the_edge_of_tolerance() -> None:
    signature = signing.sign(GOOD_SECRET, "evt_3", NOW - 300, BODY)
    assert signing.verify(GOOD_SECRET, "evt_3", str(NOW - 300), signature, BODY, now=NOW)


@pytest.mark.parametrize("secret", ["whsec_!!!", "whsec_", "whsec_A", "whsec_ñ"])
def test_secret_key_rejects_malformed_secrets(secret: str) -> None:
    with pytest.raises(ValueError):
        signing.secret_key(secret)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 12, 3, 14, 4, 1, 236000, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2030, 6, 7, 8, 9, 10, tzinfo=UTC),
    ],
)
def test_the_envelopes_timestamp_is_rfc3339_with_microseconds(moment: datetime) -> None:
    assert envelope.timestamp(moment) == moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
