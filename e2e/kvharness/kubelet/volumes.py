"""Pod volumes as host directories, and per-pod hosts files for headless-Service names.

Layout under the kubelet's run directory:
  volumes/<pv-name>/            PVC data (persists across pod re-creation; see provisioner)
  pods/<uid>/volumes/<name>/    emptyDir, and materialised ConfigMap/Secret files
  pods/<uid>/hosts              bind-mounted over /etc/hosts in every container of the pod
ConfigMap/Secret files are laid out as the real kubelet's AtomicWriter does: the files live in
a timestamped directory `..<time>.<random>/`, `..data` is a symlink to it, and every top-level
name is a symlink `<name> -> ..data/<name>`. An update writes a new timestamped directory and
renames a new `..data` symlink over the old one, so a reader sees either the whole old set or
the whole new set (a certificate never pairs with another version's key). `refresh` re-reads
the objects of a running pod's configMap/secret volumes and swaps in changed content (the pod
worker calls it periodically, like the kubelet's resync); a deleted object keeps the last
content, as with the kubelet. Projected volumes are written the same way but not refreshed.

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
import shutil
import tempfile
import time
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


Payload = dict[str, tuple[bytes, int]]  # relative path -> (content, mode)
DATA_LINK = "..data"


def _payload(data: dict[str, bytes], source: JsonDict) -> Payload:
    """The files a volume source projects (``items`` pick and rename keys; modes applied)."""
    mode = int(source.get("defaultMode", 0o644))
    items = source.get("items")
    chosen = [(i["key"], i["path"], int(i.get("mode", mode))) for i in items] if items else None
    out: Payload = {}
    for key, rel, file_mode in chosen or [(k, k, mode) for k in data]:
        if key not in data:
            raise UnsupportedSpec(f"key {key!r} missing for volume file {rel!r}")
        out[rel] = (data[key], file_mode)
    return out


def _current(target: Path) -> Payload | None:
    """What ``..data`` holds now (None before the first write)."""
    data_dir = target / DATA_LINK
    if not data_dir.is_dir():
        return None
    out: Payload = {}
    for path in data_dir.rglob("*"):
        if path.is_file():
            out[str(path.relative_to(data_dir))] = (path.read_bytes(), path.stat().st_mode & 0o777)
    return out


def write_atomic(target: Path, payload: Payload) -> bool:
    """Make ``target`` hold exactly ``payload`` (AtomicWriter layout, see the module
    docstring); False when it already did (nothing written)."""
    target.mkdir(parents=True, exist_ok=True)
    if _current(target) == payload:
        return False
    stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
    version = Path(tempfile.mkdtemp(prefix=f"..{stamp}.", dir=target))
    os.chmod(version, 0o755)
    for rel, (content, mode) in payload.items():
        path = version / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        os.chmod(path, mode)
    tmp = target / f"{DATA_LINK}_tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(version.name, tmp)
    os.replace(tmp, target / DATA_LINK)  # the atomic switch
    top = {rel.split("/", 1)[0] for rel in payload}
    for name in top:
        link = target / name
        if not link.is_symlink():
            if link.is_dir():  # a plain copy from before this layout (a reused run directory)
                shutil.rmtree(link)
            link.unlink(missing_ok=True)
            os.symlink(f"{DATA_LINK}/{name}", link)
    for entry in target.iterdir():
        if entry.name.startswith(".."):
            if entry.name not in (DATA_LINK, version.name) and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)  # an older version
        elif entry.is_symlink() and entry.name not in top:
            entry.unlink()  # a key the object no longer has
    return True


def _object_data(obj: JsonDict, *, secret: bool) -> dict[str, bytes]:
    data = {
        k: (base64.b64decode(v) if secret else v.encode()) for k, v in obj.get("data", {}).items()
    }
    if not secret:
        binary = obj.get("binaryData", {})
        data.update({k: base64.b64decode(v) for k, v in binary.items()})
    return data


def _source_payload(src: JsonDict, kind: str, lookup: Lookup) -> Payload | None:
    """A configMap/secret source's files; None when the object is absent."""
    name = src["name"] if kind == "configMap" else src["secretName"]
    obj = lookup(name)
    if obj is None:
        return None
    return _payload(_object_data(obj, secret=kind == "secret"), src)


def _source_volume(vol: JsonDict, kind: str, lookup: Lookup, dest: Path) -> Path:
    src = vol[kind]
    payload = _source_payload(src, kind, lookup)
    if payload is None:
        if not src.get("optional"):
            raise NotReadyYet(f"{kind} {src.get('name') or src.get('secretName')!r} not found")
        payload = {}
    write_atomic(dest, payload)
    return dest


def refresh(
    pod: JsonDict, dirs: dict[str, Path], *, config_maps: Lookup, secrets: Lookup
) -> list[str]:
    """Swap in the current content of a running pod's configMap/secret volumes; the names of
    the volumes that changed. An object that is gone now keeps its last content."""
    changed = []
    lookups = {"configMap": config_maps, "secret": secrets}
    for vol in pod.get("spec", {}).get("volumes", []):
        kind = next((k for k in lookups if k in vol), None)
        if kind is None or vol["name"] not in dirs:
            continue
        payload = _source_payload(vol[kind], kind, lookups[kind])
        if payload is not None and write_atomic(dirs[vol["name"]], payload):
            changed.append(vol["name"])
    return changed


def _projected(
    pod: JsonDict, vol: JsonDict, dest: Path, *, token: TokenSource, lookups: dict[str, Lookup]
) -> Path:
    """Write every source of a projected volume into `dest` (one directory, like the kubelet)."""
    projected = vol["projected"]
    mode = int(projected.get("defaultMode", 0o644))
    payload: Payload = {}
    for src in projected.get("sources", []):
        if "serviceAccountToken" in src:
            sat = src["serviceAccountToken"]
            items = [{"key": "token", "path": sat["path"]}]
            data = {"token": token(pod, sat).encode()}
            payload.update(_payload(data, {"defaultMode": mode, "items": items}))
        elif "downwardAPI" in src:
            data, chosen = {}, []
            for item in src["downwardAPI"].get("items", []):
                if "fieldRef" not in item:
                    raise UnsupportedSpec(f"downwardAPI item {item['path']!r}: only fieldRef")
                data[item["path"]] = field_ref(pod, item["fieldRef"]["fieldPath"]).encode()
                chosen.append({"key": item["path"], "path": item["path"], **_mode(item)})
            payload.update(_payload(data, {"defaultMode": mode, "items": chosen}))
        elif "configMap" in src or "secret" in src:
            kind = "configMap" if "configMap" in src else "secret"
            inner = {"defaultMode": mode, **src[kind]}
            if kind == "secret":
                inner["secretName"] = inner["name"]
            files = _source_payload(inner, kind, lookups[kind])
            if files is None and not inner.get("optional"):
                raise NotReadyYet(f"{kind} {inner['name']!r} not found")
            payload.update(files or {})
        else:
            raise UnsupportedSpec(f"projected source {sorted(src)} not supported")
    write_atomic(dest, payload)
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
