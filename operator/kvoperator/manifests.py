"""Pure builders of every object a KVCluster owns; the same manifests in e2e as in production.

Each builder returns a plain dict ready for server-side apply, with the owner reference that
lets Kubernetes garbage-collect it with the KVCluster. Why the StatefulSet looks as it does:

* ``podManagementPolicy: Parallel``: a lone pod is never ready (it needs a map and a quorum), so
  ordered start-up would wait forever for pod 0.
* The headless Service publishes not-ready addresses: peers must resolve before they are ready.
* ``KVNODE_HOST`` is the pod's DNS name under that Service (stable for the life of the volume:
  Raft identifies peers by it); ``KVNODE_BIND_HOST`` is the pod IP (downward API).
* Readiness is ``/readyz`` (a map and a leader for every hosted partition), liveness ``/healthz``.
* PVCs outlive scale-downs (``whenScaled: Retain``): the operator itself applies
  ``storage.reclaimPolicy`` once a removed ordinal is drained and its pod is gone.
* ``spec.auth``: the Secret is a read-only volume at ``/etc/ringkv/auth`` and the node reads
  its tokens file and cluster credential from there (re-read when the kubelet updates them).
  The probes stay unauthenticated: ``/healthz`` and ``/readyz`` are always open.
* ``spec.tls``: the TLS Secret is a read-only volume at ``/etc/ringkv/tls`` (the node serves
  HTTPS only and verifies peers against its ``ca.crt``), the operator's ``<cluster>-raft``
  Secret one at ``/etc/ringkv/raft`` (the Raft password); the probes use scheme HTTPS (the
  kubelet does not verify the certificate, as with any HTTPS probe).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kvoperator.model import auth as model_auth
from kvoperator.model import backup as b
from kvoperator.model import names as n
from kvoperator.model import tls as model_tls
from kvoperator.model.names import ClusterNames
from kvoperator.model.spec import ClusterSpec, ReclaimPolicy

CONFIG_HASH_ANNOTATION = f"{n.GROUP}/config-hash"
NODE_COMMAND = ("ringkv-node",)  # console script of the ringkv distribution, in the image

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Owner:
    """The KVCluster that owns the objects (its uid makes the reference unambiguous)."""

    name: str
    uid: str
    kind: str = n.KIND

    def reference(self) -> Obj:
        return {
            "apiVersion": n.API_VERSION,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def _meta(names: ClusterNames, name: str, owner: Owner) -> Obj:
    return {
        "name": name,
        "namespace": names.namespace,
        "labels": names.object_labels,
        "ownerReferences": [owner.reference()],
    }


def owned_objects(
    spec: ClusterSpec, names: ClusterNames, owner: Owner, *, replicas: int
) -> list[Obj]:
    """Everything ``ApplyObjects`` writes, in dependency order (Services before the pods)."""
    return [
        headless_service(names, owner),
        client_service(names, owner),
        pdb(spec, names, owner),
        statefulset(spec, names, owner, replicas=replicas),
    ]


def config_hash(spec: ClusterSpec, names: ClusterNames) -> str:
    """Hash of what the owned objects would be (replicas excluded): the StatefulSet carries it,
    so the operator re-applies only when the spec (or this builder) changed."""
    probe = Owner(name=names.name, uid="-")
    objs = owned_objects(spec, names, probe, replicas=0)
    raw = json.dumps(objs, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def headless_service(names: ClusterNames, owner: Owner) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(names, names.headless_service, owner),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": names.labels,
            "ports": [{"name": "http", "port": n.HTTP_PORT, "targetPort": "http"}],
        },
    }


def client_service(names: ClusterNames, owner: Owner) -> Obj:
    """Clients reach ready nodes here; any node forwards a request to the partition leader."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(names, names.client_service, owner),
        "spec": {
            "type": "ClusterIP",
            "selector": names.labels,
            "ports": [{"name": "http", "port": n.HTTP_PORT, "targetPort": "http"}],
        },
    }


