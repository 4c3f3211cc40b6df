"""Bad input: always a 4xx JSON error naming the problem, and the service is never called."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import pytest
from kvnode.core.ops import Limits
from yarl import URL

from tests.unit.http.conftest import Client
from tests.unit.http.fake_service import FakeService

LIMITS = Limits()
BIG_VALUE = "x" * (LIMITS.max_value_bytes + 1)
BIG_KEY = "k" * (LIMITS.max_key_bytes + 1)


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    body: Any = None  # bytes are sent as is, anything else as JSON
    status: int = 400
    code: str = "invalid_argument"
    field: str | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    message_has: str | None = None


def put(body: Any, **kw: Any) -> Case:
    return Case(kw.pop("id"), "PUT", "/v1/kv/k", body, **kw)


def batch(body: Any, **kw: Any) -> Case:
    return Case(kw.pop("id"), "POST", "/v1/batch", body, **kw)


def bop(**fields: Any) -> dict[str, Any]:
    return {"ops": [{"op": "put", "key": "a", "value": "1"}, fields]}


CASES = [
    # ---- bodies: encoding and JSON
    put(b"{not json", id="invalid-json", field="body", message_has="not valid JSON"),
    put(b'{"value": "\xff\xfe"}', id="invalid-utf8-body", field="body", message_has="UTF-8"),
    put(b"", id="empty-body", field="body"),
    put(b"   ", id="blank-body", field="body"),
    put(b'{"value": NaN}', id="nan-constant", field="body"),
    put(b'{"value": "a", "ttl": Infinity}', id="infinity-constant", field="body"),
    put(b'{"value": "a", "value": "b"}', id="duplicate-field", field="body", message_has="twice"),
    put(b"[" * 100_000 + b"]" * 100_000, id="deep-nesting", field="body"),
    put(b'{"value": 1' + b"0" * 5000 + b"}", id="huge-int-literal", field="body"),
    put(b"\xef\xbb\xbf{}", id="utf8-bom", field="body"),
    put([], id="body-array", field="body", message_has="object"),
    put("v", id="body-string", field="body"),
    put(None, id="body-null", field="body"),
    # ---- PUT fields
    put({}, id="value-missing", field="value", message_has="required"),
    put({"value": 1}, id="value-int", field="value", message_has="string"),
    put({"value": None}, id="value-null", field="value"),
    put({"value": ["a"]}, id="value-list", field="value"),
    put({"value": "\ud800"}, id="value-lone-surrogate", field="value", message_has="surrogate"),
    put(
        {"value": "a", "extra": 1, "zzz": 2},
        id="unknown-fields",
        field="extra",
        message_has="extra, zzz",
    ),
    put({"value": "a", "ttl": "5"}, id="ttl-string", field="ttl"),
    put({"value": "a", "ttl": True}, id="ttl-bool", field="ttl"),
    put({"value": "a", "ttl": 0}, id="ttl-zero", field="ttl"),
    put({"value": "a", "ttl": -1.5}, id="ttl-negative", field="ttl"),
    put({"value": "a", "ttl": 1e300}, id="ttl-too-long", field="ttl"),
    put({"value": "a", "if_version": True}, id="if-version-bool", field="if_version"),
    put({"value": "a", "if_version": 1.5}, id="if-version-fraction", field="if_version"),
    put({"value": "a", "if_version": -1}, id="if-version-negative", field="if_version"),
    put({"value": "a", "if_version": 2**64}, id="if-version-huge", field="if_version"),
    put({"value": "a", "if_version": "3"}, id="if-version-string", field="if_version"),
    put({"value": "a", "if_value": 3}, id="if-value-int", field="if_value"),
    put({"value": BIG_VALUE}, id="value-too-large", status=413, code="too_large", field="value"),
    put(
        {"value": "a", "if_value": BIG_VALUE},
        id="if-value-too-large",
        status=413,
        code="too_large",
        field="value",
    ),
    # ---- keys in the path
    Case("key-empty", "GET", "/v1/kv/", field="key", message_has="empty"),
    Case("key-bad-percent", "GET", "/v1/kv/a%zzb", field="key", message_has="percent"),
    Case("key-truncated-percent", "GET", "/v1/kv/ab%4", field="key"),
    Case("key-invalid-utf8", "GET", "/v1/kv/%ff%fe", field="key", message_has="UTF-8"),
    Case("key-overlong-utf8", "GET", "/v1/kv/%c0%af", field="key"),
    Case("key-encoded-surrogate", "GET", "/v1/kv/%ed%a0%80", field="key"),
    Case("key-nul", "PUT", "/v1/kv/a%00b", {"value": "v"}, field="key", message_has="NUL"),
    Case("key-too-long", "GET", "/v1/kv/" + BIG_KEY, status=413, code="too_large", field="key"),
    Case("key-too-long-delete", "DELETE", "/v1/kv/" + BIG_KEY, status=413, code="too_large"),
    # ---- query strings
    Case("consistency-bad", "GET", "/v1/kv/k?consistency=linear", field="consistency"),
    Case(
        "query-unknown",
        "GET",
        "/v1/kv/k?consistancy=eventual",
        field="consistancy",
        message_has="unknown",
    ),
    Case(
        "query-twice",
        "GET",
        "/v1/kv/k?consistency=strong&consistency=eventual",
        field="consistency",
    ),
    Case("query-bad-utf8", "GET", "/v1/kv/k?consistency=%ff", field="query"),
    Case("query-bad-percent", "GET", "/v1/kv?prefix=%g1", field="query"),
    Case("put-query-param", "PUT", "/v1/kv/k?ttl=5", {"value": "v"}, field="ttl"),
    Case("delete-if-version-word", "DELETE", "/v1/kv/k?if_version=abc", field="if_version"),
    Case("delete-if-version-negative", "DELETE", "/v1/kv/k?if_version=-1", field="if_version"),
    Case(
        "delete-if-version-huge",
        "DELETE",
        "/v1/kv/k?if_version=99999999999999999999",
        field="if_version",
    ),
    Case(
        "delete-if-value-too-large",
        "DELETE",
        "/v1/kv/k?if_value=" + BIG_VALUE,
        status=413,
        code="too_large",
    ),
    Case("list-limit-zero", "GET", "/v1/kv?limit=0", field="limit"),
    Case("list-limit-over", "GET", f"/v1/kv?limit={LIMITS.max_list_limit + 1}", field="limit"),
    Case("list-limit-word", "GET", "/v1/kv?limit=ten", field="limit"),
    Case("list-keys-only-bad", "GET", "/v1/kv?keys_only=maybe", field="keys_only"),
    Case(
        "list-prefix-too-long",
        "GET",
        "/v1/kv?prefix=" + BIG_KEY,
        status=413,
        code="too_large",
        field="prefix",
    ),
    Case("list-consistency-bad", "GET", "/v1/kv?consistency=x", field="consistency"),
    # ---- headers
    *[
        Case(f"header-{name}-{value}", "GET", "/v1/kv/k", headers={name: value}, field=name)
        for name, values in {
            "X-Ringkv-Epoch": ["abc", "-1", "1.5", "99999999999999999999", "", "\u0663"],
            "X-Ringkv-Forward": ["yes", "2", "", "true"],
            "X-Ringkv-Hops": ["x", "-2", "65"],
            "X-Ringkv-Timeout": ["0", "-1", "61", "nan", "inf", "abc", "1e3", ""],
        }.items()
        for value in values
    ],
    # ---- batch
    batch({"ops": "nope"}, id="batch-ops-string", field="ops"),
    batch({}, id="batch-ops-missing", field="ops"),
    batch({"ops": []}, id="batch-empty", field="ops"),
    batch(
        {"ops": [{"op": "put", "key": "a", "value": "1"}], "atomic": "yes"},
        id="batch-atomic",
        field="atomic",
    ),
    batch({"ops": [], "extra": 1}, id="batch-unknown-field", field="extra"),
    batch(
        {"ops": [{"op": "put", "key": "a", "value": "1"}, 7]},
        id="batch-op-not-object",
        field="ops[1]",
    ),
    batch(bop(op="upsert", key="b"), id="batch-op-kind", field="ops[1].op"),
    batch(bop(key="b", value="1"), id="batch-op-missing-kind", field="ops[1].op"),
    batch(bop(op="put", value="1"), id="batch-op-missing-key", field="ops[1].key"),
    batch(bop(op="put", key=5, value="1"), id="batch-op-key-int", field="ops[1].key"),
    batch(bop(op="put", key="b"), id="batch-put-no-value", field="ops[1].value"),
    batch(bop(op="put", key="b", value=1), id="batch-put-value-int", field="ops[1].value"),
    batch(bop(op="put", key="b", value="1", ttl=-1), id="batch-ttl", field="ops[1].ttl"),
    batch(
        bop(op="put", key="b", value="1", if_version=False),
        id="batch-if-version",
        field="ops[1].if_version",
    ),
    batch(bop(op="delete", key="b", value="1"), id="batch-delete-value", field="ops[1].value"),
    batch(bop(op="put", key="b", value="1", zz=1), id="batch-unknown-op-field", field="ops[1].zz"),
    batch(bop(op="put", key="", value="1"), id="batch-key-empty", field="ops[1].key"),
    batch(bop(op="put", key="a\x00", value="1"), id="batch-key-nul", field="ops[1].key"),
    batch(
        bop(op="put", key="b", value=BIG_VALUE),
        id="batch-value-large",
        status=413,
        code="too_large",
        field="ops[1].value",
    ),
    batch(
        bop(op="put", key=BIG_KEY, value="1"),
        id="batch-key-large",
        status=413,
        code="too_large",
        field="ops[1].key",
    ),
    batch(bop(op="put", key="a", value="2"), id="batch-duplicate-key", field="ops"),
    batch(
        {"ops": [{"op": "delete", "key": f"k{i}"} for i in range(LIMITS.max_batch_ops + 1)]},
        id="batch-too-many",
        status=413,
        code="too_large",
        field="ops",
    ),
    batch(b"\x80", id="batch-invalid-utf8", field="body"),
    # ---- admin map
    Case("map-not-object", "PUT", "/v1/admin/map", [1], field="body"),
    Case("map-missing-epoch", "PUT", "/v1/admin/map", {"partitions": 1}, field="epoch"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_bad_input_is_4xx_json_and_never_reaches_the_service(
    client: Client, service: FakeService, case: Case
) -> None:
    data = case.body if isinstance(case.body, bytes) else json.dumps(case.body).encode()
    if case.body is None and case.method in ("GET", "DELETE"):
        data = b""
    resp = await client.request(
        case.method, URL(case.path, encoded=True), data=data, headers=case.headers
    )
    body = await resp.json()
    assert resp.status == case.status, body
    assert body["code"] == case.code
    assert isinstance(body["message"], str)
    assert body["message"]
    if case.field is not None:
        assert body.get("field") == case.field, body
    if case.message_has is not None:
        assert case.message_has in body["message"], body
    assert service.calls == []
    assert service.data == {}
