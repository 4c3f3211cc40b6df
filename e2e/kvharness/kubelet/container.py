"""The per-container runtime record and the probing/handler half of a pod worker.

Split from podworker.py to keep modules small: `ContainerRunner` runs probes and lifecycle
handlers (httpGet, tcpSocket, exec inside the container's mount namespace, sleep) on the node's
thread pool and turns their results into readiness, startup and liveness verdicts with the pure
threshold logic of `probes`; `PodWorker` (a subclass) owns process start/exit/termination.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from kvharness.kubelet import probes, runtime
from kvharness.kubelet.images import ImageInstall
from kvharness.kubelet.status import ContainerState

log = logging.getLogger(__name__)
JsonDict = dict[str, Any]
PURPOSES = ("startup", "liveness", "readiness")


class NodeContext(Protocol):
    """What a pod worker needs from its kubelet (the consumer declares the interface)."""

    run_dir: Path
    host_ip: str
    executor: ThreadPoolExecutor
    backoff_base: float
    backoff_cap: float
    images: tuple[ImageInstall, ...]
    service_env: dict[str, str]

    def config_map(self, namespace: str, name: str) -> JsonDict | None: ...
    def secret(self, namespace: str, name: str) -> JsonDict | None: ...
    def claim_path(self, namespace: str, claim: str) -> Path | None: ...
    def event(self, pod: JsonDict, reason: str, message: str, *, warning: bool = False) -> None: ...
    def service_account_token(self, pod: JsonDict, source: JsonDict) -> str: ...


@dataclass
class Container:
    """Mutable runtime record of one container of the pod."""

    spec: JsonDict
    state: ContainerState
    popen: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    restart_at: float | None = None
    probe_specs: dict[str, probes.ProbeSpec] = field(default_factory=dict)
    probe_states: dict[str, probes.ProbeState] = field(default_factory=dict)
    pending: dict[str, Future[bool]] = field(default_factory=dict)
    kill_deadline: float | None = None
    kill_reason: str = ""


def exit_code(returncode: int) -> int:
    """Shell-style exit code: death by signal N is 128+N, as container runtimes report it."""
    return 128 - returncode if returncode < 0 else returncode


class ContainerRunner:
    """Probing and handler execution for the containers of one pod (see module docstring)."""

    pod: JsonDict
    ip: str
    name: str
    node: NodeContext

    def _probe(self, c: Container, now: float) -> None:
        assert c.state.running_since is not None
        for purpose, spec in c.probe_specs.items():
            if purpose != "startup" and not c.state.started:
                continue
            if purpose == "startup" and c.state.started:
                continue
            fut = c.pending.get(purpose)
            if fut is not None and fut.done():
                del c.pending[purpose]
                ok = bool(fut.result()) if fut.exception() is None else False
                c.probe_states[purpose] = probes.advance(
                    spec, c.probe_states[purpose], ok=ok, now=now
                )
                self._apply_probe(c, purpose, now)
            elif fut is None and probes.is_due(
                spec, c.probe_states[purpose], started_at=c.state.running_since, now=now
            ):
                c.probe_states[purpose] = replace(c.probe_states[purpose], last_run=now)
                c.pending[purpose] = self.node.executor.submit(self._check, c, spec)

    def _apply_probe(self, c: Container, purpose: str, now: float) -> None:
        healthy = c.probe_states[purpose].healthy
        if c.probe_states[purpose].failures > 0:
            msg = f"{purpose.capitalize()} probe failed for container {c.spec['name']}"
            self.node.event(self.pod, "Unhealthy", msg, warning=True)
        if purpose == "readiness":
            c.state = replace(c.state, ready=healthy)
        elif purpose == "startup" and c.probe_states[purpose].successes > 0 and healthy:
            ready = "readiness" not in c.probe_specs
            c.state = replace(c.state, started=True, ready=ready)
        if purpose in ("liveness", "startup") and not healthy and c.kill_deadline is None:
            log.warning("%s: %s probe of %s failed: killing", self.name, purpose, c.spec["name"])
            msg = f"Container {c.spec['name']} failed {purpose} probe, will be restarted"
            self.node.event(self.pod, "Killing", msg)
            c.kill_reason = "Error"
            self._signal(c, signal.SIGTERM)
            c.kill_deadline = now + self._grace()

    def _check(self, c: Container, spec: probes.ProbeSpec) -> bool:
        return self._run_action(c, spec.kind, spec.action, timeout=spec.timeout)

    def _run_action(self, c: Container, kind: str, action: JsonDict, *, timeout: float) -> bool:
        """Run a probe or lifecycle-hook handler against container `c` (in a worker thread)."""
        ports = c.spec.get("ports", [])
        if kind == "httpGet":
            return probes.check_http(action, pod_ip=self.ip, ports=ports, timeout=timeout)
        if kind == "tcpSocket":
            return probes.check_tcp(action, pod_ip=self.ip, ports=ports, timeout=timeout)
        if kind == "sleep":
            time.sleep(min(float(action.get("seconds", 0)), timeout))
            return True
        pid = c.state.pid or 0
        env = runtime.container_env(c.env, hostname=self.pod["metadata"]["name"])
        return probes.check_exec(action, ns_pid=pid, env=env, timeout=timeout)

    def _grace(self) -> float:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        return float(grace)

    @staticmethod
    def _signal(c: Container, sig: signal.Signals) -> None:
        if c.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(c.popen.pid, sig)