def pdb(spec: ClusterSpec, names: ClusterNames, owner: Owner) -> Obj:
    """Voluntary disruptions may take down at most the replicas a partition can lose and keep
    its quorum: a quorum is RF//2+1 of RF, and k evicted pods can hold k replicas of one
    partition (placement spreads replicas, so any k nodes may share one), hence (RF-1)//2.

    For RF 1 or 2 that is 0: every replica is needed for the quorum, so no eviction is ever
    allowed and a ``kubectl drain`` of a node running a ringkv pod blocks until the operator
    or the user moves it (the PDB refuses, it does not lose a write). An earlier ``max(1, ..)``
    let a drain take an RF-2 partition below quorum."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(names, names.pdb, owner),
        "spec": {
            "maxUnavailable": max_unavailable(spec.replication_factor),
            "selector": {"matchLabels": names.labels},
        },
    }


def max_unavailable(replication_factor: int) -> int:
    """Pods that may be down at once while every partition keeps RF//2+1 replicas."""
    return (replication_factor - 1) // 2


def state_configmap(names: ClusterNames, owner: Owner, data: Mapping[str, str]) -> Obj:
    """The rebalance executor's persisted state (see ``kvoperator.kube.store``)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(names, names.state_configmap, owner),
        "data": dict(data),
    }


def statefulset(spec: ClusterSpec, names: ClusterNames, owner: Owner, *, replicas: int) -> Obj:
    meta = _meta(names, names.statefulset, owner)
    if replicas > 0:  # replicas=0 only when hashing: the hash must not include itself
        meta["annotations"] = {CONFIG_HASH_ANNOTATION: config_hash(spec, names)}
    policy = "Delete" if spec.storage.reclaim_policy is ReclaimPolicy.DELETE else "Retain"
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "serviceName": names.headless_service,
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "OnDelete"},  # the operator rolls (decide/rolling.py)
            "selector": {"matchLabels": names.labels},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": policy, "whenScaled": "Retain"},
            "template": {
                "metadata": {"labels": {**names.object_labels, **names.labels}},
                "spec": _pod_spec(spec, names),
            },
            "volumeClaimTemplates": [_claim_template(spec, names)],
        },
    }


def _pod_spec(spec: ClusterSpec, names: ClusterNames) -> Obj:
    pod: Obj = {
        "terminationGracePeriodSeconds": 30,
        "enableServiceLinks": False,
        "containers": [_container(spec, names)],
    }
    volumes = _secret_volumes(spec, names)
    if volumes:
        pod["volumes"] = volumes
    sched = spec.scheduling
    if sched.affinity:
        pod["affinity"] = dict(sched.affinity)
    if sched.tolerations:
        pod["tolerations"] = [dict(t) for t in sched.tolerations]
    if sched.topology_spread_constraints:
        pod["topologySpreadConstraints"] = [dict(t) for t in sched.topology_spread_constraints]
    return pod


def _secret_volume(volume: str, secret_name: str) -> Obj:
    # 0444: the node runs as uid 10001 (Dockerfile) and the files are root's; nothing else
    # runs in the pod. A change of the Secret's content is no template change: no roll.
    return {"name": volume, "secret": {"secretName": secret_name, "defaultMode": 0o444}}


def _secret_volumes(spec: ClusterSpec, names: ClusterNames) -> list[Obj]:
    volumes: list[Obj] = []
    if spec.auth is not None:
        volumes.append(_secret_volume(model_auth.VOLUME, spec.auth.secret_name))
    if spec.tls is not None:
        volumes.append(_secret_volume(model_tls.VOLUME, spec.tls.secret_name))
        volumes.append(_secret_volume(model_tls.RAFT_VOLUME, names.raft_secret))
    return volumes


def raft_secret(names: ClusterNames, owner: Owner, password: str) -> Obj:
    """The Raft password of a ``spec.tls`` cluster; created once (never applied over: a new
    password would split the Raft groups), deleted with the KVCluster."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(names, names.raft_secret, owner),
        "type": "Opaque",
        "stringData": {model_tls.RAFT_PASSWORD_KEY: password},
    }


def _env(name: str, value: str) -> Obj:
    return {"name": name, "value": value}


