"""Forwarding a request to another node over the public HTTP API (pooled keep-alive).

A forwarded request carries ``X-Ringkv-Hops`` so a request can bounce at most ``MAX_HOPS``
times (a node that is not the leader forwards once more to the leader it knows), and the time
left of the caller's deadline. It never carries the caller's epoch: nodes may briefly disagree on
the epoch while a new map is being installed, and that must not fail a forwarded request.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

from kvnode.client import NodeHttp
from kvnode.core import errors
from kvnode.core.model import NodeInfo, Record
from kvnode.core.ops import Consistency, Put, RequestContext, Write, WriteResult

MAX_HOPS = 2


def _headers(ctx: RequestContext, deadline: float) -> dict[str, str]:
    remaining = deadline - time.monotonic()
    if remaining <= 0.05:
        raise errors.Unavailable("deadline exceeded before forwarding", retry_after=1)
    return {
        "X-Ringkv-Hops": str(ctx.hops + 1),
        "X-Ringkv-Timeout": f"{min(remaining, 60.0):.3f}",
        "X-Ringkv-Forward": "1",
    }


def _key_path(key: str) -> str:
    return "/v1/kv/" + urllib.parse.quote(key, safe="")


def op_to_json(op: Write) -> dict[str, Any]:
    body: dict[str, Any] = {"op": "put" if isinstance(op, Put) else "delete", "key": op.key}
    if isinstance(op, Put):
        body["value"] = op.value
        if op.ttl_ms is not None:
            body["ttl"] = op.ttl_ms / 1000.0
    if op.cond.if_version is not None:
        body["if_version"] = op.cond.if_version
    if op.cond.if_value is not None:
        body["if_value"] = op.cond.if_value
    return body


def record_from_json(body: dict[str, Any]) -> Record:
    exp = body.get("expires_at_ms")
    return Record(
        value=str(body["value"]),
        version=int(body["version"]),
        expires_at_ms=None if exp is None else int(exp),
    )


class Forwarder:
    """Sends one operation to another node and decodes its answer into domain values."""

    def __init__(self, http: NodeHttp) -> None:
        self._http = http

    async def get(
        self,
        node: NodeInfo,
        key: str,
        consistency: Consistency,
        ctx: RequestContext,
        deadline: float,
    ) -> Record:
        _, body, _ = await self._http.call(
            node.http_url,
            "GET",
            _key_path(key),
            params={"consistency": consistency.value},
            headers=_headers(ctx, deadline),
            timeout=max(0.1, deadline - time.monotonic()),
        )
        return record_from_json(body)

    async def batch(
        self, node: NodeInfo, ops: Sequence[Write], ctx: RequestContext, deadline: float
    ) -> list[WriteResult]:
        """Forward one partition's share of a batch (atomic on the receiving leader)."""
        try:
            _, body, _ = await self._http.call(
                node.http_url,
                "POST",
                "/v1/batch",
                json_body={"ops": [op_to_json(op) for op in ops], "atomic": True},
                headers=_headers(ctx, deadline),
                timeout=max(0.1, deadline - time.monotonic()),
            )
        except errors.KvError as exc:
            # The share failed as a whole; the batch envelope belongs to the caller's response.
            exc.details.pop("applied", None)
            exc.details.pop("results", None)
            raise
        return [
            WriteResult(key=str(r["key"]), version=int(r["version"]), existed=bool(r["existed"]))
            for r in body["results"]
        ]

    async def scan(
        self,
        node: NodeInfo,
        *,
        partition: int,
        prefix: str,
        cursor: str | None,
        limit: int,
        consistency: Consistency,
        ctx: RequestContext,
        deadline: float,
    ) -> tuple[list[tuple[str, Record]], bool]:
        params = {
            "partition": str(partition),
            "prefix": prefix,
            "limit": str(limit),
            "consistency": consistency.value,
        }
        if cursor is not None:
            params["cursor"] = cursor
        _, body, _ = await self._http.call(
            node.http_url,
            "GET",
            "/v1/internal/scan",
            params=params,
            headers=_headers(ctx, deadline),
            timeout=max(0.1, deadline - time.monotonic()),
        )
        items = [(str(i["key"]), record_from_json(i)) for i in body["items"]]
        return items, bool(body["more"])

    async def partitions(self, node: NodeInfo, *, timeout: float) -> list[dict[str, Any]]:
        _, body, _ = await self._http.call(
            node.http_url, "GET", "/v1/admin/partitions", timeout=timeout
        )
        return list(body["partitions"])
