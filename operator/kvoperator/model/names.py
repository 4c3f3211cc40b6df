"""Every name, label and node identity derived from a KVCluster; nothing else invents names.

A node's identity is its pod name (``<cluster>-<ordinal>``) and its address is the pod's DNS
name under the headless Service. Raft peers are identified by that ``host:port`` string and it
is stored on the node's volume, so it must never change for the life of the volume: it depends
only on the cluster name, the namespace and the ordinal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kvnode.core.model import NodeInfo

GROUP = "ringkv.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "KVCluster"
PLURAL = "kvclusters"

HTTP_PORT = 7000
RAFT_PORT_BASE = 17000
DATA_DIR = "/var/lib/ringkv"
DATA_VOLUME = "data"
MANAGER = "ringkv-operator"  # field manager and Event reporting component

# Annotation put on a retained PVC of a removed ordinal: its data is stale and must not come
# back as a member's volume (see decide: scale-up refuses to reuse it).
RETIRED_ANNOTATION = f"{GROUP}/retired-at-epoch"
# On a node's PVC while a rolling upgrade has drained that node (value: the revision rolled to):
# the drain flag lives on the volume, so the mark must too; the operator undrains it once the
# recreated pod is ready and caught up. A drain without the mark is a person's: left alone.
ROLL_DRAIN_ANNOTATION = f"{GROUP}/drained-for-roll"
STATE_KEY = "state.json"  # ConfigMap key of the rebalance executor's state
UPDATED_KEY = "updatedAt"  # ConfigMap key: wall clock of the last save


@dataclass(frozen=True, slots=True)
class ClusterNames:
    """Names of the objects owned by KVCluster ``name`` in ``namespace``."""

    name: str
    namespace: str
    cluster_domain: str = "cluster.local"

    @property
    def statefulset(self) -> str:
        return self.name

    @property
    def headless_service(self) -> str:
        return f"{self.name}-peers"

    @property
    def client_service(self) -> str:
        return self.name

    @property
    def pdb(self) -> str:
        return self.name

    @property
    def state_configmap(self) -> str:
        return f"{self.name}-rebalance"

    @property
    def raft_secret(self) -> str:
        """The Secret holding the Raft password of a ``spec.tls`` cluster (operator-made)."""
        return f"{self.name}-raft"

    @property
    def labels(self) -> dict[str, str]:
        """The selector labels of the cluster's node pods (and their volumes). ``component``
        keeps the operator's own pods out, whatever its Helm release is called."""
        return {
            "app.kubernetes.io/name": "ringkv",
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/component": "node",
        }

    @property
    def object_labels(self) -> dict[str, str]:
        """Labels of every object the operator creates for this cluster."""
        return {
            "app.kubernetes.io/name": "ringkv",
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/managed-by": MANAGER,
        }

    @property
    def selector(self) -> str:
        """``status.selector``: the label selector string the scale subresource reports."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))

    def pod(self, ordinal: int) -> str:
        return f"{self.name}-{ordinal}"

    def pvc(self, ordinal: int) -> str:
        return f"{DATA_VOLUME}-{self.pod(ordinal)}"

    @property
    def node_domain(self) -> str:
        """The DNS domain every node host of this cluster ends with (the headless Service's)."""
        return f"{self.headless_service}.{self.namespace}.svc.{self.cluster_domain}"

    def host(self, ordinal: int) -> str:
        """The pod's stable DNS name (what ``NodeInfo.host`` holds, forever)."""
        return f"{self.pod(ordinal)}.{self.node_domain}"

    def node(self, ordinal: int, *, zone: str | None = None) -> NodeInfo:
        return NodeInfo(
            node_id=self.pod(ordinal),
            host=self.host(ordinal),
            http_port=HTTP_PORT,
            raft_port_base=RAFT_PORT_BASE,
            zone=zone,
        )

    def ordinal_of(self, name: str) -> int | None:
        """The ordinal in a pod name (``demo-3``) or PVC name (``data-demo-3``); None if the
        name is not one of this cluster's."""
        m = re.fullmatch(rf"(?:{DATA_VOLUME}-)?{re.escape(self.name)}-(\d+)", name)
        return int(m.group(1)) if m else None
