"""Client Service names without kube-proxy or cluster DNS: hosts-file records to one ready pod.

A real cluster resolves `<svc>.<ns>.svc.cluster.local` to the Service's ClusterIP and kube-proxy
spreads connections over the ready endpoints. Here nothing routes ClusterIPs, so for every
Service with a selector (not headless) the kubelet's hosts files map the Service's names to the
IP of ONE ready, non-terminating pod the selector matches (the first by name, so the choice is
stable), and drop the names while no pod is ready. The files are rewritten every kubelet tick,
so a name follows readiness within a tick (~0.3 s) plus the client's own DNS cache.

Limits (documented in e2e/DESIGN.md): no load spreading (one pod gets all new connections);
the Service `port` is not translated to `targetPort`, so clients must connect on the container
port, i.e. Services the product writes must use port == targetPort to be reachable here; no
ClusterIP, NodePort or ExternalName semantics; the bare `<svc>` name resolves only inside pods
of the Service's own namespace (as with the cluster DNS search path).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

JsonDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """`name` resolves to `ip` (a ready pod of Service `name` in `namespace`)."""

    ip: str
    name: str
    namespace: str

    def names(self, *, local: bool) -> list[str]:
        """The Service's DNS names; `local` adds the bare name (same-namespace pods)."""
        base = f"{self.name}.{self.namespace}"
        names = [f"{base}.svc.cluster.local", f"{base}.svc", base]
        return [*names, self.name] if local else names


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def service_records(
    pods: Iterable[tuple[JsonDict, str, bool]], services: Iterable[JsonDict]
) -> list[ServiceRecord]:
    """One record per selector Service with a ready pod; `pods` are (pod, ip, ready) (pure)."""
    ready = sorted(
        ((p["metadata"]["namespace"], p["metadata"]["name"], p, ip) for p, ip, ok in pods
         if ok and not p["metadata"].get("deletionTimestamp")),
        key=lambda t: (t[0], t[1]),
    )  # fmt: skip
    records = []
    for svc in services:
        spec, meta = svc.get("spec", {}), svc["metadata"]
        selector = spec.get("selector")
        if not selector or spec.get("clusterIP") == "None" or spec.get("type") == "ExternalName":
            continue
        for ns, _name, pod, ip in ready:
            labels = pod["metadata"].get("labels", {})
            if ns == meta["namespace"] and _selects(selector, labels):
                records.append(ServiceRecord(ip, meta["name"], ns))
                break
    return sorted(records, key=lambda r: (r.namespace, r.name))


def hosts_lines(records: Iterable[ServiceRecord], namespace: str | None) -> list[str]:
    """Hosts-file lines for a pod in `namespace` (None: a host process, no bare names)."""
    return [f"{r.ip}\t" + "\t".join(r.names(local=r.namespace == namespace)) for r in records]
