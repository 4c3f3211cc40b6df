"""Container environment and command lines, with the kubelet's exact `$(VAR)` semantics.

Pure functions over pod dicts. The expansion rules are those of Kubernetes'
third_party/forked/golang/expansion: `$(NAME)` is replaced when NAME is defined, kept verbatim
otherwise; `$$` is an escaped `$`; any other `$x` is kept. Env entries may reference entries
defined earlier in the same list. Getting this wrong would let tests pass on a command line the
real kubelet would run differently, hence the unit tests.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from typing import Any

JsonDict = dict[str, Any]
Lookup = Callable[[str], JsonDict | None]

_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class UnsupportedSpec(ValueError):
    """The pod uses something the process kubelet cannot honour (reported as a pod event)."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Expand `$(VAR)` references in `text` from `env` (Kubernetes semantics)."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            read, is_var, advance = _read_variable(text[cursor + 1 :])
            if is_var:
                out.append(env.get(read, f"$({read})"))
            else:
                out.append(read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


def _read_variable(rest: str) -> tuple[str, bool, int]:
    if rest[0] == "$":
        return "$", False, 1
    if rest[0] == "(":
        close = rest.find(")", 1)
        if close >= 0:
            return rest[1:close], True, close + 1
        return "$(", False, 1
    return "$" + rest[0], False, 1


def field_ref(pod: JsonDict, path: str) -> str:
    """Resolve a downward-API `fieldRef.fieldPath` against the (running) pod."""
    meta, spec, status = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
    simple: dict[str, Any] = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs", [])),
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs", [])),
    }
    if path in simple:
        return str(simple[path] or "")
    m = _SUBSCRIPT.match(path)
    if m:
        return str(meta.get(m.group(1), {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1], {})
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise UnsupportedSpec(f"fieldRef {path!r} is not supported")


def _key_ref(ref: JsonDict, source: Lookup, kind: str) -> str | None:
    obj = source(ref["name"])
    optional = bool(ref.get("optional", False))
    if obj is None:
        if optional:
            return None
        raise UnsupportedSpec(f"{kind} {ref['name']!r} not found")
    value = _data(obj, kind).get(ref["key"])
    if value is None and not optional:
        raise UnsupportedSpec(f"key {ref['key']!r} not in {kind} {ref['name']!r}")
    return value


def _data(obj: JsonDict, kind: str) -> dict[str, str]:
    """String data of a ConfigMap or Secret (Secret values are base64 in the API)."""
    if kind == "Secret":
        data = {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}
        data.update(obj.get("stringData", {}))
        return data
    return dict(obj.get("data", {}))


def _value_from(src: JsonDict, pod: JsonDict, config_maps: Lookup, secrets: Lookup) -> str | None:
    if "fieldRef" in src:
        return field_ref(pod, src["fieldRef"]["fieldPath"])
    if "configMapKeyRef" in src:
        return _key_ref(src["configMapKeyRef"], config_maps, "ConfigMap")
    if "secretKeyRef" in src:
        return _key_ref(src["secretKeyRef"], secrets, "Secret")
    raise UnsupportedSpec(f"valueFrom {sorted(src)} is not supported")


def build_env(
    container: JsonDict,
    pod: JsonDict,
    *,
    config_maps: Lookup,
    secrets: Lookup,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The container's environment: `base` (the kubelet's service variables such as
    KUBERNETES_SERVICE_HOST), then envFrom, then env in order, each value expanded."""
    env: dict[str, str] = dict(base or {})
    for src in container.get("envFrom", []):
        prefix = src.get("prefix", "")
        ref = src.get("configMapRef") or src.get("secretRef") or {}
        kind = "ConfigMap" if "configMapRef" in src else "Secret"
        obj = (config_maps if kind == "ConfigMap" else secrets)(ref["name"])
        if obj is None:
            if ref.get("optional"):
                continue
            raise UnsupportedSpec(f"{kind} {ref['name']!r} not found")
        env.update({prefix + k: v for k, v in _data(obj, kind).items()})
    for item in container.get("env", []):
        if "valueFrom" in item:
            value = _value_from(item["valueFrom"], pod, config_maps, secrets)
            if value is not None:
                env[item["name"]] = value
        else:
            env[item["name"]] = expand(item.get("value", ""), env)
    return env
