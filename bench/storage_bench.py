"""Storage-engine micro-benchmark: LevelDBStore alone, no Raft, no HTTP; prints a table.

    PYTHONPATH=node python bench/storage_bench.py [--keys 1000000] [--seconds 3] [--dir DIR]

Measures, on one partition store with 100-byte values:
  * apply() throughput, one put per apply (= one Raft entry), sync=False and sync=True (fsync);
  * apply() of 1,000-put batches while building a store of --keys keys;
  * get() latency of random hits on that store (p50/p99);
  * open time of the store (close + reopen: O(1), stats and applied index are stored);
  * digest(), snapshot write (iter_dump → write_snapshot) and load_snapshot of the whole store.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable

from kvnode.core.model import Record
from kvnode.storage import snapshot
from kvnode.storage.leveldb import LevelDBStore

VALUES = [os.urandom(50).hex() for _ in range(1024)]  # 100 chars, incompressible


def key(i: int) -> str:
    return f"user:{i:012d}"


def single_puts(path: str, *, sync: bool, seconds: float) -> tuple[int, float]:
    store = LevelDBStore.open(path, sync=sync)
    n, t0 = 0, time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            n += 1
            store.apply(
                n, puts={key(random.getrandbits(40)): Record(random.choice(VALUES), n)}, deletes=()
            )
    elapsed = time.perf_counter() - t0
    store.close()
    LevelDBStore.destroy(path)
    return n, n / elapsed


def build(path: str, keys: int) -> float:
    store = LevelDBStore.open(path)
    t0 = time.perf_counter()
    for batch, start in enumerate(range(0, keys, 1000), start=1):
        puts = {
            key(i): Record(VALUES[i % 1024], batch) for i in range(start, min(start + 1000, keys))
        }
        store.apply(batch, puts=puts, deletes=())
    rate = keys / (time.perf_counter() - t0)
    store.close()
    return rate


def get_latency(store: LevelDBStore, keys: int, samples: int) -> tuple[float, float, float]:
    lat = []
    for _ in range(samples):
        k = key(random.randrange(keys))
        t0 = time.perf_counter_ns()
        store.get(k)
        lat.append(time.perf_counter_ns() - t0)
    lat.sort()
    return lat[len(lat) // 2] / 1e3, lat[int(len(lat) * 0.99)] / 1e3, samples / (sum(lat) / 1e9)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ringkv-storage-bench-", dir=args.dir)
    rows: list[tuple[str, str]] = []
    try:
        n, rate = single_puts(os.path.join(work, "s0"), sync=False, seconds=args.seconds)
        rows.append(("apply 1 put/entry, sync=False", f"{rate:,.0f} applies/s ({n:,} applies)"))
        n, rate = single_puts(os.path.join(work, "s1"), sync=True, seconds=args.seconds)
        rows.append(("apply 1 put/entry, sync=True", f"{rate:,.0f} applies/s ({n:,} applies)"))
        path = os.path.join(work, "big")
        rate = build(path, args.keys)
        rows.append((f"build {args.keys:,} keys, 1000 puts/apply", f"{rate:,.0f} keys/s"))
        opened: list[LevelDBStore] = []
        t = timed(lambda: opened.append(LevelDBStore.open(path)))
        store = opened[0]
        st = store.stats()
        rows.append(
            ("open store", f"{t * 1e3:.1f} ms ({st.keys:,} keys, applied {st.applied_index})")
        )
        rows.append(("disk size (sstables)", f"{st.disk_bytes / 1e6:,.1f} MB"))
        p50, p99, rate = get_latency(store, args.keys, 100_000)
        rows.append(("get random hit", f"p50 {p50:.1f} µs, p99 {p99:.1f} µs, {rate:,.0f} gets/s"))
        rows.append(("digest()", f"{timed(store.digest):.2f} s"))
        snap = os.path.join(work, "snap")
        t = timed(lambda: snapshot.write_snapshot(snap, header=b"", items=store.iter_dump()))
        size = os.path.getsize(snap)
        rows.append(("write_snapshot (fsynced)", f"{t:.2f} s, {size / 1e6:,.1f} MB"))
        rows.append(
            ("load_snapshot (verify + swap)", f"{timed(lambda: store.load_snapshot(snap)):.2f} s")
        )
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(name) for name, _ in rows)
    print(f"{'measurement':<{width}}  result")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
