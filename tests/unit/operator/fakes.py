"""In-memory ``KubeApi`` and ``NodeApi`` for the reconciler tests (the layer above them).

``FakeKube`` keeps objects in a dict and plays the StatefulSet controller on demand
(``run_controllers``): pods and PVCs for the StatefulSet's replicas, pods above them removed.
``FakeNodes`` holds the maps nodes install during bootstrap, then hands the cluster over to the
rebalance tests' ``FakeCluster`` (strict about map epochs, Raft membership and data), so the
real executor runs against it.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from kvnode.core import errors
from kvnode.core.model import NodeInfo, PartitionMap
from kvoperator.kube.store import ConfigMapStore
from kvoperator.manifests import Owner
from kvoperator.model.names import ClusterNames
from kvoperator.model.observed import MapReport

from tests.unit.rebalance.fake_cluster import FakeCluster

Obj = dict[str, Any]
Key = tuple[str, str, str]  # kind, namespace, name
MAX_ORDINALS = 10


def _merge(into: Obj, patch: Mapping[str, Any]) -> None:
    """JSON merge patch (RFC 7386): None deletes."""
    for k, v in patch.items():
        if v is None:
            into.pop(k, None)
        elif isinstance(v, Mapping) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = copy.deepcopy(v)


def _matches(obj: Obj, labels: Mapping[str, str]) -> bool:
    have = obj["metadata"].get("labels") or {}
    return all(have.get(k) == v for k, v in labels.items())


class FakeKube:
    def __init__(self) -> None:
        self.rolled: list[str] = []  # pods deleted by the operator (rolling update)
        self.objects: dict[Key, Obj] = {}
        self.events: list[tuple[str, str, str]] = []  # (type, reason, message)
        self.statuses: list[Obj] = []  # every status patch, in order
        self.deleted_pods: list[str] = []
        self.on_pod_deleted: Callable[[str], None] | None = None
        self.on_delete_pod: Callable[[str], None] | None = None  # the operator deleting one
        self.node_zones: dict[str, str] = {}

    # -- test controls ---------------------------------------------------------------------------
    def create_cluster(self, name: str, namespace: str, spec: Obj, *, uid: str = "uid-1") -> None:
        self.objects[("KVCluster", namespace, name)] = {
            "apiVersion": "ringkv.io/v1alpha1",
            "kind": "KVCluster",
            "metadata": {"name": name, "namespace": namespace, "uid": uid, "generation": 1},
            "spec": copy.deepcopy(spec),
        }

    def cluster(self, namespace: str = "ns", name: str = "demo") -> Obj:
        return self.objects[("KVCluster", namespace, name)]

    def update_spec(self, namespace: str = "ns", name: str = "demo", **changes: Any) -> None:
        obj = self.cluster(namespace, name)
        obj["spec"].update(changes)
        obj["metadata"]["generation"] += 1

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self.objects.get((kind, namespace, name))

    async def get_secret(self, namespace: str, name: str) -> Obj | None:
        return copy.deepcopy(self.objects.get(("Secret", namespace, name)))

    async def create_secret(self, obj: Obj) -> bool:
        """As the API server: ``stringData`` is stored base64 in ``data``; never overwrites."""
        meta = obj["metadata"]
        key = ("Secret", meta["namespace"], meta["name"])
        if key in self.objects:
            return False
        stored = copy.deepcopy(obj)
        strings = stored.pop("stringData", {})
        data = stored.setdefault("data", {})
        data.update({k: base64.b64encode(v.encode()).decode() for k, v in strings.items()})
        self.objects[key] = stored
        return True

    def names(self, kind: str) -> list[str]:
        return sorted(k[2] for k in self.objects if k[0] == kind)

    def run_controllers(self, *, ready: Callable[[str], bool]) -> None:
        """The StatefulSet controller and the kubelet, in one step."""
        for (kind, ns, name), sts in list(self.objects.items()):
            if kind != "StatefulSet":
                continue
            replicas = sts["spec"]["replicas"]
            template = sts["spec"]["template"]
            raw = json.dumps(template, sort_keys=True).encode()
            revision = f"{name}-{hashlib.sha256(raw).hexdigest()[:10]}"
            sts.setdefault("status", {})["updateRevision"] = revision
            labels = {**template["metadata"]["labels"], "controller-revision-hash": revision}
            claim = sts["spec"]["volumeClaimTemplates"][0]["metadata"]
            for i in range(replicas):
                pod = f"{name}-{i}"
                self.objects.setdefault(("Pod", ns, pod), _pod(pod, ns, labels, i))
                pvc = f"{claim['name']}-{pod}"
                self.objects.setdefault(
                    ("PersistentVolumeClaim", ns, pvc),
                    {"metadata": {"name": pvc, "namespace": ns, "labels": dict(claim["labels"])}},
                )
            for (k, pns, pod), _ in list(self.objects.items()):
                if k == "Pod" and pns == ns and int(pod.rsplit("-", 1)[1]) >= replicas:
                    del self.objects[(k, pns, pod)]
                    self.deleted_pods.append(pod)
                    if self.on_pod_deleted is not None:
                        self.on_pod_deleted(pod)
        for (kind, _, name), pod in self.objects.items():
            if kind == "Pod":
                status = "True" if ready(name) else "False"
                pod["status"]["conditions"] = [{"type": "Ready", "status": status}]

    def revisions(self, namespace: str = "ns") -> dict[str, str]:
        """pod -> the template revision it was made from."""
        return {
            name: pod["metadata"]["labels"].get("controller-revision-hash", "")
            for (kind, ns, name), pod in self.objects.items()
            if kind == "Pod" and ns == namespace
        }

    async def delete_pod(self, namespace: str, name: str) -> None:
        """OnDelete: the pod goes; the next ``run_controllers`` recreates it (same volume)."""
        if self.on_delete_pod is not None:
            self.on_delete_pod(name)
        if self.objects.pop(("Pod", namespace, name), None) is not None:
            self.rolled.append(name)

    def pod_running(self, namespace: str, name: str) -> bool:
        return ("Pod", namespace, name) in self.objects

    # -- KubeApi ---------------------------------------------------------------------------------
    async def get_cluster(self, namespace: str, name: str) -> Obj | None:
        obj = self.objects.get(("KVCluster", namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    async def patch_cluster_status(self, namespace: str, name: str, status: Obj) -> None:
        obj = self.cluster(namespace, name)
        current = obj.setdefault("status", {})
        _merge(current, status)
        self.statuses.append(copy.deepcopy(current))

    def apply_sync(self, obj: Obj) -> None:
        meta = obj["metadata"]
        self.objects[(obj["kind"], meta["namespace"], meta["name"])] = copy.deepcopy(obj)

    async def apply(self, obj: Obj) -> None:
        self.apply_sync(obj)

    async def get_statefulset(self, namespace: str, name: str) -> Obj | None:
        return copy.deepcopy(self.get("StatefulSet", namespace, name))

    def get_configmap_sync(self, namespace: str, name: str) -> Obj | None:
        return copy.deepcopy(self.get("ConfigMap", namespace, name))

    async def get_configmap(self, namespace: str, name: str) -> Obj | None:
        return self.get_configmap_sync(namespace, name)

    def _list(self, kind: str, namespace: str, labels: Mapping[str, str]) -> list[Obj]:
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in sorted(self.objects.items())
            if k == kind and ns == namespace and _matches(o, labels)
        ]

    async def list_pods(self, namespace: str, labels: Mapping[str, str]) -> list[Obj]:
        return self._list("Pod", namespace, labels)

    async def list_pvcs(self, namespace: str, labels: Mapping[str, str]) -> list[Obj]:
        return self._list("PersistentVolumeClaim", namespace, labels)

    async def delete_pvc(self, namespace: str, name: str) -> None:
        self.objects.pop(("PersistentVolumeClaim", namespace, name), None)

    async def annotate_pvc(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        pvc = self.objects[("PersistentVolumeClaim", namespace, name)]
        mine = pvc["metadata"].setdefault("annotations", {})
        mine.update(annotations)
        for k in [k for k, v in mine.items() if v is None]:  # a merge patch's null removes
            del mine[k]

    async def node_labels(self, node_name: str) -> Mapping[str, str] | None:
        zone = self.node_zones.get(node_name)
        return None if zone is None else {"topology.kubernetes.io/zone": zone}

    async def emit_event(
        self, involved: Obj, *, reason: str, message: str, warning: bool = False
    ) -> None:
        self.events.append(("Warning" if warning else "Normal", reason, message))

    def state_store(self, names: ClusterNames, owner: Owner) -> ConfigMapStore:
        return ConfigMapStore(names, owner, read=self.get_configmap_sync, write=self.apply_sync)

    def reasons(self) -> list[str]:
        return [r for _, r, _ in self.events]


def _pod(name: str, namespace: str, labels: Mapping[str, str], i: int) -> Obj:
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {"nodeName": f"worker-{i % 3}"},
        "status": {"phase": "Running", "podIP": f"10.0.0.{i + 1}", "conditions": []},
    }


class _Admin:
    """``NodeAdmin`` that reaches the ``FakeCluster`` once bootstrap created it."""

    def __init__(self, nodes: FakeNodes) -> None:
        self._nodes = nodes

    def __getattr__(self, name: str) -> Any:
        assert self._nodes.cluster is not None, "admin call before the bootstrap map"
        return getattr(self._nodes.cluster, name)


class FakeNodes:
    def __init__(self, kube: FakeKube, names: ClusterNames) -> None:
        self.kube = kube
        self.names = names
        self.cluster: FakeCluster | None = None
        self.bootstrap: dict[str, PartitionMap] = {}  # before the FakeCluster exists
        self.installs = 0
        self.deaf: set[str] = set()  # pods running whose node does not answer (yet)
        self.credentials: dict[str, str] = {}  # use_credential: domain -> token
        self.tls: dict[str, bytes] = {}  # use_tls: domain -> CA bundle
        self.lost: dict[str, set[int]] = {}  # partitions a node says it needs reseeded
        self.drained: dict[str, bool] = {}
        self._admin = _Admin(self)

    @property
    def admin(self) -> Any:
        return self._admin

    def map_of(self, node_id: str) -> PartitionMap | None:
        if self.cluster is not None and self.cluster.nodes[node_id].maps:
            return self.cluster.installed(node_id)
        return self.bootstrap.get(node_id)

    def ready(self, pod: str) -> bool:
        pmap = self.map_of(pod)
        return pmap is not None and pmap.has_node(pod)

    async def read_map(self, node: NodeInfo) -> MapReport:
        if node.node_id in self.deaf or not self.kube.pod_running(
            self.names.namespace, node.node_id
        ):
            return MapReport(reachable=False)
        pmap = self.map_of(node.node_id)
        leaders = None
        if self.cluster is not None and pmap is not None:
            groups = self.cluster.groups
            leaders = tuple(
                groups[p].leader if p in groups else None for p in range(pmap.partitions)
            )
        drained = self.drained.get(node.node_id, False) if pmap is not None else None
        return MapReport(reachable=True, pmap=pmap, leaders=leaders, drained=drained)

    async def install_map(self, node: NodeInfo, pmap: PartitionMap) -> None:
        if node.node_id in self.deaf or not self.kube.pod_running(
            self.names.namespace, node.node_id
        ):
            raise errors.Unavailable(f"cannot connect to {node.node_id}", reason="connect")
        self.installs += 1
        if self.cluster is not None:
            await self.cluster.install_map(node, pmap)
            return
        old = self.bootstrap.get(node.node_id)
        if old is not None and old.epoch > pmap.epoch:
            raise errors.StaleEpoch("older map", epoch=old.epoch)
        self.bootstrap[node.node_id] = pmap
        if all(self.bootstrap.get(n.node_id) == pmap for n in pmap.nodes):
            extra = [
                self.names.node(o)
                for o in range(MAX_ORDINALS)
                if not pmap.has_node(self.names.pod(o))
            ]
            self.cluster = FakeCluster(pmap, extra=extra)

    def use_credential(self, domain: str, token: str | None) -> None:
        if token is None:
            self.credentials.pop(domain, None)
        else:
            self.credentials[domain] = token

    def use_tls(self, domain: str, ca_pem: bytes | None) -> None:
        if ca_pem is None:
            self.tls.pop(domain, None)
        else:
            self.tls[domain] = ca_pem

    async def hosted(self, node: NodeInfo) -> tuple[int, ...] | None:
        if self.cluster is None:
            return ()
        return tuple(sorted(self.cluster.nodes[node.node_id].data))

    async def needs_reseed(self, node: NodeInfo) -> tuple[int, ...] | None:
        return tuple(sorted(self.lost.get(node.node_id, ())))

    async def set_drained(self, node: NodeInfo, drained: bool) -> dict[str, object]:
        self.drained[node.node_id] = drained
        if self.cluster is None:
            return {"drained": drained, "complete": True, "leader_of": []}
        return await self.cluster.set_drained(node, drained)

    async def close(self) -> None:
        pass
