"""Parsing of admin API input (``/v1/admin/...``): partition numbers, node-id fields, member
changes and partition maps. Same rules as ``parse`` (every refusal an ``InvalidArgument`` naming
the field, never Python's own messages), split off to keep each module small."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kvnode.core import errors
from kvnode.core.model import PartitionMap
from kvnode.http.parse import (
    _DIGITS,
    MAX_INT64,
    _bad,
    _refuse_unknown,
    _require_str,
    _short,
    _type_name,
    json_int,
)


def partition_from_path(raw: str) -> int:
    """The ``{p}`` of ``/v1/admin/partitions/{p}``."""
    if not _DIGITS.fullmatch(raw) or int(raw) > MAX_INT64:
        raise _bad("partition", f"must be an integer >= 0, got {raw[:40]!r}")
    return int(raw)


def required_index(query: Mapping[str, str], name: str) -> int:
    raw = query.get(name)
    if raw is None:
        raise _bad(name, "is required")
    if not _DIGITS.fullmatch(raw) or int(raw) > MAX_INT64:
        raise _bad(name, f"must be an integer >= 0, got {raw[:40]!r}")
    return int(raw)


def admin_node_field(body: Mapping[str, Any], name: str, *, allowed: frozenset[str]) -> str:
    """A required non-empty node id field of an admin request body."""
    _refuse_unknown(body, allowed)
    value = _require_str(body, name)
    if not value:
        raise _bad(name, "must not be empty")
    return value


def parse_member_change(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``{"add": node_id}`` or ``{"remove": node_id}``: exactly one of them."""
    _refuse_unknown(body, frozenset({"add", "remove"}))
    if ("add" in body) == ("remove" in body):
        raise errors.InvalidArgument(
            'the body must have exactly one of the fields "add" and "remove"', field="body"
        )
    name = "add" if "add" in body else "remove"
    value = _require_str(body, name)
    if not value:
        raise _bad(name, "must not be empty")
    return (value, None) if name == "add" else (None, value)


def parse_drain(body: Mapping[str, Any]) -> bool:
    """``{"drained": true|false}``."""
    _refuse_unknown(body, frozenset({"drained"}))
    if "drained" not in body:
        raise _bad("drained", "is required")
    value = body["drained"]
    if not isinstance(value, bool):
        raise _bad("drained", f"must be true or false, got {_type_name(value)}")
    return value


MAP_FIELDS = frozenset({"epoch", "partitions", "replication", "nodes", "replicas"})
NODE_FIELDS = frozenset({"node_id", "host", "http_port", "raft_port_base", "zone"})
MAX_PORT = 65535


def _check_node(raw: Any, *, where: str) -> dict[str, Any]:
    """One ``nodes[i]`` of a map: every field typed and named on refusal (never Python's own
    ``int() argument must be ...`` message)."""
    if not isinstance(raw, dict):
        raise _bad(where, f"must be an object, got {_type_name(raw)}")
    node: dict[str, Any] = dict(raw)
    _refuse_unknown(node, NODE_FIELDS, where=where + ".")
    for name in ("node_id", "host"):
        if not _require_str(node, name, where=where + "."):
            raise _bad(f"{where}.{name}", "must not be empty")
    for name in ("http_port", "raft_port_base"):
        if name not in node:
            raise _bad(f"{where}.{name}", "is required")
        port = json_int(node[name])
        if port is None or not 1 <= port <= MAX_PORT:
            raise _bad(
                f"{where}.{name}", f"must be a port number 1..{MAX_PORT}, got {_short(node[name])}"
            )
        node[name] = port
    if node.get("zone") is not None:
        _require_str(node, "zone", where=where + ".")
    return node


def parse_map(body: Mapping[str, Any]) -> PartitionMap:
    """``PUT /v1/admin/map`` body as a validated ``PartitionMap``; the problem is named on 400."""
    body = dict(body)
    _refuse_unknown(body, MAP_FIELDS)
    for name in sorted(MAP_FIELDS):
        if name not in body:
            raise _bad(name, "is required in a partition map")
    for name in ("epoch", "partitions", "replication"):
        value = json_int(body[name])
        if value is None or not 0 <= value <= MAX_INT64:
            raise _bad(name, f"must be an integer >= 0, got {_short(body[name])}")
        body[name] = value
    for name in ("nodes", "replicas"):
        if not isinstance(body[name], list):
            raise _bad(name, f"must be an array, got {_type_name(body[name])}")
    body["nodes"] = [_check_node(node, where=f"nodes[{i}]") for i, node in enumerate(body["nodes"])]
    for i, members in enumerate(body["replicas"]):
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise _bad(f"replicas[{i}]", "must be an array of node ids")
    try:
        return PartitionMap.from_dict(body)
    except KeyError as exc:
        raise _bad("map", f"is missing field {exc.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise _bad("map", f"is invalid: {exc}") from None


MAX_PEERS = 15


def parse_peers(query: Mapping[str, str]) -> list[str]:
    """``peers``: the comma-separated Raft addresses (``host:port``) of a restored group."""
    raw = query.get("peers")
    if raw is None:
        raise _bad("peers", "is required")
    peers = raw.split(",")
    if len(peers) > MAX_PEERS:
        raise _bad("peers", f"at most {MAX_PEERS} addresses, got {len(peers)}")
    for peer in peers:
        host, _, port = peer.rpartition(":")
        if not host or not _DIGITS.fullmatch(port) or not 0 < int(port) < 65536:
            raise _bad("peers", f"each must be host:port, got {_short(peer)}")
    if len(set(peers)) != len(peers):
        raise _bad("peers", "lists an address twice")
    return peers
