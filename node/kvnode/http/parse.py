"""Request parsing and validation: raw HTTP input in, validated ``kvnode.core.ops`` values out.

Everything a client sends is checked here before the service sees it, and every refusal is an
``InvalidArgument`` / ``TooLarge`` naming the field, so bad input is always a 4xx, never a 500 and
never a partial apply. The parsers are pure functions over bytes, strings and mappings (no aiohttp
request objects), which keeps them easy to test exhaustively.

Strictness is deliberate: unknown fields and query parameters are refused (a typo such as
``consistancy=eventual`` must not silently give a strong read), ``true`` is not an integer, JSON's
``NaN``/``Infinity`` are refused, duplicate JSON fields are refused, and strings must be valid
Unicode (no lone surrogates, which could not be stored as UTF-8).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

from kvnode.core import errors
from kvnode.core.ops import Condition, Consistency, Delete, Limits, Put, RequestContext, Write

MAX_INT64 = 2**63 - 1
MAX_TIMEOUT_S = 60.0
DEFAULT_TIMEOUT_S = 5.0
MAX_HOPS = 64
DEFAULT_LIST_LIMIT = 100

_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DIGITS = re.compile(r"[0-9]{1,19}")
# A JSON-style non-negative number, exponent allowed: what any client serialises a number to.
_DECIMAL = re.compile(r"([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")

PUT_FIELDS = frozenset({"value", "ttl", "if_version", "if_value"})
BATCH_FIELDS = frozenset({"ops", "atomic"})
BATCH_PUT_FIELDS = frozenset({"op", "key"}) | PUT_FIELDS
BATCH_DELETE_FIELDS = frozenset({"op", "key", "if_version", "if_value"})


@dataclass(frozen=True, slots=True)
class ListQuery:
    """Validated parameters of ``GET /v1/kv``."""

    prefix: str
    cursor: str | None
    limit: int
    consistency: Consistency
    keys_only: bool


# ---------------------------------------------------------------- headers


def parse_context(headers: Mapping[str, str]) -> RequestContext:
    """``RequestContext`` from the ``X-Ringkv-*`` headers; any unusable value is a 400."""
    epoch = _header_int(headers, "X-Ringkv-Epoch")
    hops = _header_int(headers, "X-Ringkv-Hops")
    if hops is not None and hops > MAX_HOPS:
        raise _bad("X-Ringkv-Hops", f"must be at most {MAX_HOPS}")
    return RequestContext(
        epoch=epoch,
        forward=_header_forward(headers.get("X-Ringkv-Forward")),
        hops=hops or 0,
        timeout_s=_header_timeout(headers.get("X-Ringkv-Timeout")),
    )


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    raw = raw.strip()
    if not _DIGITS.fullmatch(raw) or int(raw) > MAX_INT64:
        raise _bad(name, f"must be a non-negative integer, got {raw[:40]!r}")
    return int(raw)


def _header_forward(raw: str | None) -> bool:
    if raw is None:
        return True
    if raw.strip() not in ("0", "1"):
        raise _bad("X-Ringkv-Forward", f"must be 0 or 1, got {raw[:40]!r}")
    return raw.strip() == "1"


def _header_timeout(raw: str | None) -> float:
    if raw is None:
        return DEFAULT_TIMEOUT_S
    raw = raw.strip()
    value = float(raw) if _DECIMAL.fullmatch(raw) else math.nan
    if not 0 < value <= MAX_TIMEOUT_S:
        raise _bad(
            "X-Ringkv-Timeout", f"must be seconds in (0, {MAX_TIMEOUT_S:g}], got {raw[:40]!r}"
        )
    return value


# ---------------------------------------------------------------- path and query


def key_from_raw_path(raw_path: str, prefix: str) -> str:
    """The key in ``raw_path`` after ``prefix``, percent-decoded as strict UTF-8.

    The raw path is used (not aiohttp's decoded one) because the framework leaves invalid
    percent-escapes and invalid UTF-8 in place instead of refusing them.
    """
    path = raw_path.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith(prefix):
        raise _bad("key", "path does not start with " + prefix)
    return percent_decode(path[len(prefix) :], field="key")


def percent_decode(raw: str, *, field: str, plus_is_space: bool = False) -> str:
    """Strict percent-decoding: malformed escapes and invalid UTF-8 are refused, not repaired."""
    if _BAD_PERCENT.search(raw):
        raise _bad(field, "has an invalid percent-escape")
    if plus_is_space:
        raw = raw.replace("+", " ")
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(field, "is not valid UTF-8 after percent-decoding") from None


def parse_query(raw_path: str, *, allowed: frozenset[str]) -> dict[str, str]:
    """Query parameters of ``raw_path``; unknown, repeated or undecodable ones are refused."""
    raw_query = raw_path.split("?", 1)[1] if "?" in raw_path else ""
    raw_query = raw_query.split("#", 1)[0]
    if _BAD_PERCENT.search(raw_query):
        raise _bad("query", "has an invalid percent-escape")
    try:
        pairs = parse_qsl(raw_query, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise _bad("query", "is not valid UTF-8 after percent-decoding") from None
    result: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed:
            raise _bad(name, f"unknown query parameter (allowed: {', '.join(sorted(allowed))})")
        if name in result:
            raise _bad(name, "query parameter given twice")
        result[name] = value
    return result


def parse_delete(key: str, query: Mapping[str, str], limits: Limits) -> Delete:
    """``DELETE /v1/kv/{key}?if_version=&if_value=`` as a validated ``Delete``."""
    raw_version = query.get("if_version")
    version = None
    if raw_version is not None:
        if not _DIGITS.fullmatch(raw_version) or int(raw_version) > MAX_INT64:
            raise _bad("if_version", f"must be an integer >= 0, got {raw_version[:40]!r}")
        version = int(raw_version)
    op = Delete(key=key, cond=Condition(if_version=version, if_value=query.get("if_value")))
    limits.check_write(op)
    return op


def parse_consistency(query: Mapping[str, str]) -> Consistency:
    """``strong`` (the default when the parameter is absent) or ``eventual``; an empty value is
    refused like any other value outside the enum, as the OpenAPI document says."""
    raw = query.get("consistency")
    if raw == "":
        raise _bad("consistency", "must be strong or eventual, got ''")
    return Consistency.parse(raw)


def parse_list(query: Mapping[str, str], limits: Limits) -> ListQuery:
    """``GET /v1/kv`` parameters: prefix, cursor, limit (1..max_list_limit), keys_only."""
    raw_limit = query.get("limit")
    limit = DEFAULT_LIST_LIMIT if raw_limit is None else -1
    if raw_limit is not None and _DIGITS.fullmatch(raw_limit):
        limit = int(raw_limit)
    if not 1 <= limit <= limits.max_list_limit:
        raise _bad("limit", f"must be an integer in 1..{limits.max_list_limit}")
    prefix = query.get("prefix", "")
    cursor = query.get("cursor") or None
    for name, text in (("prefix", prefix), ("cursor", cursor or "")):
        if len(text.encode("utf-8")) > limits.max_key_bytes:
            raise errors.TooLarge(f"{name} longer than a key may be", field=name)
    return ListQuery(
        prefix=prefix,
        cursor=cursor,
        limit=limit,
        consistency=parse_consistency(query),
        keys_only=_query_bool(query, "keys_only"),
    )


def parse_partition(query: Mapping[str, str]) -> int:
    """The required ``partition`` parameter of ``GET /v1/internal/scan``."""
    raw = query.get("partition")
    if raw is None:
        raise _bad("partition", "is required")
    if not _DIGITS.fullmatch(raw) or int(raw) > MAX_INT64:
        raise _bad("partition", f"must be an integer >= 0, got {raw[:40]!r}")
    return int(raw)


def _query_bool(query: Mapping[str, str], name: str) -> bool:
    raw = query.get(name)
    if raw is None or raw == "false":
        return False
    if raw == "true":
        return True
    raise _bad(name, f"must be true or false, got {raw[:40]!r}")


# ---------------------------------------------------------------- JSON bodies


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object: strict UTF-8, strict JSON, no duplicate fields."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad("body", f"is not valid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise _bad("body", "is empty; a JSON object is required")
    try:
        body = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_object)
    except json.JSONDecodeError as exc:
        msg = f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise _bad("body", msg) from None
    except (ValueError, RecursionError) as exc:
        raise _bad("body", f"is not acceptable JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise _bad("body", f"must be a JSON object, got {_type_name(body)}")
    return body


def json_int(value: Any) -> int | None:
    """``value`` as an int if JSON Schema calls it an integer (``3`` or ``3.0``; not ``true``,
    not ``3.5``), else None. Clients and generators may serialise integers either way."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for name, value in pairs:
        if name in obj:
            raise ValueError(f"field {name!r} appears twice")
        obj[name] = value
    return obj


def parse_put(key: str, body: Mapping[str, Any], limits: Limits, *, where: str = "") -> Put:
    """``PUT /v1/kv/{key}`` body (or one batch op) as a validated ``Put``."""
    value = _require_str(body, "value", where=where)
    op = Put(
        key=key,
        value=value,
        ttl_ms=_optional_ttl_ms(body, limits, where=where),
        cond=_condition(body, where=where),
    )
    limits.check_write(op)
    return op


def parse_put_body(key: str, body: Mapping[str, Any], limits: Limits) -> Put:
    _refuse_unknown(body, PUT_FIELDS)
    return parse_put(key, body, limits)


def parse_batch(body: Mapping[str, Any], limits: Limits) -> tuple[list[Write], bool]:
    """``POST /v1/batch`` body: every op validated (and the batch checked) before returning."""
    _refuse_unknown(body, BATCH_FIELDS)
    raw_ops = body.get("ops")
    if not isinstance(raw_ops, list):
        raise _bad("ops", f"must be a list of operations, got {_type_name(raw_ops)}")
    if len(raw_ops) > limits.max_batch_ops:
        raise errors.TooLarge(
            f"batch has {len(raw_ops)} operations, limit is {limits.max_batch_ops}",
            field="ops",
            limit=limits.max_batch_ops,
        )
    atomic = body.get("atomic", False)
    if not isinstance(atomic, bool):
        raise _bad("atomic", f"must be a boolean, got {_type_name(atomic)}")
    ops = [_batch_op(raw, limits, where=f"ops[{i}].") for i, raw in enumerate(raw_ops)]
    limits.check_batch(ops)
    return ops, atomic


def _batch_op(raw: Any, limits: Limits, *, where: str) -> Write:
    if not isinstance(raw, dict):
        raise _bad(where.rstrip("."), f"must be an object, got {_type_name(raw)}")
    kind = raw.get("op")
    if kind not in ("put", "delete"):
        raise _bad(where + "op", f"must be 'put' or 'delete', got {_short(kind)}")
    _refuse_unknown(raw, BATCH_PUT_FIELDS if kind == "put" else BATCH_DELETE_FIELDS, where=where)
    key = _require_str(raw, "key", where=where)
    try:
        if kind == "put":
            return parse_put(key, raw, limits, where=where)
        op = Delete(key=key, cond=_condition(raw, where=where))
        limits.check_write(op)
        return op
    except errors.KvError as exc:
        raise _prefixed(exc, where) from None


def _prefixed(exc: errors.KvError, where: str) -> errors.KvError:
    """The same error with its ``field`` qualified by the op's position (``ops[3].key``)."""
    field = exc.details.get("field")
    if not isinstance(field, str) or field.startswith(where):
        return exc
    details = dict(exc.details, field=where + field)
    return type(exc)(f"{where}{field}: {exc.message}", **details)


def _condition(body: Mapping[str, Any], *, where: str) -> Condition:
    raw = body.get("if_version")
    version = json_int(raw)
    if raw is not None and (version is None or not 0 <= version <= MAX_INT64):
        raise _bad(where + "if_version", f"must be an integer >= 0, got {_short(raw)}")
    if_value = body.get("if_value")
    if if_value is not None:
        if_value = _require_str(body, "if_value", where=where)
    return Condition(if_version=version, if_value=if_value)


def _optional_ttl_ms(body: Mapping[str, Any], limits: Limits, *, where: str) -> int | None:
    """``ttl`` in seconds (int or float, > 0) as whole milliseconds, rounded up so a tiny
    positive ttl never becomes 0 (which would mean "no expiry" to nobody's benefit)."""
    ttl = body.get("ttl")
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise _bad(where + "ttl", f"must be a number of seconds, got {_short(ttl)}")
    max_s = limits.max_ttl_ms / 1000
    if not (math.isfinite(ttl) and 0 < ttl <= max_s):
        raise _bad(where + "ttl", f"must be > 0 and at most {max_s:g} seconds, got {_short(ttl)}")
    return min(max(1, math.ceil(ttl * 1000)), limits.max_ttl_ms)


def _require_str(body: Mapping[str, Any], name: str, *, where: str = "") -> str:
    value = body.get(name)
    if name not in body:
        raise _bad(where + name, "is required")
    if not isinstance(value, str):
        raise _bad(where + name, f"must be a string, got {_type_name(value)}")
    check_unicode(value, field=where + name)
    return value


def check_unicode(text: str, *, field: str) -> None:
    """Refuse strings that cannot be encoded as UTF-8 (lone surrogates from JSON escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(field, "contains an unpaired surrogate (not valid Unicode)") from None


def _refuse_unknown(body: Mapping[str, Any], allowed: frozenset[str], *, where: str = "") -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        names = ", ".join(where + name for name in unknown)
        raise errors.InvalidArgument(
            f"unknown field(s): {names} (allowed: {', '.join(sorted(allowed))})",
            field=where + unknown[0],
            unknown=[where + name for name in unknown],
        )


def _bad(field: str, problem: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(f"{field} {problem}", field=field)


def _type_name(value: Any) -> str:
    return {
        type(None): "null",
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    return f"{_type_name(value)} {json.dumps(value)[:40]}" if value is not None else "null"
