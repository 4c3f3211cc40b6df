"""Property: no body, JSON or bytes, and no key path ever makes the API answer 500."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from tests.unit.http.conftest import Client
from tests.unit.http.fake_service import FakeService

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
op_fields = st.sampled_from(["op", "key", "value", "ttl", "if_version", "if_value", "x"])
plausible_ops = st.dictionaries(
    op_fields, json_values | st.sampled_from(["put", "delete"]), max_size=6
)
plausible_bodies = st.one_of(
    st.dictionaries(
        st.sampled_from(["value", "ttl", "if_version", "if_value", "ops", "atomic", "zz"]),
        json_values | st.lists(plausible_ops, max_size=4),
        max_size=5,
    ),
    json_values,
)
targets = st.sampled_from(
    [("PUT", "/v1/kv/k"), ("POST", "/v1/batch"), ("PUT", "/v1/admin/map"), ("GET", "/v1/kv/k")]
)


def _assert_json_4xx_or_ok(status: int, body: Any) -> None:
    assert status < 500, body
    if status >= 400:
        assert isinstance(body, dict), body
        assert isinstance(body.get("code"), str), body


@FUZZ
@given(target=targets, body=plausible_bodies)
async def test_random_json_never_500(
    client: Client, service: FakeService, target: tuple[str, str], body: Any
) -> None:
    method, path = target
    resp = await client.request(method, path, data=json.dumps(body))
    _assert_json_4xx_or_ok(resp.status, await resp.json())


@FUZZ
@given(target=targets, data=st.binary(max_size=200))
async def test_random_bytes_never_500(
    client: Client, service: FakeService, target: tuple[str, str], data: bytes
) -> None:
    method, path = target
    resp = await client.request(method, path, data=data)
    _assert_json_4xx_or_ok(resp.status, await resp.json())


path_chars = st.sampled_from([*list("ab/%.?&=+#:{}"), "%ff", "%2F", "%00", "%e2%82", "é"])


@FUZZ
@given(key=st.lists(path_chars, max_size=12).map("".join))
async def test_random_key_paths_never_500(client: Client, service: FakeService, key: str) -> None:
    raw = "/v1/kv/" + "".join(c if c.isascii() else "%C3%A9" for c in key).replace("#", "%23")
    for method in ("GET", "PUT", "DELETE"):
        resp = await client.request(method, URL(raw, encoded=True), json={"value": "v"})
        _assert_json_4xx_or_ok(resp.status, await resp.json())
