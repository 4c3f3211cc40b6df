"""Ports, test addresses and state-directory resolution of local clusters."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from kvnode import localconf, localprocs
from kvnode.local import initial_map

from tests.support import addresses

ROOT = Path(__file__).resolve().parents[2]


def test_default_layout_is_below_the_ephemeral_range_for_the_largest_cluster() -> None:
    top = localconf.highest_port(base_port=7000, nodes=10, partitions=1000)
    assert top == 26999 < localconf.EPHEMERAL_FIRST
    assert localconf.layout_problem(base_port=7000, nodes=10, partitions=1000) is None


@pytest.mark.parametrize(
    ("base_port", "nodes", "partitions", "needle"),
    [
        (27000, 3, 16, "ephemeral range"),  # the old benchmark base: Raft at 37000+
        (12769, 10, 1000, "base port <= 12768"),
        (7000, 11, 8, "1 to 10 nodes"),
        (7000, 3, 1001, "partitions must be"),
        (80, 3, 8, "privileged"),
    ],
)
def test_layout_problems_are_explained(
    base_port: int, nodes: int, partitions: int, needle: str
) -> None:
    problem = localconf.layout_problem(base_port=base_port, nodes=nodes, partitions=partitions)
    assert problem is not None
    assert needle in problem
    with pytest.raises(ValueError, match=needle.split()[0]):
        initial_map(
            nodes=nodes, partitions=partitions, replication=1, host="h", base_port=base_port
        )


def test_candidates_never_use_127_0_and_differ_per_pid_and_counter() -> None:
    seen = set()
    for pid in (1, 2, 4242, 32768, 4194303):
        for n in range(600):
            host = addresses.candidate(pid, n)
            octets = [int(x) for x in host.split(".")]
            assert octets[0] == 127
            assert 100 <= octets[1] <= 199
            assert all(1 <= o <= 254 for o in octets[2:])
            seen.add((pid, host))
    assert len({addresses.candidate(7, n) for n in range(254)}) == 254
    assert addresses.candidate(1000, 0) != addresses.candidate(1001, 0)


def test_claims_are_distinct_locked_and_skip_taken_ports() -> None:
    first = addresses.claim_address(partitions=4)
    try:
        # A foreign listener on the next candidate's HTTP port makes the allocator skip it.
        nxt = addresses.candidate(os.getpid(), next(addresses._counter) + 1)
        with socket.socket() as blocker:
            blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            blocker.bind((nxt, 7001))
            blocker.listen()
            second = addresses.claim_address(partitions=4)
            try:
                assert second.host not in (first.host, nxt)
                assert addresses.unbindable(nxt, [7000, 7001]) == 7001
            finally:
                second.release()
        # Another claimant (same pid-derived block) cannot take a held address.
        assert addresses._try_lock(first.host) is None
    finally:
        first.release()
    fd = addresses._try_lock(first.host)
    assert fd is not None
    os.close(fd)


def test_layout_ports_cover_http_and_every_raft_port() -> None:
    ports = addresses.layout_ports(nodes=2, partitions=3, base_port=7000)
    assert ports == [7000, 17000, 17001, 17002, 7001, 18000, 18001, 18002]


# -- state directory ---------------------------------------------------------------------------
def make_checkout(root: Path) -> Path:
    (root / "node" / "kvnode").mkdir(parents=True)
    (root / "node" / "kvnode" / "__init__.py").write_text("")
    (root / "pyproject.toml").write_text('[project]\nname = "ringkv"\n')
    return root


def test_state_dir_order(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "co")
    other = make_checkout(tmp_path / "other")
    pkg = str(checkout / "node" / "kvnode")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}

    def resolve(explicit: str | None, **kw: object) -> localconf.StateDir:
        args = {"env": env, "cwd": str(elsewhere), "package_dir": pkg} | kw
        return localconf.resolve_state_dir(explicit, **args)  # type: ignore[arg-type]

    assert resolve("rel").path == os.path.abspath("rel")
    assert resolve("rel").source == "--dir"
    with_env = resolve(None, env={**env, "RINGKV_LOCAL_DIR": "/srv/kv"})
    assert (with_env.path, with_env.source) == ("/srv/kv", "$RINGKV_LOCAL_DIR")
    # The package's checkout wins over the current directory's (the code that runs owns it).
    got = resolve(None, cwd=str(other / "node"))
    assert (got.path, got.source) == (str(checkout / ".ringkv-local"), "checkout")
    site = tmp_path / "site-packages" / "kvnode"
    site.mkdir(parents=True)
    got = resolve(None, cwd=str(other / "node"), package_dir=str(site))
    assert (got.path, got.source) == (str(other / ".ringkv-local"), "cwd checkout")
    got = resolve(None, package_dir=str(site))
    assert (got.path, got.source) == (str(tmp_path / "cache" / "ringkv" / "local"), "home")


def test_state_dir_of_this_checkout_from_any_directory(tmp_path: Path) -> None:
    got = localconf.resolve_state_dir(None, env={}, cwd=str(tmp_path))
    assert got.path == str(ROOT / ".ringkv-local")
    assert got.source == "checkout"


def test_not_a_checkout_without_the_ringkv_pyproject(tmp_path: Path) -> None:
    fake = make_checkout(tmp_path / "x")
    (fake / "pyproject.toml").write_text('[project]\nname = "other"\n')
    assert localconf.find_checkout(str(fake / "node")) is None


# -- process bookkeeping -----------------------------------------------------------------------
def test_under_is_a_path_prefix_not_a_string_prefix(tmp_path: Path) -> None:
    assert localprocs.under(str(tmp_path / "a" / "node-0"), str(tmp_path / "a"))
    assert localprocs.under(str(tmp_path / "a"), str(tmp_path / "a") + "/")
    assert not localprocs.under(str(tmp_path / "ab" / "node-0"), str(tmp_path / "a"))
    assert not localprocs.under(None, str(tmp_path))


def test_pid_files_and_identity_of_a_real_process(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "node-1")
    env = dict(os.environ, KVNODE_DATA_DIR=data_dir)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], env=env, start_new_session=True
    )
    try:
        localprocs.record_pid(str(tmp_path), "node-1", proc.pid)
        assert localprocs.recorded_pids(str(tmp_path)) == {"node-1": proc.pid}
        assert localprocs.is_node_of(proc.pid, data_dir)
        assert not localprocs.is_node_of(proc.pid, str(tmp_path / "node-2"))  # a reused pid
        assert [p.pid for p in localprocs.nodes_under(str(tmp_path))] == [proc.pid]
        assert localprocs.kill_all(localprocs.nodes_under(str(tmp_path)), timeout=10) == []
        assert not localprocs.alive(proc.pid)
        localprocs.forget_pid(str(tmp_path), "node-1")
        assert localprocs.recorded_pids(str(tmp_path)) == {}
    finally:
        proc.kill()
        proc.wait()
