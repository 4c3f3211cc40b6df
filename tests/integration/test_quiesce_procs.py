"""Quiesced partitions on real node processes: a paused leader node (SIGSTOP) sends no beacons,
so the followers of every partition it led wake and elect new leaders within an election
timeout; writes and strong reads go on; and when the node resumes it follows the new leaders
and every partition quiesces again with every acknowledged write readable."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from tests.support.clusters import FAST_RAFT, eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
PARTITIONS = 8
ENV = {"KVNODE_QUIESCE_IDLE_S": "0.5"}


async def _replicas(http: Any, url: str) -> list[dict[str, Any]]:
    _, body, _ = await http.call(url, "GET", "/v1/admin/partitions", timeout=5)
    return list(body["partitions"])


async def test_paused_leader_node_of_quiesced_partitions_fails_over(make_cluster) -> None:
    h = make_cluster(nodes=3, partitions=PARTITIONS, env=ENV)
    await h.wait_ready()
    c = h.cluster
    urls = {n: c.pmap.node(n).http_url for n in c.node_ids}
    http = c.http()
    client = h.client(timeout=20)
    try:
        written = {f"k{i}": f"v{i}" for i in range(40)}
        for k, v in written.items():
            await client.put(k, v)

        async def all_quiesced() -> dict[str, list[dict[str, Any]]] | None:
            views = {n: await _replicas(http, u) for n, u in urls.items()}
            every = [r for rs in views.values() for r in rs]
            quiet = len(every) == 3 * PARTITIONS and all(r["quiesced"] for r in every)
            return views if quiet else None

        views = await eventually(all_quiesced, timeout=60, what="every replica quiesced")
        led = {n: [r["partition"] for r in rs if r["role"] == "leader"] for n, rs in views.items()}
        victim = max(led, key=lambda n: len(led[n]))
        assert led[victim], led
        others = [n for n in c.node_ids if n != victim]
        pid = c.pid(victim)
        assert pid is not None

        os.kill(pid, signal.SIGSTOP)
        try:
            paused = time.monotonic()

            async def failed_over() -> bool:
                leaders = set()
                for n in others:
                    for r in await _replicas(http, urls[n]):
                        if r["role"] == "leader":
                            leaders.add(r["partition"])
                return set(led[victim]) <= leaders

            await eventually(failed_over, timeout=30, what="new leaders", interval=0.05)
            took = time.monotonic() - paused
            # The last beacon came at most a heartbeat before the pause; then the randomised
            # election timeout, a pre-vote and a vote round; plus slack for a loaded machine.
            hb = float(FAST_RAFT["KVNODE_HEARTBEAT_S"])
            bound = hb + float(FAST_RAFT["KVNODE_ELECTION_MAX_S"]) + 4 * hb + 1.5
            print(f"fail-over of {len(led[victim])} quiesced partitions took {took:.2f}s")
            assert took <= bound, f"fail-over took {took:.2f}s (bound {bound:.2f}s)"

            # Writes through the survivors (as a Service with readiness would send them): each
            # lands on or is forwarded to a new leader.
            for i in range(20):
                url = urls[others[i % 2]]
                body = {"value": "x"}
                await http.call(url, "PUT", f"/v1/kv/during{i}", json_body=body, timeout=10)
                written[f"during{i}"] = "x"
        finally:
            os.kill(pid, signal.SIGCONT)

        async def healed() -> bool:
            views = {n: await _replicas(http, u) for n, u in urls.items()}
            for p in range(PARTITIONS):
                claims = [
                    n
                    for n, rs in views.items()
                    for r in rs
                    if r["partition"] == p and r["role"] == "leader"
                ]
                if len(claims) != 1:
                    return False
            return all(r["quiesced"] for rs in views.values() for r in rs)

        await eventually(healed, timeout=60, what="one leader per partition, all quiesced again")
        for k, v in written.items():
            got = await client.get(k)
            assert got is not None, k
            assert got.value == v, k
    finally:
        await client.close()
        await http.close()