def _field(name: str, path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _auth_env(spec: ClusterSpec) -> list[Obj]:
    if spec.auth is None:
        return []
    d = model_auth.MOUNT_DIR
    return [
        _env("KVNODE_AUTH_TOKENS_FILE", f"{d}/{model_auth.TOKENS_KEY}"),
        _env("KVNODE_CLUSTER_TOKEN_FILE", f"{d}/{model_auth.CLUSTER_TOKEN_KEY}"),
        _env("KVNODE_AUTH_METRICS", spec.auth.metrics.value),
    ]


def _tls_env(spec: ClusterSpec) -> list[Obj]:
    if spec.tls is None:
        return []
    d, t = model_tls.MOUNT_DIR, model_tls
    return [
        _env("KVNODE_TLS_CERT_FILE", f"{d}/{t.CERT_KEY}"),
        _env("KVNODE_TLS_KEY_FILE", f"{d}/{t.KEY_KEY}"),
        _env("KVNODE_TLS_CA_FILE", f"{d}/{t.CA_KEY}"),
        _env("KVNODE_RAFT_PASSWORD_FILE", f"{t.RAFT_MOUNT_DIR}/{t.RAFT_PASSWORD_KEY}"),
    ]


def _read_only(volume: str, path: str) -> Obj:
    return {"name": volume, "mountPath": path, "readOnly": True}


def _mounts(spec: ClusterSpec) -> list[Obj]:
    mounts: list[Obj] = [{"name": n.DATA_VOLUME, "mountPath": n.DATA_DIR}]
    if spec.auth is not None:
        mounts.append(_read_only(model_auth.VOLUME, model_auth.MOUNT_DIR))
    if spec.tls is not None:
        mounts.append(_read_only(model_tls.VOLUME, model_tls.MOUNT_DIR))
        mounts.append(_read_only(model_tls.RAFT_VOLUME, model_tls.RAFT_MOUNT_DIR))
    return mounts


def _container(spec: ClusterSpec, names: ClusterNames) -> Obj:
    domain = f"{names.headless_service}.{names.namespace}.svc.{names.cluster_domain}"
    scheme = {"scheme": "HTTPS"} if spec.tls is not None else {}
    probe = {"httpGet": {"path": "/readyz", "port": "http", **scheme}, "periodSeconds": 2}
    return {
        "name": "node",
        "image": spec.image,
        "command": list(NODE_COMMAND),
        "ports": [{"name": "http", "containerPort": n.HTTP_PORT}],
        "env": [
            _field("KVNODE_NODE_ID", "metadata.name"),
            _env("KVNODE_HOST", f"$(KVNODE_NODE_ID).{domain}"),
            _field("KVNODE_BIND_HOST", "status.podIP"),
            _env("KVNODE_DATA_DIR", n.DATA_DIR),
            _env("KVNODE_HTTP_PORT", str(n.HTTP_PORT)),
            _env("KVNODE_RAFT_PORT_BASE", str(n.RAFT_PORT_BASE)),
            _env("KVNODE_DURABILITY", spec.durability.value),
            *_auth_env(spec),
            *_tls_env(spec),
        ],
        "readinessProbe": {**probe, "failureThreshold": 3},
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http", **scheme},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "resources": dict(spec.resources),
        "volumeMounts": _mounts(spec),
    }


def _claim_template(spec: ClusterSpec, names: ClusterNames) -> Obj:
    claim: Obj = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.storage.size}},
    }
    if spec.storage.storage_class_name:
        claim["storageClassName"] = spec.storage.storage_class_name
    return {"metadata": {"name": n.DATA_VOLUME, "labels": names.labels}, "spec": claim}


# -- backup and restore (KVClusterBackup; a KVCluster's spec.restoreFrom) -------------------
CLI_COMMAND = "ringkv"  # console script of the ringkv distribution, in the node image


def backup_volume(spec: b.BackupSpec, names: b.BackupNames, owner: Owner) -> Obj:
    """The claim a backup is written to; owned by the KVClusterBackup (deleted with it)."""
    claim: Obj = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.size}},
    }
    if spec.storage_class_name:
        claim["storageClassName"] = spec.storage_class_name
    meta = {"name": names.pvc, "namespace": names.namespace, "labels": names.labels,
            "ownerReferences": [owner.reference()]}  # fmt: skip
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": claim}


