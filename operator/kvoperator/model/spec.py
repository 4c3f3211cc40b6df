"""``ClusterSpec``: a KVCluster's ``spec`` parsed into a frozen value, defaults applied.

The CRD's structural schema (``crds/ringkv.io_kvclusters.yaml``) already rejects most bad specs
at the API server; this parser is the second line (an operator may meet objects written before a
schema change, or a schema without defaults) and names every problem by its field path, all at
once, so a user fixes them in one go. ``DEFAULTS`` is the single source of default values; a
unit test checks that the CRD's defaults equal it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

MAX_PARTITIONS = 1024  # Raft ports are raft_port_base + p: keep them below the ephemeral range
MAX_REPLICATION = 7
DEFAULT_ZONE_LABEL = "topology.kubernetes.io/zone"
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$")

DEFAULTS: dict[str, Any] = {
    "replicas": 3,
    "partitions": 16,
    "replicationFactor": 3,
    "durability": "process",
    "paused": False,
    "storage.size": "1Gi",
    "storage.reclaimPolicy": "retain",
    "scheduling.zoneLabel": DEFAULT_ZONE_LABEL,
    "auth.metrics": "open",
    "replacement.after": "10m",
    "replacement.maxConcurrent": 2,
}
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class SpecError(ValueError):
    """The spec is invalid; ``problems`` lists one readable message per bad field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid KVCluster spec: " + "; ".join(problems))
        self.problems = tuple(problems)


class ReclaimPolicy(StrEnum):
    """What happens to a removed ordinal's volume once its data has moved off it."""

    RETAIN = "retain"
    DELETE = "delete"


class Durability(StrEnum):
    PROCESS = "process"
    FSYNC = "fsync"


class AuthMetrics(StrEnum):
    OPEN = "open"  # /metrics needs no token
    TOKEN = "token"  # any valid token


@dataclass(frozen=True, slots=True)
class AuthSpec:
    """Bearer-token auth from a Secret (``kvoperator.model.auth`` says what it holds)."""

    secret_name: str
    metrics: AuthMetrics = AuthMetrics.OPEN


@dataclass(frozen=True, slots=True)
class TlsSpec:
    """HTTPS between everyone and the nodes, from a Secret (``kvoperator.model.tls`` says what
    it holds), and Raft traffic encrypted with an operator-made password. Immutable: a cluster
    cannot switch TLS on or off while running (HTTP and Raft would split mid-roll)."""

    secret_name: str


@dataclass(frozen=True, slots=True)
class StorageSpec:
    size: str = DEFAULTS["storage.size"]
    storage_class_name: str | None = None
    reclaim_policy: ReclaimPolicy = ReclaimPolicy.RETAIN


@dataclass(frozen=True, slots=True)
class SchedulingSpec:
    """Passed through to the pod template as given (the API server validated their shape)."""

    affinity: Mapping[str, Any] | None = None
    tolerations: tuple[Mapping[str, Any], ...] = ()
    topology_spread_constraints: tuple[Mapping[str, Any], ...] = ()
    zone_label: str = DEFAULT_ZONE_LABEL


@dataclass(frozen=True, slots=True)
class ReplacementSpec:
    """Automatic replica replacement (issue 11). ``after_s``: a member away (pod missing or not
    ready) this long has its replicas re-placed on the others; ``max_concurrent``: replicas
    being replaced (reseeded or re-placed) at once, cluster-wide."""

    after_s: float = 600.0
    max_concurrent: int = DEFAULTS["replacement.maxConcurrent"]


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    replicas: int = DEFAULTS["replicas"]
    partitions: int = DEFAULTS["partitions"]
    replication_factor: int = DEFAULTS["replicationFactor"]
    image: str = ""
    resources: Mapping[str, Any] = field(default_factory=dict)
    storage: StorageSpec = StorageSpec()
    durability: Durability = Durability.PROCESS
    paused: bool = False
    scheduling: SchedulingSpec = SchedulingSpec()
    auth: AuthSpec | None = None
    """None: authentication is off (anyone who reaches a node may do anything)."""
    tls: TlsSpec | None = None
    """None: plain HTTP and unencrypted Raft traffic."""
    restore_from: str | None = None
    """Name of the KVClusterBackup to restore at bootstrap (``spec.restoreFrom.backup``)."""
    replacement: ReplacementSpec = ReplacementSpec()


