"""``NodeAdmin`` over the node admin HTTP API (``/v1/admin/...``, see kvnode/openapi.yaml)."""

from __future__ import annotations

from typing import Any

from kvnode.client import NodeHttp
from kvnode.core.model import NodeInfo, PartitionMap
from kvnode.rebalance.admin import ReplicaState, SeedResult

TIMEOUT_HEADER = "X-Ringkv-Timeout"  # seconds
MAX_NODE_TIMEOUT_S = 60.0


class HttpNodeAdmin:
    """Implements ``kvnode.rebalance.admin.NodeAdmin``; ``timeout_s`` bounds each call (a join
    gets ``seed_timeout_s``: it streams a whole partition)."""

    def __init__(
        self,
        http: NodeHttp | None = None,
        *,
        timeout_s: float = 15.0,
        seed_timeout_s: float = 1800.0,
    ) -> None:
        self._http = http or NodeHttp()
        self._owns_http = http is None
        self._timeout = timeout_s
        self._seed_timeout = seed_timeout_s

    async def close(self) -> None:
        if self._owns_http:
            await self._http.close()

    async def _call(
        self,
        node: NodeInfo,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        total = self._timeout if timeout is None else timeout
        # The node's own deadline is a little shorter than ours, so its answer wins the race.
        node_s = min(MAX_NODE_TIMEOUT_S, max(0.1, total - 0.5))
        _, data, _ = await self._http.call(
            node.http_url,
            method,
            path,
            params=params,
            json_body=body,
            headers={TIMEOUT_HEADER: f"{node_s:.3f}"},
            timeout=total,
        )
        return data

    async def install_map(self, node: NodeInfo, pmap: PartitionMap) -> None:
        await self._call(node, "PUT", "/v1/admin/map", body=pmap.to_dict())

    async def replica_state(self, node: NodeInfo, partition: int) -> ReplicaState:
        data = await self._call(node, "GET", f"/v1/admin/partitions/{partition}")
        return ReplicaState.from_dict(data)

    async def join(self, node: NodeInfo, partition: int, *, source: str) -> SeedResult:
        data = await self._call(
            node,
            "POST",
            f"/v1/admin/partitions/{partition}/join",
            body={"source": source},
            timeout=self._seed_timeout,
        )
        return SeedResult.from_dict(data)

    async def add_member(self, leader: NodeInfo, partition: int, member: str) -> None:
        path = f"/v1/admin/partitions/{partition}/members"
        await self._call(leader, "POST", path, body={"add": member})

    async def remove_member(self, leader: NodeInfo, partition: int, member: str) -> None:
        path = f"/v1/admin/partitions/{partition}/members"
        await self._call(leader, "POST", path, body={"remove": member})

    async def transfer_leader(self, leader: NodeInfo, partition: int, to: str) -> None:
        path = f"/v1/admin/partitions/{partition}/leader"
        await self._call(leader, "POST", path, body={"node_id": to})

    async def start_digest(self, leader: NodeInfo, partition: int) -> int:
        data = await self._call(leader, "POST", f"/v1/admin/partitions/{partition}/digest")
        return int(data["index"])

    async def digest(self, node: NodeInfo, partition: int, index: int) -> str | None:
        data = await self._call(
            node, "GET", f"/v1/admin/partitions/{partition}/digest", params={"index": str(index)}
        )
        value = data.get("digest")
        return None if value is None else str(value)

    async def set_drained(self, node: NodeInfo, drained: bool) -> dict[str, Any]:
        """Maintenance drain (``PUT /v1/admin/drain``): the node's drain report, ``complete``
        once it leads nothing (it waits up to this client's timeout for that)."""
        return await self._call(node, "PUT", "/v1/admin/drain", body={"drained": drained})

    async def drop(self, node: NodeInfo, partition: int) -> bool:
        data = await self._call(node, "DELETE", f"/v1/admin/partitions/{partition}")
        return bool(data["dropped"])