def backup_job(
    names: b.BackupNames,
    owner: Owner,
    *,
    image: str,
    endpoints: tuple[str, ...],
    auth_secret: str | None = None,
    tls_secret: str | None = None,
) -> Obj:
    """``ringkv backup`` against every node (it finds each partition's leader itself), into
    ``data/`` on the backup claim. The CLI verifies the backup before it exits 0 and prints
    the result (per-partition indexes, size) as its last line, which the operator reads."""
    argv = [CLI_COMMAND, "--endpoints", ",".join(endpoints), "backup", f"{b.MOUNT}/{b.DATA_SUBDIR}"]
    return _job(names.job, names.namespace, names.labels, owner, image=image, argv=argv,
                claim=names.pvc, read_only=False, auth_secret=auth_secret,
                tls_secret=tls_secret)  # fmt: skip


def restore_job(
    names: ClusterNames,
    owner: Owner,
    *,
    image: str,
    claim: str,
    pmap_json: str,
    auth_secret: str | None = None,
    tls_secret: str | None = None,
) -> Obj:
    """``ringkv restore`` of the backup on ``claim`` into the new cluster's nodes (they run
    without a map), which installs the epoch-1 map ``pmap_json`` when every replica holds its
    data. Owned by the KVCluster."""
    argv = [CLI_COMMAND, "restore", f"{b.MOUNT}/{b.DATA_SUBDIR}"]
    labels = {**names.object_labels, "app.kubernetes.io/component": "restore"}
    job = _job(b.restore_job_name(names.name), names.namespace, labels, owner, image=image,
               argv=argv, claim=claim, read_only=True, auth_secret=auth_secret,
               tls_secret=tls_secret)  # fmt: skip
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [_env("RINGKV_MAP", pmap_json), *container["env"]]
    return job


def _job(
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    owner: Owner,
    *,
    image: str,
    argv: list[str],
    claim: str,
    read_only: bool,
    auth_secret: str | None = None,
    tls_secret: str | None = None,
) -> Obj:
    """A one-pod Job of ``ringkv`` with the backup claim mounted. With ``auth_secret`` (the
    cluster's ``spec.auth``) the CLI gets the cluster credential as ``RINGKV_TOKEN`` straight
    from the Secret: the token never appears in the Job object. With ``tls_secret`` (the
    cluster's ``spec.tls``) only its ``ca.crt`` is mounted (the Job needs no key) and named
    by ``RINGKV_CACERT``: the CLI calls the nodes over HTTPS and verifies them."""
    mounts: list[Obj] = [{"name": "backup", "mountPath": b.MOUNT, "readOnly": read_only}]
    env: list[Obj] = []
    if auth_secret:
        ref = {"name": auth_secret, "key": model_auth.CLUSTER_TOKEN_KEY}
        env.append({"name": "RINGKV_TOKEN", "valueFrom": {"secretKeyRef": ref}})
    volumes: list[Obj] = [{"name": "backup", "persistentVolumeClaim": {"claimName": claim}}]
    if tls_secret:
        ca = model_tls.CA_KEY
        source = {"secretName": tls_secret, "items": [{"key": ca, "path": ca}],
                  "defaultMode": 0o444}  # fmt: skip
        volumes.append({"name": model_tls.VOLUME, "secret": source})
        mounts.append(_read_only(model_tls.VOLUME, model_tls.MOUNT_DIR))
        env.append(_env("RINGKV_CACERT", model_tls.CA_FILE))
    meta = {"name": name, "namespace": namespace, "labels": dict(labels),
            "ownerReferences": [owner.reference()]}  # fmt: skip
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": 2,
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "restartPolicy": "Never",
                    "enableServiceLinks": False,
                    "containers": [
                        {
                            "name": "main",
                            "image": image,
                            "command": argv,
                            "env": env,
                            "volumeMounts": mounts,
                        }
                    ],
                    "volumes": volumes,
                },
            },
        },
    }
