"""``fastjson``: orjson answers that are the same JSON values, with the same headers, as
``web.json_response``'s, including for what orjson refuses."""

from __future__ import annotations

import json

from aiohttp import web
from kvnode.http import fastjson


def test_same_value_and_content_type_as_json_response() -> None:
    body = {"key": "é/ü", "value": "x" * 10, "version": 7, "expires_at_ms": None, "n": [1.5]}
    ours = fastjson.json_response(body, status=201, headers={"X-Ringkv-Node": "n0"})
    theirs = web.json_response(body, status=201, headers={"X-Ringkv-Node": "n0"})
    assert ours.status == theirs.status == 201
    assert ours.headers["Content-Type"] == theirs.headers["Content-Type"]
    assert ours.headers["X-Ringkv-Node"] == "n0"
    assert isinstance(ours.body, bytes)
    assert isinstance(theirs.body, bytes)
    assert json.loads(ours.body) == json.loads(theirs.body) == body


def test_what_orjson_refuses_falls_back_to_json() -> None:
    big = {"version": 2**70, 3: "int key"}
    assert json.loads(fastjson.dumps(big)) == {"version": 2**70, "3": "int key"}
    assert json.loads(fastjson.dumps({1: "a"})) == {"1": "a"}
