"""``HttpNodeApi``: the operator's only way to talk to storage nodes (their HTTP admin API).

It builds on ``kvnode.client.NodeHttp`` (pooled transport, typed errors) and
``kvnode.rebalance.http_admin.HttpNodeAdmin``; it never imports the node's Raft, storage or
service code. Implements ``kvoperator.reconcile.ports.NodeApi``.
"""

from __future__ import annotations

import logging
import ssl
import urllib.parse
from typing import TypeVar

from kvnode.client import NodeHttp
from kvnode.core import errors
from kvnode.core import tls as core_tls
from kvnode.core.model import NodeInfo, PartitionMap
from kvnode.rebalance.admin import NodeAdmin
from kvnode.rebalance.http_admin import HttpNodeAdmin

from kvoperator.model.observed import MapReport

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class HttpNodeApi:
    """One transport for every KVCluster; the bearer token of a call is chosen by the node's
    host (``use_credential``), since each secured cluster has its own cluster credential, and
    so is the TLS context (``use_tls``): each TLS cluster has its own CA."""

    def __init__(self, *, timeout_s: float = 3.0, admin_timeout_s: float = 15.0) -> None:
        self._credentials: dict[str, str] = {}
        # domain -> (the CA bundle it was built from, the verifying context)
        self._tls: dict[str, tuple[bytes, ssl.SSLContext]] = {}
        self._http = NodeHttp(token=self.token_for, tls=self.tls_for)
        self._admin = HttpNodeAdmin(self._http, timeout_s=admin_timeout_s)
        self._timeout = timeout_s

    @property
    def admin(self) -> NodeAdmin:
        return self._admin

    async def read_map(self, node: NodeInfo) -> MapReport:
        """``GET /v1/cluster``. A node that answers "no map yet" (503) is reachable."""
        try:
            _, info, _ = await self._http.call(
                node.http_url, "GET", "/v1/cluster", timeout=self._timeout
            )
        except errors.Unavailable as e:
            if e.details.get("reason") == "connect" or "no partition map" not in e.message:
                return MapReport(reachable=False)
            return MapReport(reachable=True)
        except (errors.KvError, OSError) as e:
            log.debug("node %s did not answer: %s", node.node_id, e)
            return MapReport(reachable=False)
        try:
            pmap = PartitionMap.from_dict(info["map"])
            leaders = _leaders(info, pmap.partitions)
            return MapReport(True, pmap, leaders, _drained(info, node.node_id))
        except (KeyError, TypeError, ValueError) as e:
            log.warning("node %s returned an unreadable map: %s", node.node_id, e)
            return MapReport(reachable=False)

    async def needs_reseed(self, node: NodeInfo) -> tuple[int, ...] | None:
        """The partitions ``/readyz`` says this node's volume lost (it answers 503 then);
        None when it did not answer or said nothing about it."""
        try:
            _, body, _ = await self._http.call(
                node.http_url, "GET", "/readyz", timeout=self._timeout
            )
        except errors.Unavailable as e:
            body = e.details
        except (errors.KvError, OSError) as e:
            log.debug("node %s did not answer /readyz: %s", node.node_id, e)
            return None
        raw = body.get("needs_reseed")
        if not isinstance(raw, list) or not all(isinstance(p, int) for p in raw):
            return None
        return tuple(sorted(raw))

    async def hosted(self, node: NodeInfo) -> tuple[int, ...] | None:
        """Partitions the node hosts a replica of (``GET /v1/admin/partitions``)."""
        try:
            _, body, _ = await self._http.call(
                node.http_url, "GET", "/v1/admin/partitions", timeout=self._timeout
            )
        except (errors.KvError, OSError) as e:
            log.debug("node %s did not list its partitions: %s", node.node_id, e)
            return None
        raw = body.get("partitions")
        if not isinstance(raw, list):
            return None
        return tuple(sorted(int(s["partition"]) for s in raw if isinstance(s, dict)))

    async def install_map(self, node: NodeInfo, pmap: PartitionMap) -> None:
        await self._admin.install_map(node, pmap)

    def use_credential(self, domain: str, token: str | None) -> None:
        if token is None:
            self._credentials.pop(domain, None)
        else:
            self._credentials[domain] = token

    def token_for(self, base_url: str) -> str | None:
        """The credential of the cluster whose node ``base_url`` points at (None: no auth)."""
        return _by_domain(self._credentials, base_url)

    def use_tls(self, domain: str, ca_pem: bytes | None) -> None:
        """Call the nodes under ``domain`` over HTTPS, verifying them against ``ca_pem``; None:
        plain HTTP. The context is rebuilt only when the CA bundle changes, so pooled
        connections survive the reconciler feeding the same CA every pass. Raises
        ``ssl.SSLError`` for a bundle that holds no usable certificate."""
        if ca_pem is None:
            self._tls.pop(domain, None)
            return
        known = self._tls.get(domain)
        if known is None or known[0] != ca_pem:
            self._tls[domain] = (ca_pem, core_tls.client_context(ca_pem=ca_pem))

    def tls_for(self, base_url: str) -> ssl.SSLContext | None:
        """The TLS context of the cluster whose node ``base_url`` points at (None: plain)."""
        found = _by_domain(self._tls, base_url)
        return found[1] if found is not None else None

    async def set_drained(self, node: NodeInfo, drained: bool) -> dict[str, object]:
        """``PUT /v1/admin/drain``: the node's drain report (``complete``: it leads nothing)."""
        return await self._admin.set_drained(node, drained)

    async def close(self) -> None:
        await self._http.close()


def _by_domain(table: dict[str, _T], base_url: str) -> _T | None:
    """The entry of the domain ``base_url``'s host is a name under (a node of that cluster)."""
    host = urllib.parse.urlsplit(base_url).hostname or ""
    for domain, value in table.items():
        if host.endswith("." + domain):
            return value
    return None


def _drained(info: dict[str, object], node_id: str) -> bool | None:
    """This node's drain flag in a ``/v1/cluster`` answer (``nodes[<id>].drained``)."""
    nodes = info.get("nodes")
    me = nodes.get(node_id) if isinstance(nodes, dict) else None
    flag = me.get("drained") if isinstance(me, dict) else None
    return flag if isinstance(flag, bool) else None


def _leaders(info: dict[str, object], partitions: int) -> tuple[str | None, ...] | None:
    """``leaders`` of a ``/v1/cluster`` answer ({"<p>": node_id | None}) by partition; None
    when the node did not say (an older node)."""
    raw = info.get("leaders")
    if not isinstance(raw, dict):
        return None
    return tuple(v if isinstance(v := raw.get(str(p)), str) else None for p in range(partitions))
