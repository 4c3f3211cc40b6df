"""Pod volumes as host directories, and per-pod hosts files for headless-Service names.

Layout under the kubelet's run directory:
  volumes/<pv-name>/            PVC data (persists across pod re-creation; see provisioner)
  pods/<uid>/volumes/<name>/    emptyDir, and materialised ConfigMap/Secret files
  pods/<uid>/hosts              bind-mounted over /etc/hosts in every container of the pod
ConfigMap/Secret files are written once when the pod starts (the real kubelet refreshes them
eventually; tests that rely on the refresh need more than this harness offers).

Projected volumes (what ServiceAccount admission adds to every pod as `kube-api-access-*`,
mounted at /var/run/secrets/kubernetes.io/serviceaccount) are materialised the same way: a
`serviceAccountToken` source is a bound token from the TokenRequest API, `configMap`/`secret`
sources are files, `downwardAPI` items are resolved against the running pod. The token is not
refreshed: the apiserver extends the 3607 s tokens the admission asks for to a year
(--service-account-extend-token-expiration, on by default), far beyond any test run.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from kvharness.kubelet.envvars import UnsupportedSpec, field_ref
from kvharness.kubelet.runtime import Mount

JsonDict = dict[str, Any]
Lookup = Callable[[str], JsonDict | None]
TokenSource = Callable[[JsonDict, JsonDict], str]  # (pod, serviceAccountToken source) -> token


class NotReadyYet(Exception):
    """A volume cannot be set up yet (claim not bound); the pod stays ContainerCreating."""


def _write_files(target: Path, data: dict[str, bytes], source: JsonDict) -> None:
    target.mkdir(parents=True, exist_ok=True)
    mode = int(source.get("defaultMode", 0o644))
    items = source.get("items")
    chosen = [(i["key"], i["path"], int(i.get("mode", mode))) for i in items] if items else None
    for key, rel, file_mode in chosen or [(k, k, mode) for k in data]:
        if key not in data:
            raise UnsupportedSpec(f"key {key!r} missing for volume file {rel!r}")
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[key])
        os.chmod(path, file_mode)


def _object_data(obj: JsonDict, *, secret: bool) -> dict[str, bytes]:
    data = {
        k: (base64.b64decode(v) if secret else v.encode()) for k, v in obj.get("data", {}).items()
    }
    if not secret:
        binary = obj.get("binaryData", {})
        data.update({k: base64.b64decode(v) for k, v in binary.items()})
    return data


def _source_volume(vol: JsonDict, kind: str, lookup: Lookup, dest: Path) -> Path:
    src = vol[kind]
    name = src["name"] if kind == "configMap" else src["secretName"]
    obj = lookup(name)
    if obj is None:
        if src.get("optional"):
            dest.mkdir(parents=True, exist_ok=True)
            return dest
        raise NotReadyYet(f"{kind} {name!r} not found")
    _write_files(dest, _object_data(obj, secret=kind == "secret"), src)
    return dest


def _projected(
    pod: JsonDict, vol: JsonDict, dest: Path, *, token: TokenSource, lookups: dict[str, Lookup]
) -> Path:
    """Write every source of a projected volume into `dest` (one directory, like the kubelet)."""
    projected = vol["projected"]
    mode = int(projected.get("defaultMode", 0o644))
    dest.mkdir(parents=True, exist_ok=True)
    for src in projected.get("sources", []):
        if "serviceAccountToken" in src:
            sat = src["serviceAccountToken"]
            items = [{"key": "token", "path": sat["path"]}]
            data = {"token": token(pod, sat).encode()}
            _write_files(dest, data, {"defaultMode": mode, "items": items})
        elif "downwardAPI" in src:
            data, chosen = {}, []
            for item in src["downwardAPI"].get("items", []):
                if "fieldRef" not in item:
                    raise UnsupportedSpec(f"downwardAPI item {item['path']!r}: only fieldRef")
                data[item["path"]] = field_ref(pod, item["fieldRef"]["fieldPath"]).encode()
                chosen.append({"key": item["path"], "path": item["path"], **_mode(item)})
            _write_files(dest, data, {"defaultMode": mode, "items": chosen})
        elif "configMap" in src or "secret" in src:
            kind = "configMap" if "configMap" in src else "secret"
            inner = {"defaultMode": mode, **src[kind]}
            if kind == "secret":
                inner["secretName"] = inner["name"]
            _source_volume({kind: inner}, kind, lookups[kind], dest)
        else:
            raise UnsupportedSpec(f"projected source {sorted(src)} not supported")
    return dest


def _mode(item: JsonDict) -> JsonDict:
    return {"mode": item["mode"]} if "mode" in item else {}


def prepare(
    pod: JsonDict,
    *,
    pod_dir: Path,
    token: TokenSource,
    claim_path: Callable[[str], Path | None],
    config_maps: Lookup,
    secrets: Lookup,
) -> dict[str, Path]:
    """Host directory of every volume of the pod; raises NotReadyYet/UnsupportedSpec."""
    dirs: dict[str, Path] = {}
    for vol in pod.get("spec", {}).get("volumes", []):
        name, dest = vol["name"], pod_dir / "volumes" / vol["name"]
        if "persistentVolumeClaim" in vol:
            claim = vol["persistentVolumeClaim"]["claimName"]
            path = claim_path(claim)
            if path is None:
                raise NotReadyYet(f"PersistentVolumeClaim {claim!r} is not bound")
            dirs[name] = path
        elif "emptyDir" in vol:
            dest.mkdir(parents=True, exist_ok=True)
            dirs[name] = dest
        elif "configMap" in vol:
            dirs[name] = _source_volume(vol, "configMap", config_maps, dest)
        elif "secret" in vol:
            dirs[name] = _source_volume(vol, "secret", secrets, dest)
        elif "projected" in vol:
            lookups = {"configMap": config_maps, "secret": secrets}
            dirs[name] = _projected(pod, vol, dest, token=token, lookups=lookups)
        elif "hostPath" in vol:
            dirs[name] = Path(vol["hostPath"]["path"])
        else:
            raise UnsupportedSpec(f"volume {name!r}: type {sorted(vol)} not supported")
    return dirs


def container_mounts(container: JsonDict, dirs: dict[str, Path]) -> list[Mount]:
    """The container's volumeMounts as bind mounts (subPath creates the sub-directory)."""
    mounts = []
    for vm in container.get("volumeMounts", []):
        if vm["name"] not in dirs:
            raise UnsupportedSpec(f"volumeMount {vm['name']!r} refers to no volume")
        source = dirs[vm["name"]]
        if vm.get("subPath"):
            source = source / vm["subPath"]
            if not source.exists():
                source.mkdir(parents=True)
        mounts.append(Mount(source, vm["mountPath"], bool(vm.get("readOnly", False))))
    return mounts


