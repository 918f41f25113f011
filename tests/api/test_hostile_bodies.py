"""Bodies built to cost the server: the work and the answer stay small whatever they hold."""

import pytest
from sqlalchemy import func, select

from hookline.api.app import MAX_REPORTED_ERRORS
from hookline.api.limits import MAX_OBJECT_KEYS
from hookline.models import User


def unknown_keys(count: int) -> str:
    return "{" + ",".join(f'"k{i:06d}":1' for i in range(count)) + "}"


async def users_stored(api) -> int:
    async with api.app.state.test_db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(User)) or 0)


async def test_a_mebibyte_of_unknown_fields_is_refused_in_one_short_line(api) -> None:
    body = unknown_keys(86_000)
    assert 1_000_000 < len(body) <= 1_048_576

    response = await api.client.post(
        "/users", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json() == {
        "detail": f"A JSON object in the body has more than {MAX_OBJECT_KEYS} fields"
    }
    assert await users_stored(api) == 0


@pytest.mark.parametrize("path", ["/users", "/users/messages", "/webhook"])
async def test_many_wrong_fields_are_reported_by_the_first_few(api, path) -> None:
    response = await api.client.post(
        path, content=unknown_keys(MAX_OBJECT_KEYS), headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    errors = response.json()["detail"]
    assert len(errors) == MAX_REPORTED_ERRORS + 1
    assert errors[-1]["type"] == "too_many_errors"
    # The whole body is never echoed back in an error.
    assert len(response.content) < 8_192
    assert await users_stored(api) == 0


async def test_a_few_wrong_fields_are_each_reported_with_their_input(api) -> None:
    response = await api.client.post("/users", json={"username": "ok", "extra": "x"})

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "extra"] and error["input"] == "x"


async def test_a_large_object_under_the_limit_passes_as_data(api) -> None:
    data = {f"field{i}": i for i in range(MAX_OBJECT_KEYS)}

    response = await api.client.post("/ping", json=data)

    assert response.status_code == 200, response.text
