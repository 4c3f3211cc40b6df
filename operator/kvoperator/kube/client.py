"""``KubernetesApi``: ``KubeApi`` over the official synchronous ``kubernetes`` client.

Why the synchronous client (not ``kubernetes_asyncio``): the rebalance executor persists its
state synchronously before each effect (``StateStore.save``), and the sync client can do that in
place; every other call runs in a worker thread (``asyncio.to_thread``), so the event loop never
waits on the API server. One client, one set of models and one auth path (in-cluster service
account or kubeconfig), the same one kopf picks up.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import kubernetes
from kubernetes.client.exceptions import ApiException

from kvoperator.decide.backup import JobState, JobView
from kvoperator.kube.store import ConfigMapStore
from kvoperator.manifests import Owner
from kvoperator.model import backup as b
from kvoperator.model import names as n
from kvoperator.model.names import ClusterNames

log = logging.getLogger(__name__)
Obj = dict[str, Any]
T = TypeVar("T")
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"


def load_config() -> None:
    """In a pod: the service account (``KUBERNETES_SERVICE_HOST``); elsewhere: kubeconfig."""
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


class KubernetesApi:
    """Implements ``kvoperator.reconcile.ports.KubeApi``; ``timeout_s`` bounds every call."""

    def __init__(self, api: kubernetes.client.ApiClient | None = None, *, timeout_s: float = 15.0):
        self._client = api or kubernetes.client.ApiClient()
        self._core = kubernetes.client.CoreV1Api(self._client)
        self._apps = kubernetes.client.AppsV1Api(self._client)
        self._policy = kubernetes.client.PolicyV1Api(self._client)
        self._custom = kubernetes.client.CustomObjectsApi(self._client)
        self._batch = kubernetes.client.BatchV1Api(self._client)
        self._timeout = timeout_s
        self._nodes_readable = True  # False after a 403: zones are then unknown, quietly

    def _dict(self, obj: Any) -> Obj:
        if isinstance(obj, dict):
            return obj
        out: Obj = self._client.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
        return out

    def _get(self, fn: Callable[..., Any], *args: Any) -> Obj | None:
        try:
            return self._dict(fn(*args, _request_timeout=self._timeout))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def get_cluster(self, namespace: str, name: str) -> Obj | None:
        fn = self._custom.get_namespaced_custom_object
        return await self._run(self._get, fn, n.GROUP, n.VERSION, namespace, n.PLURAL, name)

    async def patch_cluster_status(self, namespace: str, name: str, status: Obj) -> None:
        def call() -> None:
            self._custom.patch_namespaced_custom_object_status(
                n.GROUP, n.VERSION, namespace, n.PLURAL, name, {"status": status},
                _content_type=MERGE, _request_timeout=self._timeout,
            )  # fmt: skip

        await self._run(call)

    def apply_sync(self, obj: Obj) -> None:
        """Server-side apply of a namespaced object we own (kinds the operator writes)."""
        meta = obj["metadata"]
        fns = {
            "StatefulSet": self._apps.patch_namespaced_stateful_set,
            "Service": self._core.patch_namespaced_service,
            "ConfigMap": self._core.patch_namespaced_config_map,
            "PodDisruptionBudget": self._policy.patch_namespaced_pod_disruption_budget,
            "Job": self._batch.patch_namespaced_job,
            "PersistentVolumeClaim": self._core.patch_namespaced_persistent_volume_claim,
        }
        fns[obj["kind"]](
            meta["name"], meta["namespace"], obj, field_manager=n.MANAGER, force=True,
            _content_type=APPLY, _request_timeout=self._timeout,
        )  # fmt: skip

    async def apply(self, obj: Obj) -> None:
        await self._run(self.apply_sync, obj)

    async def get_statefulset(self, namespace: str, name: str) -> Obj | None:
        return await self._run(self._get, self._apps.read_namespaced_stateful_set, name, namespace)

    def get_configmap_sync(self, namespace: str, name: str) -> Obj | None:
        return self._get(self._core.read_namespaced_config_map, name, namespace)

    async def get_configmap(self, namespace: str, name: str) -> Obj | None:
        return await self._run(self.get_configmap_sync, namespace, name)

    async def get_secret(self, namespace: str, name: str) -> Obj | None:
        return await self._run(self._get, self._core.read_namespaced_secret, name, namespace)

    async def create_secret(self, obj: Obj) -> bool:
        def call() -> bool:
            ns = obj["metadata"]["namespace"]
            create = self._core.create_namespaced_secret
            try:
                create(ns, obj, _request_timeout=self._timeout)  # type: ignore[arg-type]
            except ApiException as e:
                if e.status == 409:  # AlreadyExists: kept as it is
                    return False
                raise
            return True

        return await self._run(call)

    async def list_pods(self, namespace: str, labels: Mapping[str, str]) -> list[Obj]:
        def call() -> list[Obj]:
            res = self._core.list_namespaced_pod(
                namespace, label_selector=_selector(labels), _request_timeout=self._timeout
            )
            return [self._dict(p) for p in res.items]

        return await self._run(call)

    async def list_pvcs(self, namespace: str, labels: Mapping[str, str]) -> list[Obj]:
        def call() -> list[Obj]:
            res = self._core.list_namespaced_persistent_volume_claim(
                namespace, label_selector=_selector(labels), _request_timeout=self._timeout
            )
            return [self._dict(p) for p in res.items]

        return await self._run(call)

    async def delete_pod(self, namespace: str, name: str) -> None:
        def call() -> None:
            try:
                self._core.delete_namespaced_pod(name, namespace, _request_timeout=self._timeout)
            except ApiException as e:
                if e.status != 404:
                    raise

        await self._run(call)

    async def delete_pvc(self, namespace: str, name: str) -> None:
        def call() -> None:
            try:
                self._core.delete_namespaced_persistent_volume_claim(
                    name, namespace, _request_timeout=self._timeout
                )
            except ApiException as e:
                if e.status != 404:
                    raise

        await self._run(call)

    async def annotate_pvc(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        def call() -> None:
            self._core.patch_namespaced_persistent_volume_claim(
                name, namespace, {"metadata": {"annotations": dict(annotations)}},
                _content_type=MERGE, _request_timeout=self._timeout,
            )  # fmt: skip

        await self._run(call)

    async def node_labels(self, node_name: str) -> Mapping[str, str] | None:
        if not self._nodes_readable:
            return None
        try:
            node = await self._run(self._get, self._core.read_node, node_name)
        except ApiException as e:
            log.warning("cannot read node %s (zones unknown): %s", node_name, e.reason)
            if e.status == 403:
                self._nodes_readable = False
            return None
        return None if node is None else (node.get("metadata", {}).get("labels") or {})

    async def emit_event(
        self, involved: Obj, *, reason: str, message: str, warning: bool = False
    ) -> None:
        meta = involved.get("metadata", {})
        now = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
        event = {
            "metadata": {
                "generateName": f"{meta.get('name')}.",
                "namespace": meta.get("namespace"),
            },
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", n.API_VERSION),
                "kind": involved.get("kind", n.KIND),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": n.MANAGER},
            "reportingComponent": n.MANAGER,
        }

        def call() -> None:
            self._core.create_namespaced_event(
                meta.get("namespace"),
                event,  # type: ignore[arg-type]  # the client serialises plain dicts as is
                _request_timeout=self._timeout,
            )

        try:
            await self._run(call)
        except Exception as e:  # an Event is advisory: never fail a pass over one
            log.warning("event %s not recorded: %s", reason, e)

    # -- backups and their Jobs ----------------------------------------------------------------
    async def get_backup(self, namespace: str, name: str) -> Obj | None:
        fn = self._custom.get_namespaced_custom_object
        return await self._run(self._get, fn, n.GROUP, n.VERSION, namespace, b.PLURAL, name)

    async def patch_backup_status(self, namespace: str, name: str, status: Obj) -> None:
        def call() -> None:
            self._custom.patch_namespaced_custom_object_status(
                n.GROUP, n.VERSION, namespace, b.PLURAL, name, {"status": status},
                _content_type=MERGE, _request_timeout=self._timeout,
            )  # fmt: skip

        await self._run(call)

    async def job_view(self, namespace: str, name: str) -> JobView | None:
        """The Job's state, with the log of its newest pod once it finished; None if absent."""
        job = await self._run(self._get, self._batch.read_namespaced_job, name, namespace)
        if job is None:
            return None
        st = job.get("status") or {}
        conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
        if st.get("succeeded") or conds.get("Complete") == "True":
            state = JobState.SUCCEEDED
        elif conds.get("Failed") == "True":
            state = JobState.FAILED
        else:
            return JobView(JobState.ACTIVE)
        return JobView(state, await self._run(self._job_log, namespace, name))

    def _job_log(self, namespace: str, job: str) -> str:
        res = self._core.list_namespaced_pod(
            namespace, label_selector=f"job-name={job}", _request_timeout=self._timeout
        )
        pods = [self._dict(p) for p in res.items]
        if not pods:
            return ""
        newest = max(pods, key=lambda p: str(p["metadata"].get("creationTimestamp") or ""))
        pod = str(newest["metadata"]["name"])
        try:
            text = self._core.read_namespaced_pod_log(
                pod, namespace, tail_lines=40, _request_timeout=self._timeout
            )
        except ApiException as e:
            return f"(log of {pod} unreadable: {e.reason})"
        return str(text)

    def state_store(self, names: ClusterNames, owner: Owner) -> ConfigMapStore:
        return ConfigMapStore(names, owner, read=self.get_configmap_sync, write=self.apply_sync)