def pod_fqdn(pod: JsonDict) -> tuple[str, str] | None:
    """(hostname, fqdn) for pods with hostname+subdomain (StatefulSet pods), else None."""
    spec, ns = pod.get("spec", {}), pod["metadata"]["namespace"]
    host, sub = spec.get("hostname"), spec.get("subdomain")
    if not host or not sub:
        return None
    return host, f"{host}.{sub}.{ns}.svc.cluster.local"


def hosts_content(
    pod: JsonDict,
    pod_ip: str,
    peers: Iterable[tuple[str, str, str]],
    extra: Iterable[str] = (),
) -> str:
    """/etc/hosts for a pod: localhost, itself, peer (ip, fqdn, short) records, then `extra`
    lines (client Service names, see services.py) (pure)."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    own = pod_fqdn(pod)
    if own is not None:
        lines.append(f"{pod_ip}\t{own[1]}\t{own[0]}")
    else:
        lines.append(f"{pod_ip}\t{pod['metadata']['name']}")
    lines += [f"{ip}\t{fqdn}\t{short}" for ip, fqdn, short in peers if ip != pod_ip]
    lines += extra
    return "\n".join(lines) + "\n"


def cluster_hosts(records: Iterable[tuple[str, str, str]], extra: Iterable[str] = ()) -> str:
    """/etc/hosts for host processes that must resolve pod names like pods do (pure)."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{ip}\t{fqdn}\t{short}" for ip, fqdn, short in records]
    lines += extra
    return "\n".join(lines) + "\n"


def dns_records(
    pods: Iterable[tuple[JsonDict, str, bool]], services: Lookup
) -> list[tuple[str, str, str]]:
    """Headless-Service records (ip, fqdn, hostname) the cluster DNS would serve.

    `pods` are (pod, ip, ready). A record exists when the pod's subdomain names a headless
    Service in its namespace and the pod is ready or the Service publishes not-ready addresses.
    `services` looks up "<namespace>/<name>".
    """
    records = []
    for pod, ip, ready in pods:
        names = pod_fqdn(pod)
        if names is None:
            continue
        svc = services(f"{pod['metadata']['namespace']}/{pod['spec']['subdomain']}")
        if svc is None or svc.get("spec", {}).get("clusterIP") != "None":
            continue
        if ready or svc["spec"].get("publishNotReadyAddresses"):
            records.append((ip, names[1], names[0]))
    return sorted(records)


def write_in_place(path: Path, content: str) -> bool:
    """Rewrite a bind-mounted file without replacing its inode; True if it changed."""
    if path.exists() and path.read_text() == content:
        return False
    with open(path, "w") as f:
        f.write(content)
    return True
