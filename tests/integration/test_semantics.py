"""CAS under contention, TTL expiry and batch atomicity on a real cluster."""

from __future__ import annotations

import asyncio
import time

import pytest
from kvnode.client import BatchOp, Client
from kvnode.core import errors

pytestmark = pytest.mark.integration


async def _increment(c: Client, key: str) -> int:
    """Optimistic increment: read, then CAS on the version; retry on conflict."""
    for _ in range(500):
        entry = await c.get(key)
        current = int(entry.value) if entry else 0
        try:
            await c.put(key, str(current + 1), if_version=entry.version if entry else 0)
            return current + 1
        except errors.PreconditionFailed:
            await asyncio.sleep(0)
    raise AssertionError("increment starved")


async def test_concurrent_cas_increments_are_exact(cluster) -> None:
    workers, per_worker = 8, 15
    # Generous deadlines: this checks CAS exactness, not latency. With the default 2 s per
    # attempt a write delayed on a loaded machine ends UnknownOutcome, and an increment whose
    # outcome is unknown cannot be counted either way.
    clients = [
        Client([ep], direct=i % 2 == 0, timeout=30.0, attempt_timeout=10.0)
        for i, ep in enumerate(cluster.endpoints * 3)
    ]
    try:
        await asyncio.gather(
            *(
                _increment(clients[w % len(clients)], "counter")
                for w in range(workers)
                for _ in range(per_worker)
            )
        )
        async with cluster.client() as c:
            final = await c.get("counter")
        assert final is not None
        assert int(final.value) == workers * per_worker
    finally:
        for c in clients:
            await c.close()


async def test_if_value_cas_and_create_only(cluster) -> None:
    async with cluster.client() as c:
        await c.put("lock", "free", if_version=0)
        with pytest.raises(errors.PreconditionFailed) as exc:
            await c.put("lock", "again", if_version=0)
        assert exc.value.details["current_version"] > 0
        await c.put("lock", "held-by-a", if_value="free")
        with pytest.raises(errors.PreconditionFailed):
            await c.put("lock", "held-by-b", if_value="free")
        assert (await c.get("lock")).value == "held-by-a"


async def test_ttl_expiry_hides_then_removes_records(cluster) -> None:
    async with cluster.client() as c:
        await c.put("ttl/short", "x", ttl=1.0)
        await c.put("ttl/long", "y", ttl=300)
        assert (await c.get("ttl/short")).value == "x"
        deadline = time.monotonic() + 10
        while await c.get("ttl/short") is not None:
            assert time.monotonic() < deadline, "ttl/short still visible 10 s after its 1 s TTL"
            await asyncio.sleep(0.2)
        assert (await c.get("ttl/long")).expires_at_ms is not None
        # after expiry the key can be created again with if_version=0 (it counts as absent)
        await c.put("ttl/short", "again", if_version=0)
        for ep in cluster.endpoints:
            async with Client([ep], direct=False) as one:
                assert (await one.get("ttl/short", consistency="eventual")).value == "again"


async def test_batch_is_atomic_per_partition(cluster) -> None:
    async with cluster.client() as c:
        await c.put("acct:{7}:a", "100")
        v_b = await c.put("acct:{7}:b", "0")
        ok = await c.batch(
            [
                BatchOp.put("acct:{7}:a", "60"),
                BatchOp.put("acct:{7}:b", "40", if_version=v_b),
                BatchOp.put("acct:{7}:log", "moved 40"),
            ],
            atomic=True,
        )
        assert ok.applied
        # one stale condition → none of the three ops applies
        failed = await c.batch(
            [
                BatchOp.put("acct:{7}:a", "0"),
                BatchOp.put("acct:{7}:b", "100", if_version=v_b),
                BatchOp.delete("acct:{7}:log"),
            ],
            atomic=True,
        )
        assert not failed.applied
        assert all(item.error is not None for item in failed.results)
        with pytest.raises(errors.PreconditionFailed):
            failed.raise_for_error()
        assert (await c.get("acct:{7}:a")).value == "60"
        assert (await c.get("acct:{7}:b")).value == "40"
        assert (await c.get("acct:{7}:log")).value == "moved 40"
        with pytest.raises(errors.InvalidArgument):
            await c.batch([BatchOp.put("x1", "1"), BatchOp.put("x2", "2")], atomic=True)
