"""One pod's lifecycle on the process kubelet: volumes, container processes, probes, restarts,
graceful termination.

`PodWorker.sync` is called on every kubelet tick with the latest pod object and never blocks for
long: probes run on a thread pool and their results are collected on later ticks, termination
is a deadline checked each tick. Decisions (restart or not, back-off, probe thresholds, phase)
are the pure functions of `status` and `probes`; this module only applies them to processes.
"""

from __future__ import annotations

import logging
import shlex
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

from kvharness import procs
from kvharness.kube import ApiError
from kvharness.kubelet import envvars, images, probes, runtime, volumes
from kvharness.kubelet.container import (
    PURPOSES,
    Container,
    ContainerRunner,
    NodeContext,
    exit_code,
)
from kvharness.kubelet.status import ContainerState, Terminated, backoff_delay, should_restart
from kvharness.kubelet.status import pod_status as build_pod_status

log = logging.getLogger(__name__)
JsonDict = dict[str, Any]
# How often a running pod's configMap/secret volumes are re-read (the real kubelet: its sync
# period, 1 min, plus the cache TTL; shorter here so rotation tests stay fast).
VOLUME_RESYNC_S = 2.0


class PodWorker(ContainerRunner):
    """Runs one pod (identified by uid) until it is deleted."""

    def __init__(self, pod: JsonDict, *, ip: str, node: NodeContext, now: float) -> None:
        self.pod = pod
        self.ip = ip
        self.node = node
        self.uid: str = pod["metadata"]["uid"]
        self.name = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        self.dir = node.run_dir / "pods" / self.uid
        self.hosts_file = self.dir / "hosts"
        self.start_time = now
        self.volume_dirs: dict[str, Path] | None = None
        self.volumes_synced_at = now
        self.term_deadline: float | None = None
        self.containers = [
            Container(spec=c, state=ContainerState(name=c["name"], image=c.get("image", "")))
            for c in pod["spec"]["containers"]
        ]
        self.init_containers = [
            Container(spec=c, state=ContainerState(name=c["name"], image=c.get("image", "")))
            for c in pod["spec"].get("initContainers", [])
        ]
        self.dir.mkdir(parents=True, exist_ok=True)
        volumes.write_in_place(self.hosts_file, volumes.hosts_content(pod, ip, []))

    # ---- main entry -------------------------------------------------------------------
    def sync(self, pod: JsonDict, now: float) -> None:
        """Advance the pod one step towards its spec (or towards termination)."""
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp") or self.term_deadline is not None:
            self._terminate(now)
            return
        if self.volume_dirs is None and not self._setup_volumes():
            return
        if now - self.volumes_synced_at >= VOLUME_RESYNC_S:
            self._refresh_volumes(now)
        if not self._sync_init(now):
            return
        for c in self.containers:
            self._sync_container(c, now)

    def _sync_init(self, now: float) -> bool:
        """Run init containers one at a time, in order; True once all have succeeded."""
        for c in self.init_containers:
            done = c.state.terminated
            if done is not None and done.exit_code == 0 and c.popen is None:
                continue
            self._sync_container(c, now)
            return False
        return True

    @property
    def all_containers(self) -> list[Container]:
        return [*self.init_containers, *self.containers]

    def _policy(self, c: Container) -> str:
        """The pod's restartPolicy; init containers treat Always as OnFailure."""
        policy = str(self.pod["spec"].get("restartPolicy", "Always"))
        is_init = any(c is i for i in self.init_containers)
        return "OnFailure" if is_init and policy == "Always" else policy

    def status(self, now: float) -> JsonDict:
        return build_pod_status(
            self.pod_view(),
            [c.state for c in self.containers],
            init_containers=[c.state for c in self.init_containers],
            pod_ip=self.ip,
            host_ip=self.node.host_ip,
            start_time=self.start_time,
            now=now,
        )

    def pod_view(self) -> JsonDict:
        """The pod as its containers see it (podIP/hostIP known before the API has them)."""
        status = {**self.pod.get("status", {}), "podIP": self.ip, "hostIP": self.node.host_ip}
        status["podIPs"], status["hostIPs"] = [{"ip": self.ip}], [{"ip": self.node.host_ip}]
        return {**self.pod, "status": status}

    def ready(self) -> bool:
        return all(c.state.ready for c in self.containers)

    def finished(self) -> bool:
        """True once termination was requested and every process is gone."""
        return self.term_deadline is not None and all(c.popen is None for c in self.all_containers)

    # ---- volumes ----------------------------------------------------------------------
    def _setup_volumes(self) -> bool:
        ns = self.pod["metadata"]["namespace"]
        try:
            self.volume_dirs = volumes.prepare(
                self.pod_view(),
                pod_dir=self.dir,
                token=self.node.service_account_token,
                claim_path=lambda claim: self.node.claim_path(ns, claim),
                config_maps=lambda name: self.node.config_map(ns, name),
                secrets=lambda name: self.node.secret(ns, name),
            )
            return True
        except (volumes.NotReadyYet, envvars.UnsupportedSpec) as exc:
            for c in self.containers:
                c.state = replace(
                    c.state, waiting_reason="ContainerCreating", waiting_message=str(exc)
                )
            return False

    def _refresh_volumes(self, now: float) -> None:
        """Swap changed ConfigMap/Secret content into the running pod's volumes (atomic)."""
        self.volumes_synced_at = now
        ns = self.pod["metadata"]["namespace"]
        try:
            changed = volumes.refresh(
                self.pod,
                self.volume_dirs or {},
                config_maps=lambda name: self.node.config_map(ns, name),
                secrets=lambda name: self.node.secret(ns, name),
            )
        except (OSError, ApiError, envvars.UnsupportedSpec) as exc:  # the next resync retries
            log.warning("%s: volume refresh failed: %s", self.name, exc)
            return
        if changed:
            log.info("%s: updated volume(s) %s", self.name, ", ".join(changed))

    # ---- containers -------------------------------------------------------------------
    def _sync_container(self, c: Container, now: float) -> None:
        if c.popen is not None:
            returncode = c.popen.poll()
            if returncode is None:
                self._probe(c, now)
                self._enforce_kill(c, now)
                return
            self._exited(c, exit_code(returncode), now)
        never_ran = c.state.running_since is None and c.state.terminated is None
        if (never_ran and c.state.last_terminated is None) or (
            c.restart_at is not None and now >= c.restart_at
        ):
            self._start(c, now)

    def _start(self, c: Container, now: float) -> None:
        ns, pod_name = self.pod["metadata"]["namespace"], self.pod["metadata"]["name"]
        view = self.pod_view()
        try:
            install = images.resolve(self.node.images, c.spec.get("image", ""))
            kube_env = envvars.build_env(
                c.spec,
                view,
                config_maps=lambda n: self.node.config_map(ns, n),
                secrets=lambda n: self.node.secret(ns, n),
                base=self.node.service_env,
            )
            argv = images.command_line(c.spec, install, kube_env)
            env = {**install.environment(), **kube_env}
            mounts = volumes.container_mounts(c.spec, self.volume_dirs or {})
            specs = {p: probes.ProbeSpec.parse(c.spec.get(f"{p}Probe")) for p in PURPOSES}
        except (envvars.UnsupportedSpec, ValueError) as exc:
            c.state = replace(
                c.state, waiting_reason="CreateContainerConfigError", waiting_message=str(exc)
            )
            self.node.event(self.pod, "Failed", f"Error: {exc}", warning=True)
            c.restart_at = now + 1.0
            return
        hostname = (self.pod["spec"].get("hostname") or pod_name)[:63]  # kubelet truncates too
        c.popen = runtime.launch(
            argv,
            env=env,
            mounts=mounts,
            hosts_file=self.hosts_file,
            hostname=hostname,
            workdir=c.spec.get("workingDir") or install.working_dir,
            log_path=self.node.run_dir / "logs" / "pods" / f"{ns}_{pod_name}_{c.spec['name']}.log",
            mount_point_record=self.node.run_dir / "mount-points",
        )
        runtime.record_pid(self.node.run_dir / "pids", c.popen.pid)
        c.env = env
        self._mark_running(c, specs, now)
        self.node.event(self.pod, "Started", f"Started container {c.spec['name']}")
        log.info(
            "%s: started container %s pid=%d: %.150s",
            self.name, c.spec["name"], c.popen.pid, shlex.join(argv),
        )  # fmt: skip

    @staticmethod
    def _mark_running(c: Container, specs: dict[str, probes.ProbeSpec | None], now: float) -> None:
        """Record a fresh run: restart count, lastState, probe state reset, initial verdicts."""
        assert c.popen is not None
        restarted = c.state.terminated is not None or c.state.last_terminated is not None
        c.restart_at, c.kill_deadline, c.kill_reason = None, None, ""
        c.probe_specs = {p: s for p, s in specs.items() if s is not None}
        c.probe_states = {p: probes.initial_state(p) for p in c.probe_specs}
        c.pending.clear()
        c.state = replace(
            c.state,
            running_since=now,
            pid=c.popen.pid,
            terminated=None,
            last_terminated=c.state.terminated or c.state.last_terminated,
            restart_count=c.state.restart_count + (1 if restarted else 0),
            waiting_reason="",
            waiting_message="",
            started="startup" not in c.probe_specs,
            ready="readiness" not in c.probe_specs and "startup" not in c.probe_specs,
        )

    def _exited(self, c: Container, code: int, now: float) -> None:
        assert c.popen is not None
        assert c.state.running_since is not None
        runtime.forget_pid(self.node.run_dir / "pids", c.popen.pid)
        done = Terminated(
            code, c.state.running_since, now, reason=c.kill_reason,
            container_id=c.state.container_id,
        )  # fmt: skip
        log.info("%s: container %s exited with %d", self.name, c.spec["name"], code)
        c.popen = None
        c.pending.clear()
        c.state = replace(c.state, running_since=None, terminated=done, ready=False, started=False)
        policy = self._policy(c)
        if self.term_deadline is None and (should_restart(policy, code) or c.kill_reason):
            if policy == "Never":
                return
            delay = backoff_delay(
                c.state.restart_count, base=self.node.backoff_base, cap=self.node.backoff_cap
            )
            c.restart_at = now + delay
            if delay > 0:
                c.state = replace(
                    c.state, terminated=None, last_terminated=done,
                    waiting_reason="CrashLoopBackOff",
                    waiting_message=f"back-off {delay:.0f}s restarting failed container",
                )  # fmt: skip
                self.node.event(
                    self.pod, "BackOff", f"Back-off restarting failed container {c.spec['name']}",
                    warning=True,
                )  # fmt: skip

    # ---- termination ------------------------------------------------------------------
    def _terminate(self, now: float) -> None:
        if self.term_deadline is None:
            self.term_deadline = now + self._grace()
            log.info("%s: terminating, grace %.0fs", self.name, self._grace())
            self.node.event(self.pod, "Killing", f"Stopping pod (grace {self._grace():.0f}s)")
            for c in self.all_containers:
                self._begin_stop(c, now)
        for c in self.all_containers:
            if c.popen is None:
                continue
            hook = c.pending.get("preStop")
            if hook is not None and (hook.done() or now >= self.term_deadline):
                del c.pending["preStop"]
                self._signal(c, signal.SIGTERM)
            returncode = c.popen.poll()
            if returncode is not None:
                self._exited(c, exit_code(returncode), now)
            elif now >= self.term_deadline:
                log.warning("%s: %s outlived its grace period: SIGKILL", self.name, c.spec["name"])
                self._signal(c, signal.SIGKILL)

    def _begin_stop(self, c: Container, now: float) -> None:
        """Run the preStop hook (SIGTERM follows when it ends) or send SIGTERM right away."""
        c.pending.clear()
        hook = c.spec.get("lifecycle", {}).get("preStop")
        if c.popen is None or not hook:
            self._signal(c, signal.SIGTERM)
            return
        kind = next((k for k in ("exec", "httpGet", "sleep", "tcpSocket") if k in hook), "")
        remaining = max(0.0, (self.term_deadline or now) - now)
        c.pending["preStop"] = self.node.executor.submit(
            self._run_action, c, kind, hook.get(kind, {}), timeout=remaining
        )

    def _enforce_kill(self, c: Container, now: float) -> None:
        if c.kill_deadline is not None and now >= c.kill_deadline:
            self._signal(c, signal.SIGKILL)

    def signal_all(self, sig: signal.Signals) -> None:
        """Signal every running container (lets a kubelet stop all pods concurrently)."""
        for c in self.all_containers:
            self._signal(c, sig)

    def kill_now(self, grace: float = 2.0) -> None:
        """Stop every process immediately (kubelet shutdown, or pod force-deleted)."""
        for c in self.all_containers:
            if c.popen is not None:
                procs.kill_group(c.popen.pid, grace=grace, waiter=c.popen.wait)
                runtime.forget_pid(self.node.run_dir / "pids", c.popen.pid)
                c.popen = None
