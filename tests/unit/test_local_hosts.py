"""The local cluster's per-node address option: node ``i`` gets ``hosts[i]`` (ports keep the
standard layout), the option survives ``load``, nodes added by a scale get their own address,
and a subclass can wrap the node command (the chaos suite enters a namespace per node)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from kvnode.local import LocalCluster, host_of, initial_map, target_map

HOSTS = ("127.200.0.1", "127.200.0.2", "127.200.0.3", "127.200.0.4")


def test_each_node_gets_its_own_address_and_the_standard_ports() -> None:
    pmap = initial_map(nodes=3, partitions=4, replication=3, host="-", base_port=7000, hosts=HOSTS)
    assert [n.host for n in pmap.nodes] == list(HOSTS[:3])
    assert [n.http_port for n in pmap.nodes] == [7000, 7001, 7002]
    assert [n.http_url for n in pmap.nodes][1] == "http://127.200.0.2:7001"


def test_without_hosts_every_node_shares_the_host() -> None:
    pmap = initial_map(nodes=3, partitions=4, replication=3, host="127.1.2.3", base_port=7000)
    assert {n.host for n in pmap.nodes} == {"127.1.2.3"}
    assert host_of(5, host="127.1.2.3") == "127.1.2.3"


def test_a_node_without_an_address_is_refused() -> None:
    with pytest.raises(ValueError, match="node index 3 has no address"):
        host_of(3, host="-", hosts=HOSTS[:3])


def test_hosts_survive_load_and_reach_nodes_added_by_a_scale(tmp_path: Path) -> None:
    made = LocalCluster.create(str(tmp_path), nodes=3, partitions=4, hosts=HOSTS)
    assert json.loads((tmp_path / "cluster.json").read_text())["hosts"] == list(HOSTS)
    loaded = LocalCluster.load(str(tmp_path))
    assert loaded.hosts == HOSTS
    assert loaded.endpoints == made.endpoints
    assert loaded.node_env("node-2")["KVNODE_BIND_HOST"] == "127.200.0.3"
    grown = target_map(loaded.pmap, loaded, 4)
    assert grown.node("node-3").host == "127.200.0.4"


def test_a_cluster_without_hosts_writes_none(tmp_path: Path) -> None:
    LocalCluster.create(str(tmp_path), nodes=3, partitions=4, host="127.1.2.3")
    assert "hosts" not in json.loads((tmp_path / "cluster.json").read_text())
    assert LocalCluster.load(str(tmp_path)).hosts == ()


def test_the_node_command_can_be_wrapped(tmp_path: Path) -> None:
    class Wrapped(LocalCluster):
        def node_command(self, node_id: str) -> list[str]:
            return ["nsenter", "--net=/x", "--", *super().node_command(node_id)]

    made = LocalCluster.create(str(tmp_path), nodes=3, partitions=4)
    assert made.node_command("node-0") == [sys.executable, "-m", "kvnode"]
    assert Wrapped(str(tmp_path), made.pmap).node_command("node-0")[:3] == [
        "nsenter",
        "--net=/x",
        "--",
    ]
