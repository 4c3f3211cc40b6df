"""JSON responses rendered with orjson (the request path's largest pure-Python cost after the
framework itself: ``json.dumps`` of every answer).

Same bodies as ``web.json_response``: the same JSON value and the same
``Content-Type: application/json; charset=utf-8``. orjson writes non-ASCII characters as
UTF-8 instead of ``\\uXXXX`` escapes (the same JSON value); anything orjson refuses (an integer
beyond 64 bits) falls back to ``json.dumps``, so no answer changes from success to failure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: e.g. an int beyond 64 bits
        return json.dumps(obj).encode()


def json_response(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=dumps(data),
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )
