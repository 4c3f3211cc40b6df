"""Run the chaos runner in namespaces of its own: network, mounts and pids.

Why: the runner rewires the network (a bridge, veths, tc filters, a loopback that is no longer
127.0.0.0/8) and mounts tmpfs; in its own network and mount namespaces none of that can reach
the machine or anyone else's cluster. In its own pid namespace the runner is pid 1, so when it
ends — normally, by an exception or SIGKILL — the kernel kills every process left in the
namespace (nodes, namespace holders), and the namespaces and mounts go with them: nothing a
run makes can outlive it, pass or fail. ``--kill-child`` ends the runner if ``unshare`` itself
is killed (e.g. by a test timeout).
"""

from __future__ import annotations

import os
import sys

ENV = "RINGKV_CHAOS_SANDBOX"


def inside() -> bool:
    return os.environ.get(ENV) == "1" and os.getpid() == 1


def command(args: list[str]) -> list[str]:
    """argv that runs ``python -m tests.chaos ARGS`` inside fresh namespaces."""
    return [
        "unshare",
        "--net",
        "--mount",
        "--propagation=private",
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child=SIGKILL",
        "--",
        sys.executable,
        "-m",
        "tests.chaos",
        *args,
    ]


def environment() -> dict[str, str]:
    return {**os.environ, ENV: "1"}
