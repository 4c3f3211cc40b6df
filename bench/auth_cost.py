"""The throughput cost of bearer-token auth (issue 12): the same load on a 3-node cluster with
auth off and on, alternating (off, on, off, on, ...) so a busy machine hurts both alike.

    python bench/auth_cost.py [--clients 32] [--seconds 5] [--rounds 2] [--tokens 100]

Each round starts a fresh 3-node cluster (16 partitions, RF 3) on a loopback address of its
own; with auth on, the tokens file holds ``--tokens`` entries (every request's token is checked
against all of them) and the load uses a prefix-scoped write token, so the middleware does all
its work (hash, constant-time scan, role, scope). Prints ops/s per mode and op and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from kvnode import localauth
from kvnode.auth import tokens
from kvnode.client import Client
from kvnode.local import LocalCluster

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.support.addresses import claim_address

OPS = ("put", "get strong")


@asynccontextmanager
async def cluster_with(auth: bool, n_tokens: int) -> AsyncIterator[tuple[LocalCluster, str | None]]:
    base = tempfile.mkdtemp(prefix="ringkv-authcost-")
    claim = claim_address(partitions=16)
    env: dict[str, str] = {}
    token = None
    if auth:
        files = localauth.ensure_auth_files(os.path.join(base, "auth-files"))
        token = tokens.new_token()
        entry = tokens.entry_json(name="bench", role=tokens.Role.WRITE, token=token, prefix="tp")
        localauth.add_token(files.tokens_file, entry)
        for i in range(n_tokens - 3):
            other = tokens.entry_json(name=f"t{i}", role=tokens.Role.READ, token=tokens.new_token())
            localauth.add_token(files.tokens_file, other)
        env = files.node_env()
    cluster = LocalCluster.create(os.path.join(base, "c"), nodes=3, partitions=16,
                                  replication=3, host=claim.host, base_port=claim.base_port,
                                  env=env)  # fmt: skip
    cluster.start_all()
    try:
        await cluster.wait_ready(timeout=90)
        yield cluster, token
    finally:
        cluster.kill_everything()
        claim.release()
        shutil.rmtree(base, ignore_errors=True)


async def rate(c: Client, op: str, clients: int, seconds: float) -> float:
    value, done, stop = "v" * 100, 0, time.monotonic() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        n = 0
        while time.monotonic() < stop:
            key = f"tp{w}-{n % 200}"
            if op == "put":
                await c.put(key, value)
            else:
                await c.get(key)
            n += 1
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(clients)))
    return done / (time.perf_counter() - t0)


async def cpu_per_request(n_tokens: int, requests: int = 3000) -> dict[bool, float]:
    """Process CPU (client and server in this process, fake service) per GET, auth off/on:
    the difference is what the middleware costs per request; unlike ops/s it barely moves with
    the machine's load."""
    import prometheus_client
    from aiohttp.test_utils import TestClient, TestServer
    from kvnode.core.model import Record
    from kvnode.http.app import make_app
    from kvnode.http.auth import AuthConfig

    from tests.unit.http.fake_service import FakeService

    token = tokens.new_token()
    entries = [tokens.entry_json(name="bench", role=tokens.Role.WRITE, token=token, prefix="tp")]
    entries += [
        tokens.entry_json(name=f"t{i}", role=tokens.Role.READ, token=tokens.new_token())
        for i in range(n_tokens - 1)
    ]
    table = tokens.parse_table({"tokens": entries})
    out: dict[bool, float] = {}
    for auth in (False, True) * 5:  # alternating; the minimum of each is kept
        service = FakeService()
        service.data["tp/k"] = Record("v" * 100, 1)
        config = AuthConfig(table=lambda: table) if auth else None
        app = make_app(service, registry=prometheus_client.CollectorRegistry(), auth=config)
        headers = {"Authorization": f"Bearer {token}"} if auth else {}
        async with TestClient(TestServer(app)) as client:
            for _ in range(200):
                await (await client.get("/v1/kv/tp/k", headers=headers)).read()
            t0 = time.process_time()
            for _ in range(requests):
                resp = await client.get("/v1/kv/tp/k", headers=headers)
                assert resp.status == 200
                await resp.read()
            us = (time.process_time() - t0) / requests * 1e6
        out[auth] = min(us, out.get(auth, us))
    return out


async def main(clients: int, seconds: float, rounds: int, n_tokens: int) -> None:
    cpu = await cpu_per_request(n_tokens)
    print(f"CPU per GET in process (client + app, fake service, {n_tokens} tokens): "
          f"off {cpu[False]:.0f} us, on {cpu[True]:.0f} us, +{cpu[True] - cpu[False]:.0f} us "
          f"({cpu[True] / cpu[False]:.2f}x)", flush=True)  # fmt: skip
    if rounds == 0:
        return
    results: dict[tuple[bool, str], list[float]] = {}
    for r in range(rounds):
        for auth in (False, True):
            async with cluster_with(auth, n_tokens) as (cluster, token):
                c = Client(cluster.endpoints, timeout=30, token=token)
                try:
                    for i in range(200):
                        await c.put(f"tp{i % clients}-{i}", "warm")
                    for op in OPS:
                        ops = await rate(c, op, clients, seconds)
                        results.setdefault((auth, op), []).append(ops)
                        print(f"round {r} auth={'on' if auth else 'off'} {op}: {ops:.0f} ops/s",
                              flush=True)  # fmt: skip
                finally:
                    await c.close()
    print(f"\n{clients} clients, {seconds}s per op, {rounds} rounds, {n_tokens} tokens in the file")
    print("op          off ops/s   on ops/s   on/off")
    for op in OPS:
        off = statistics.median(results[(False, op)])
        on = statistics.median(results[(True, op)])
        print(f"{op:<11} {off:>9.0f} {on:>10.0f} {on / off:>8.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2, help="0: the CPU measurement only")
    ap.add_argument("--tokens", type=int, default=100)
    args = ap.parse_args()
    asyncio.run(main(args.clients, args.seconds, args.rounds, args.tokens))