class _Reader:
    """Reads typed fields out of a JSON mapping, collecting problems instead of stopping."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems

    def obj(self, d: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        v = d.get(key)
        if v is None:
            return {}
        if not isinstance(v, Mapping):
            self.problems.append(f"{path}.{key}: must be an object, got {type(v).__name__}")
            return {}
        return v

    def int_(self, d: Mapping[str, Any], key: str, path: str, *, lo: int, hi: int) -> int:
        default = DEFAULTS[_dkey(path, key)]
        v = d.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int):
            self.problems.append(f"{path}.{key}: must be an integer, got {v!r}")
            return int(default)
        if not lo <= v <= hi:
            self.problems.append(f"{path}.{key}: must be between {lo} and {hi}, got {v}")
        return v

    def str_(self, d: Mapping[str, Any], key: str, path: str, default: str | None) -> str | None:
        v = d.get(key, default)
        if v is not None and not isinstance(v, str):
            self.problems.append(f"{path}.{key}: must be a string, got {v!r}")
            return default
        return v

    def enum(self, d: Mapping[str, Any], key: str, path: str, kind: type[StrEnum]) -> Any:
        default = DEFAULTS[_dkey(path, key)]
        v = d.get(key, default)
        try:
            return kind(v)
        except ValueError:
            allowed = ", ".join(m.value for m in kind)
            self.problems.append(f"{path}.{key}: must be one of {allowed}, got {v!r}")
            return kind(default)

    def list_(self, d: Mapping[str, Any], key: str, path: str) -> tuple[Mapping[str, Any], ...]:
        v = d.get(key) or []
        if not isinstance(v, list) or not all(isinstance(x, Mapping) for x in v):
            self.problems.append(f"{path}.{key}: must be a list of objects")
            return ()
        return tuple(v)


def _dkey(path: str, key: str) -> str:
    return key if path == "spec" else f"{path.removeprefix('spec.')}.{key}"


def parse_spec(raw: Mapping[str, Any] | None, *, default_image: str) -> ClusterSpec:
    """Parse ``.spec`` of a KVCluster; raise ``SpecError`` naming every bad field."""
    d: Mapping[str, Any] = raw or {}
    problems: list[str] = []
    r = _Reader(problems)
    replicas = r.int_(d, "replicas", "spec", lo=1, hi=1000)
    partitions = r.int_(d, "partitions", "spec", lo=1, hi=MAX_PARTITIONS)
    rf = r.int_(d, "replicationFactor", "spec", lo=1, hi=MAX_REPLICATION)
    if not problems and replicas < rf:
        problems.append(
            f"spec.replicas: {replicas} is below spec.replicationFactor {rf}: every partition "
            f"needs {rf} distinct nodes"
        )
    image = r.str_(d, "image", "spec", None) or default_image
    if not image:
        problems.append("spec.image: not set and the operator has no default node image")
    paused = d.get("paused", False)
    if not isinstance(paused, bool):
        problems.append(f"spec.paused: must be true or false, got {paused!r}")
        paused = False
    spec = ClusterSpec(
        replicas=replicas,
        partitions=partitions,
        replication_factor=rf,
        image=image,
        resources=r.obj(d, "resources", "spec"),
        storage=_storage(r, r.obj(d, "storage", "spec")),
        durability=r.enum(d, "durability", "spec", Durability),
        paused=paused,
        scheduling=_scheduling(r, r.obj(d, "scheduling", "spec")),
        auth=_auth(r, d),
        tls=_tls(r, d),
        restore_from=r.str_(r.obj(d, "restoreFrom", "spec"), "backup", "spec.restoreFrom", None),
        replacement=_replacement(r, r.obj(d, "replacement", "spec")),
    )
    if problems:
        raise SpecError(problems)
    return spec


def _storage(r: _Reader, d: Mapping[str, Any]) -> StorageSpec:
    size = r.str_(d, "size", "spec.storage", DEFAULTS["storage.size"]) or ""
    if not _QUANTITY.match(size):
        r.problems.append(f"spec.storage.size: {size!r} is not a quantity such as 1Gi or 500Mi")
    return StorageSpec(
        size=size,
        storage_class_name=r.str_(d, "storageClassName", "spec.storage", None),
        reclaim_policy=r.enum(d, "reclaimPolicy", "spec.storage", ReclaimPolicy),
    )


def _scheduling(r: _Reader, d: Mapping[str, Any]) -> SchedulingSpec:
    affinity = r.obj(d, "affinity", "spec.scheduling")
    label = r.str_(d, "zoneLabel", "spec.scheduling", DEFAULT_ZONE_LABEL) or DEFAULT_ZONE_LABEL
    return SchedulingSpec(
        affinity=affinity or None,
        tolerations=r.list_(d, "tolerations", "spec.scheduling"),
        topology_spread_constraints=r.list_(d, "topologySpreadConstraints", "spec.scheduling"),
        zone_label=label,
    )


def _auth(r: _Reader, d: Mapping[str, Any]) -> AuthSpec | None:
    if d.get("auth") is None:
        return None
    raw = r.obj(d, "auth", "spec")
    name = r.str_(raw, "secretName", "spec.auth", None)
    if not name:
        r.problems.append("spec.auth.secretName: the Secret holding the tokens must be named")
    return AuthSpec(
        secret_name=name or "", metrics=r.enum(raw, "metrics", "spec.auth", AuthMetrics)
    )


def _tls(r: _Reader, d: Mapping[str, Any]) -> TlsSpec | None:
    if d.get("tls") is None:
        return None
    name = r.str_(r.obj(d, "tls", "spec"), "secretName", "spec.tls", None)
    if not name:
        r.problems.append("spec.tls.secretName: the Secret holding the certificate must be named")
    return TlsSpec(secret_name=name or "")


def parse_duration(text: str) -> float | None:
    """``1h30m``, ``10m``, ``45s`` (a Go-style duration, whole units) in seconds; None if not
    one."""
    m = _DURATION.match(text)
    if m is None or not text:
        return None
    h, mi, se = (int(x or 0) for x in m.groups())
    return float(h * 3600 + mi * 60 + se)


def _replacement(r: _Reader, d: Mapping[str, Any]) -> ReplacementSpec:
    path = "spec.replacement"
    raw = r.str_(d, "after", path, DEFAULTS["replacement.after"]) or ""
    after = parse_duration(raw)
    if after is None or after <= 0:
        r.problems.append(f"{path}.after: {raw!r} is not a positive duration such as 10m or 90s")
        after = 600.0
    cap = r.int_(d, "maxConcurrent", path, lo=1, hi=MAX_PARTITIONS)
    return ReplacementSpec(after_s=after, max_concurrent=cap)
