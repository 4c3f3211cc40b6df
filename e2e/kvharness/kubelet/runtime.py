"""Running one container as a local process in its own mount and UTS namespace.

Each container process is started as `unshare --mount --uts --propagation private sh -c SCRIPT`:
the script bind-mounts the pod's volume directories at their `mountPath`s and the pod's hosts file
over /etc/hosts, sets the hostname to the pod's, changes to `workingDir`, then `exec`s the
command, so the command's pid is the process we track and `nsenter -t <pid> -m` reaches its
mounts (exec probes). Mount points that do not exist on the host are created there (empty
directories/files); the bind mounts themselves are private to the container. This needs root,
which the CI machines and sandboxes have. Each process leads its own session so stopping it stops
everything it spawned.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True, slots=True)
class Mount:
    """A host path bind-mounted at `target` inside the container."""

    source: Path
    target: str
    read_only: bool = False


STAGING = "/.ringkv-e2e-staging"


def mount_script(mounts: Sequence[Mount], *, hosts_file: Path, hostname: str, workdir: str) -> str:
    """The shell prologue run inside the new namespaces before exec'ing the command (pure).

    Two phases, because a mount can hide the source of another: a pod that mounts an emptyDir
    at /tmp would cover the kubelet's run directory (under /tmp in tests) before its token
    volume or hosts file is bound from there. So every source is first bound into a private
    tmpfs at STAGING (a path no container mounts over), then the staged copies are bound onto
    their targets, parents before children, and the staging tmpfs is detached. The empty
    STAGING directory stays on the host: removing it while another cluster's kubelet starts a
    container would race.
    """
    stage = shlex.quote(STAGING)
    lines = ["set -e", f"mkdir -p {stage}"]
    lines.append(f"mount -t tmpfs -o size=1m,mode=0700 ringkv-staging {stage}")
    ordered = sorted(mounts, key=lambda m: m.target.count("/"))
    sources = [(str(i), m.source, m.source.is_dir()) for i, m in enumerate(ordered)]
    for name, source, is_dir in [*sources, ("hosts", hosts_file, False)]:
        staged = f"{stage}/{name}"
        lines.append(f"mkdir {staged}" if is_dir else f": > {staged}")
        lines.append(f"mount --bind {shlex.quote(str(source))} {staged}")
    for (name, _, is_dir), m in zip(sources, ordered, strict=True):
        dst = shlex.quote(m.target)
        if is_dir:
            lines.append(f"mkdir -p {dst}")
        else:
            lines.append(f"mkdir -p $(dirname {dst}); [ -e {dst} ] || : > {dst}")
        lines.append(f"mount --bind {stage}/{name} {dst}")
        if m.read_only:
            lines.append(f"mount -o remount,bind,ro {dst}")
    lines.append(f"mount --bind {stage}/hosts /etc/hosts")
    lines.append(f"umount -l {stage}")
    lines.append(f"hostname {shlex.quote(hostname)}")
    if workdir:
        lines.append(f"mkdir -p {shlex.quote(workdir)} && cd {shlex.quote(workdir)}")
    lines.append('exec "$@"')
    return "\n".join(lines)


def container_env(env: Mapping[str, str], *, hostname: str) -> dict[str, str]:
    """What the process sees: the spec's env plus what an image/kubelet would provide."""
    base = {"PATH": DEFAULT_PATH, "HOME": "/root", "HOSTNAME": hostname}
    return {**base, **env}


def create_mount_points(targets: Sequence[tuple[str, bool]], record: Path) -> None:
    """Create missing mount points on the host, remembering each created path in `record`.

    Bind mounts need an existing target; paths like /data do not exist on the host, so they are
    created (empty) and removed again by `remove_mount_points` when the kubelet stops.
    """
    created: list[str] = []
    for target, is_dir in targets:
        path = Path(target)
        dirs = [path, *path.parents] if is_dir else list(path.parents)
        for d in reversed(dirs):  # from / downwards
            if not d.exists():
                d.mkdir()
                created.append(str(d))
        if not is_dir and not path.exists():
            path.touch()
            created.append(str(path))
    if created:
        record.parent.mkdir(parents=True, exist_ok=True)
        with open(record, "a") as f:
            f.writelines(p + "\n" for p in created)


def remove_mount_points(record: Path) -> None:
    """Remove the mount points `create_mount_points` made, if still empty (deepest first)."""
    if not record.exists():
        return
    for line in sorted(set(record.read_text().split()), key=len, reverse=True):
        path = Path(line)
        try:
            if path.is_dir():
                path.rmdir()
            elif path.is_file() and path.stat().st_size == 0:
                path.unlink()
        except OSError as exc:
            log.warning("leaving mount point %s: %s", path, exc)
    record.unlink()


def launch(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    mounts: Sequence[Mount],
    hosts_file: Path,
    hostname: str,
    workdir: str,
    log_path: Path,
    mount_point_record: Path,
) -> subprocess.Popen[bytes]:
    """Start the container process; its stdout+stderr are appended to `log_path`."""
    targets = [(m.target, m.source.is_dir()) for m in mounts]
    create_mount_points(targets + ([(workdir, True)] if workdir else []), mount_point_record)
    script = mount_script(mounts, hosts_file=hosts_file, hostname=hostname, workdir=workdir)
    full = [
        "unshare", "--mount", "--uts", "--propagation", "private", "--",
        "/bin/sh", "-c", script, "sh", *argv,
    ]  # fmt: skip
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=container_env(env, hostname=hostname),
            start_new_session=True,
        )


def record_pid(pid_dir: Path, pid: int) -> None:
    """Remember a container's process group so a crashed kubelet's children can be reaped."""
    pid_dir.mkdir(parents=True, exist_ok=True)
    (pid_dir / str(pid)).touch()


def forget_pid(pid_dir: Path, pid: int) -> None:
    (pid_dir / str(pid)).unlink(missing_ok=True)


def recorded_pids(pid_dir: Path) -> list[int]:
    if not pid_dir.is_dir():
        return []
    return [int(p.name) for p in pid_dir.iterdir() if p.name.isdigit()]


def is_root() -> bool:
    return os.geteuid() == 0
