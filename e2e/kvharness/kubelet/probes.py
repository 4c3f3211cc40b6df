"""Readiness, liveness and startup probes: pure scheduling/threshold logic plus the three checks.

The threshold logic mirrors the kubelet's prober worker: a probe is first run
`initialDelaySeconds` after the container started, then every `periodSeconds`; the result flips
only after `successThreshold` consecutive successes or `failureThreshold` consecutive failures.
Readiness starts as failure (not ready), liveness and startup as "no verdict yet" (alive).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

JsonDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """A parsed probe with Kubernetes defaults applied."""

    kind: str  # "httpGet" | "tcpSocket" | "exec"
    action: JsonDict
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def parse(cls, probe: JsonDict | None) -> ProbeSpec | None:
        if not probe:
            return None
        kinds = [k for k in ("httpGet", "tcpSocket", "exec", "grpc") if k in probe]
        if not kinds or kinds[0] == "grpc":
            raise ValueError(f"unsupported probe handler in {sorted(probe)}")
        return cls(
            kind=kinds[0],
            action=probe[kinds[0]],
            initial_delay=float(probe.get("initialDelaySeconds", 0)),
            period=float(probe.get("periodSeconds", 10)),
            timeout=float(probe.get("timeoutSeconds", 1)),
            success_threshold=int(probe.get("successThreshold", 1)),
            failure_threshold=int(probe.get("failureThreshold", 3)),
        )


@dataclass(frozen=True, slots=True)
class ProbeState:
    """Verdict and counters of one probe of one container instance."""

    healthy: bool
    successes: int = 0
    failures: int = 0
    last_run: float | None = None


def initial_state(purpose: str) -> ProbeState:
    """Readiness starts not-ready; liveness/startup start healthy until proven otherwise."""
    return ProbeState(healthy=purpose != "readiness")


def is_due(spec: ProbeSpec, state: ProbeState, *, started_at: float, now: float) -> bool:
    """Whether the probe should run now (initial delay, then one run per period)."""
    if now < started_at + spec.initial_delay:
        return False
    return state.last_run is None or now >= state.last_run + spec.period


def advance(spec: ProbeSpec, state: ProbeState, *, ok: bool, now: float) -> ProbeState:
    """Apply one probe result; the verdict changes only when a threshold is reached."""
    if ok:
        successes, failures = state.successes + 1, 0
        healthy = state.healthy or successes >= spec.success_threshold
    else:
        successes, failures = 0, state.failures + 1
        healthy = state.healthy and failures < spec.failure_threshold
    return replace(state, healthy=healthy, successes=successes, failures=failures, last_run=now)


def resolve_port(port: int | str, container_ports: Sequence[JsonDict]) -> int:
    """Numeric port, or a named container port (`ports[].name`)."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container_ports:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"named port {port!r} not declared by the container")


def _unverified_context() -> ssl.SSLContext:
    """The kubelet's HTTPS probes skip certificate verification (Go's InsecureSkipVerify): a
    probe asks the pod's IP, which a serving certificate rarely names, signed by a CA the
    kubelet does not know. Python's default would verify both and fail every such probe."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_UNVERIFIED = _unverified_context()


def check_http(action: JsonDict, *, pod_ip: str, ports: Sequence[JsonDict], timeout: float) -> bool:
    """httpGet: any status in [200, 400) is success, like the kubelet."""
    host = action.get("host") or pod_ip
    port = resolve_port(action["port"], ports)
    conn: http.client.HTTPConnection
    if action.get("scheme") == "HTTPS":
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=_UNVERIFIED)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {h["name"]: h["value"] for h in action.get("httpHeaders", [])}
        conn.request("GET", action.get("path", "/"), headers=headers)
        return 200 <= conn.getresponse().status < 400
    except OSError:
        return False
    finally:
        conn.close()


def check_tcp(action: JsonDict, *, pod_ip: str, ports: Sequence[JsonDict], timeout: float) -> bool:
    """tcpSocket: success when a TCP connection can be opened."""
    try:
        port = resolve_port(action["port"], ports)
        with socket.create_connection((action.get("host") or pod_ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_exec(action: JsonDict, *, ns_pid: int, env: Mapping[str, str], timeout: float) -> bool:
    """exec: run the command inside the container's mount namespace; exit 0 is success."""
    argv = ["nsenter", "-t", str(ns_pid), "-m", "--", *action.get("command", [])]
    try:
        done = subprocess.run(
            argv, env=dict(env), capture_output=True, timeout=timeout, check=False
        )
    except (subprocess.TimeoutExpired, OSError):
        return False
    return done.returncode == 0
