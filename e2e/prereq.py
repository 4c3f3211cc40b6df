"""What the e2e suite needs from the machine, and what happens when it is missing.

CI (``CI`` set) installs everything through ``e2e/setup.sh``, so a missing binary there means a
broken setup step and must fail the run; on a developer machine the same test skips with the
command that fixes it. One place for that rule, so no test can quietly pass in CI.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest
from kvharness import controlplane


def unavailable(reason: str) -> NoReturn:
    """Fail in CI, skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def require_control_plane() -> None:
    """The Kubernetes binaries built by ``e2e/setup.sh`` exist and we are root (the process
    kubelet makes network namespaces and mounts)."""
    bin_dir = controlplane.k8s_bin_dir()
    if not (bin_dir / "kube-apiserver").exists() or os.geteuid() != 0:
        unavailable(f"no Kubernetes binaries in {bin_dir} (run e2e/setup.sh) or not root")
