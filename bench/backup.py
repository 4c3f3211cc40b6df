"""Backup and restore throughput: ``python bench/backup.py --mb 100``.

Loads ``--mb`` MB (1 KB values, spread over every partition) into a fresh 3-node local cluster,
takes an online backup (``kvnode.backup.take``: every partition streamed from its leader, written,
fsynced, re-read and digest-checked against the leader) and restores it into a fresh cluster of
``--restore-nodes`` nodes (``kvnode.localbackup.restore_into``: every replica seeded, digests
compared, map installed, until every partition has a leader). Prints one table: MB/s counts the
backup's bytes on disk (the RKVSNAP files), so restore MB/s is per copy, and a restore writes
each partition once per replica (``replicas`` column).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kvnode.backup import files, take
from kvnode.client import BatchOp, Client, NodeHttp
from kvnode.local import LocalCluster
from kvnode.localbackup import restore_into

from tests.support.addresses import claim_address


def table(title: str, header: list[str], rows: list[list[object]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))


async def load(cluster: LocalCluster, mb: int) -> float:
    value = "v" * 1000
    keys = mb * 1000
    t0 = time.perf_counter()
    async with Client(cluster.endpoints, timeout=60) as client:
        sem = asyncio.Semaphore(4)

        async def put_batch(start: int) -> None:
            async with sem:
                ops = [
                    BatchOp.put(f"key{i:09d}", value) for i in range(start, min(keys, start + 200))
                ]
                result = await client.batch(ops)
                result.raise_for_error()

        await asyncio.gather(*(put_batch(s) for s in range(0, keys, 200)))
    return time.perf_counter() - t0


async def bench(mb: int, partitions: int, restore_nodes: int) -> None:
    base = tempfile.mkdtemp(prefix="ringkv-bench-backup-")
    claims = [claim_address(partitions=partitions) for _ in range(2)]
    made: list[LocalCluster] = []
    ok = False
    try:
        src = LocalCluster.create(os.path.join(base, "src"), nodes=3, partitions=partitions,
                                  host=claims[0].host, base_port=claims[0].base_port)  # fmt: skip
        made.append(src)
        src.start_all()
        await src.wait_ready(timeout=90)
        load_s = await load(src, mb)
        dest = os.path.join(base, "backup")
        http = NodeHttp()
        try:
            t0 = time.perf_counter()
            manifest = await take.take_backup(src.endpoints, dest, http=http)
            backup_s = time.perf_counter() - t0
        finally:
            await http.close()
        t0 = time.perf_counter()
        await asyncio.to_thread(files.verify, dest)
        verify_s = time.perf_counter() - t0
        dst = LocalCluster.create(os.path.join(base, "dst"), nodes=restore_nodes,
                                  partitions=partitions, host=claims[1].host,
                                  base_port=claims[1].base_port)  # fmt: skip
        made.append(dst)
        t0 = time.perf_counter()
        result = await restore_into(dst, dest, timeout=600)
        restore_s = time.perf_counter() - t0
        seed_s = float(result["seconds"])
        size = manifest.size_bytes / 1e6
        table(
            f"backup/restore of {manifest.keys} keys ({size:.1f} MB on disk), "
            f"{partitions} partitions, load {load_s:.1f}s",
            ["operation", "nodes", "replicas", "seconds", "MB/s"],
            [
                ["backup (online, verified)", 3, "-", f"{backup_s:.2f}", f"{size / backup_s:.1f}"],
                ["verify (re-read)", "-", "-", f"{verify_s:.2f}", f"{size / verify_s:.1f}"],
                ["restore: seed replicas", restore_nodes, 3, f"{seed_s:.2f}",
                 f"{size / seed_s:.1f}"],
                ["restore: start to ready", restore_nodes, 3, f"{restore_s:.2f}",
                 f"{size / restore_s:.1f}"],
            ],
        )  # fmt: skip
        ok = True
    finally:
        for c in made:
            c.kill_everything()
        for claim in claims:
            claim.release()
        if ok:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"benchmark failed; files kept in {base}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mb", type=int, default=50, help="data to load, in MB of values")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--restore-nodes", type=int, default=4)
    args = ap.parse_args()
    asyncio.run(bench(args.mb, args.partitions, args.restore_nodes))


if __name__ == "__main__":
    main()
