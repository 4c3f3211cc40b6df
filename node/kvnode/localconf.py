"""Where a local cluster lives: its state directory and its address and port layout.

Port layout (one address per cluster; the same for ``./dev up`` and every test cluster):
node ``i`` serves HTTP on ``base_port + i`` and partition ``p``'s Raft group on
``base_port + 10000 + 1000 i + p``. With the default base 7000 that is HTTP 7000-7009 and Raft
17000-26999 for up to 10 nodes and 1000 partitions: every port stays below the kernel's
ephemeral range (32768-60999), where outgoing connections and sockets in TIME-WAIT would take
them at random on a busy machine. ``layout_problem`` refuses any layout that reaches it.

State directory (``ringkv local`` must work from any directory), first match wins:
``--dir``; else ``$RINGKV_LOCAL_DIR``; else ``<checkout>/.ringkv-local`` for the ringkv checkout
this ``kvnode`` package is imported from (an editable install, as ``./dev`` makes: the cluster
belongs to the code that runs it, whatever the current directory); else that of the checkout
containing the current directory; else ``$XDG_CACHE_HOME/ringkv/local`` (``~/.cache/...``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from kvnode.core.model import NodeInfo

DEFAULT_HOST = "127.0.0.1"
DEFAULT_BASE_PORT = 7000
RAFT_OFFSET = 10000
RAFT_NODE_STRIDE = 1000
MAX_NODES = 10
MAX_PARTITIONS = RAFT_NODE_STRIDE  # partition p's port must stay inside its node's stride
EPHEMERAL_FIRST = 32768  # Linux default ip_local_port_range starts here (ends at 60999)
STATE_DIR_ENV = "RINGKV_LOCAL_DIR"
STATE_DIR_NAME = ".ringkv-local"


def node_info(i: int, *, host: str, base_port: int) -> NodeInfo:
    """Node ``node-i`` of a local cluster: HTTP ``base_port + i``, Raft from
    ``base_port + 10000 + 1000 i``."""
    if not 0 <= i < MAX_NODES:
        raise ValueError(f"a local cluster has at most {MAX_NODES} nodes (node index {i})")
    return NodeInfo(
        node_id=f"node-{i}",
        host=host,
        http_port=base_port + i,
        raft_port_base=base_port + RAFT_OFFSET + RAFT_NODE_STRIDE * i,
    )


def highest_port(*, base_port: int, nodes: int, partitions: int) -> int:
    return base_port + RAFT_OFFSET + RAFT_NODE_STRIDE * (nodes - 1) + partitions - 1


def layout_problem(*, base_port: int, nodes: int, partitions: int) -> str | None:
    """Why this layout is unusable (None if it is fine): privileged ports, more partitions than
    a node's port stride, or any port inside the ephemeral range."""
    if not 1 <= nodes <= MAX_NODES:
        return f"a local cluster has 1 to {MAX_NODES} nodes, not {nodes}"
    if not 1 <= partitions <= MAX_PARTITIONS:
        return f"partitions must be in [1, {MAX_PARTITIONS}], not {partitions}"
    if base_port < 1024:
        return f"base port {base_port} is privileged (< 1024)"
    top = highest_port(base_port=base_port, nodes=nodes, partitions=partitions)
    if top >= EPHEMERAL_FIRST:
        limit = EPHEMERAL_FIRST - 1 - (top - base_port)
        return (
            f"base port {base_port} puts Raft ports up to {top}, inside the ephemeral range "
            f"({EPHEMERAL_FIRST}-60999) where outgoing sockets take ports at random; "
            f"use a base port <= {limit} for {nodes} nodes and {partitions} partitions"
        )
    return None


# -- state directory ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StateDir:
    path: str
    source: str
    """How it was found: "--dir", "$RINGKV_LOCAL_DIR", "checkout", "cwd checkout" or "home"."""


def is_checkout(path: str) -> bool:
    """Is ``path`` the root of a ringkv source checkout (its pyproject names ``ringkv``)?"""
    if not os.path.isfile(os.path.join(path, "node", "kvnode", "__init__.py")):
        return False
    try:
        with open(os.path.join(path, "pyproject.toml"), encoding="utf-8") as f:
            return any(line.strip() == 'name = "ringkv"' for line in f)
    except OSError:
        return False


def find_checkout(start: str) -> str | None:
    """The nearest ringkv checkout root at or above ``start``."""
    path = os.path.abspath(start)
    while True:
        if is_checkout(path):
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


def home_state_dir(env: Mapping[str, str]) -> str:
    cache = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "ringkv", "local")


def resolve_state_dir(
    explicit: str | None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    package_dir: str | None = None,
) -> StateDir:
    """The state directory ``ringkv local`` uses (see the module docstring for the order)."""
    env = os.environ if env is None else env
    if explicit:
        return StateDir(os.path.abspath(explicit), "--dir")
    if env.get(STATE_DIR_ENV):
        return StateDir(os.path.abspath(env[STATE_DIR_ENV]), f"${STATE_DIR_ENV}")
    package_dir = package_dir or os.path.dirname(os.path.abspath(__file__))
    checkout = find_checkout(package_dir)
    if checkout is not None:
        return StateDir(os.path.join(checkout, STATE_DIR_NAME), "checkout")
    checkout = find_checkout(cwd or os.getcwd())
    if checkout is not None:
        return StateDir(os.path.join(checkout, STATE_DIR_NAME), "cwd checkout")
    return StateDir(home_state_dir(env), "home")
