"""What the reconciler needs from Kubernetes and from the nodes, declared by the consumer.

``kvoperator.kube.KubernetesApi`` and ``kvoperator.nodes.HttpNodeApi`` implement them; unit
tests use in-memory fakes. Every call is bounded by a deadline and raises on failure: the
reconciler treats any exception as "this pass failed, try again on the next one".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from kvnode.core.model import NodeInfo, PartitionMap
from kvnode.rebalance.admin import NodeAdmin
from kvnode.rebalance.state import StateStore

from kvoperator.decide.backup import JobView
from kvoperator.manifests import Owner
from kvoperator.model.names import ClusterNames
from kvoperator.model.observed import MapReport

Obj = dict[str, Any]


class KubeApi(Protocol):
    async def get_cluster(self, namespace: str, name: str) -> Obj | None:
        """The KVCluster object; None if it does not exist (any more)."""
        ...

    async def patch_cluster_status(self, namespace: str, name: str, status: Obj) -> None:
        """Merge-patch the status subresource."""
        ...

    async def apply(self, obj: Obj) -> None:
        """Create or update ``obj`` (server-side apply, the operator as field manager)."""
        ...

    async def get_statefulset(self, namespace: str, name: str) -> Obj | None: ...

    async def get_configmap(self, namespace: str, name: str) -> Obj | None: ...

    async def list_pods(self, namespace: str, labels: Mapping[str, str]) -> list[Obj]: ...

    async def get_secret(self, namespace: str, name: str) -> Obj | None:
        """The Secret (values base64 as the API returns them); None if it does not exist.
        Only the ones ``spec.auth`` and ``spec.tls`` name and the operator's own Raft Secret
        are ever read, and their values are never logged."""
        ...

    async def create_secret(self, obj: Obj) -> bool:
        """Create the Secret ``obj``; False when one of that name already exists (it is left
        as it is: never overwritten)."""
        ...

    async def list_pvcs(self, namespace: str, labels: Mapping[str, str]) -> list[Obj]: ...

    async def delete_pod(self, namespace: str, name: str) -> None:
        """Delete (graceful); already gone is not an error."""
        ...

    async def delete_pvc(self, namespace: str, name: str) -> None:
        """Delete; already gone is not an error."""
        ...

    async def annotate_pvc(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None: ...

    async def node_labels(self, node_name: str) -> Mapping[str, str] | None:
        """Labels of a Kubernetes node; None if it cannot be read (gone, or not allowed)."""
        ...

    async def emit_event(
        self, involved: Obj, *, reason: str, message: str, warning: bool = False
    ) -> None:
        """Record an Event about ``involved`` (a KVCluster); failures are logged, not raised."""
        ...

    async def get_backup(self, namespace: str, name: str) -> Obj | None:
        """A KVClusterBackup; None if it does not exist."""
        ...

    async def patch_backup_status(self, namespace: str, name: str, status: Obj) -> None: ...

    async def job_view(self, namespace: str, name: str) -> JobView | None:
        """A Job's state (with its newest pod's log once finished); None if absent."""
        ...

    def state_store(self, names: ClusterNames, owner: Owner) -> StateStore:
        """The rebalance executor's state in the ConfigMap ``names.state_configmap``. Its calls
        are synchronous (the executor persists before it acts) and block for one API call."""
        ...


class NodeApi(Protocol):
    @property
    def admin(self) -> NodeAdmin:
        """The admin operations the rebalance executor drives."""
        ...

    async def read_map(self, node: NodeInfo) -> MapReport: ...

    async def install_map(self, node: NodeInfo, pmap: PartitionMap) -> None:
        """``PUT /v1/admin/map``: same map again is a no-op; an older epoch is refused."""
        ...

    def use_credential(self, domain: str, token: str | None) -> None:
        """Send ``token`` as the bearer token on every call (admin calls included) to nodes
        whose host ends with ``.domain`` (one cluster's headless-Service domain); None: none."""
        ...

    def use_tls(self, domain: str, ca_pem: bytes | None) -> None:
        """Call nodes whose host ends with ``.domain`` over HTTPS, verifying their certificate
        (and host name) against the CA bundle ``ca_pem``; None: plain HTTP. Raises
        ``ssl.SSLError`` when the bundle is unusable."""
        ...

    async def hosted(self, node: NodeInfo) -> tuple[int, ...] | None:
        """Partitions the node hosts a replica of; None: it did not say."""
        ...

    async def needs_reseed(self, node: NodeInfo) -> tuple[int, ...] | None:
        """Partitions the node's volume lost (``/readyz``); None: it did not say."""
        ...

    async def set_drained(self, node: NodeInfo, drained: bool) -> dict[str, object]:
        """Maintenance drain (``PUT /v1/admin/drain``); the node's report, ``complete`` once it
        leads nothing (it waits a while for that before answering)."""
        ...

    async def close(self) -> None: ...
