"""The backup manifest (pure) and the header a restore gives each replica of a new cluster."""

from __future__ import annotations

import pickle

import pytest
from kvnode.backup import manifest as mf
from kvnode.core import errors
from kvnode.http import parse_admin
from kvnode.raft.compat import tcp_node
from kvnode.raft.replica import restore_header, seed_header_info


def entry(p: int, **kw) -> mf.PartitionEntry:
    base = dict(
        partition=p,
        file=mf.partition_file(p),
        index=100 + p,
        keys=10,
        digest="d" * 64,
        size_bytes=1234,
        sha256="s" * 64,
        items=14,
        source_node="node-0",
        captured_at=1.5,
    )
    return mf.PartitionEntry(**{**base, **kw})


def manifest(partitions: int = 3) -> mf.Manifest:
    return mf.Manifest(
        partitions=partitions,
        replication=3,
        epoch=4,
        started_at=1.0,
        completed_at=2.0,
        entries=tuple(entry(p) for p in range(partitions)),
        source_map={"epoch": 4},
    )


def test_round_trip_and_totals():
    m = manifest()
    assert mf.Manifest.from_dict(m.to_dict()) == m
    assert m.size_bytes == 3 * 1234
    assert m.keys == 30
    assert m.indexes() == {0: 100, 1: 101, 2: 102}
    assert m.summary("/b")["verified"] is True


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "tarball"}, "not a ringkv backup manifest"),
        ({"version": 2}, "version 2 is not supported"),
        ({"partitions": -1}, "partitions must be an integer"),
        ({"partitions": True}, "partitions must be an integer"),
        ({"entries": None}, "malformed backup manifest"),
    ],
)
def test_malformed_manifests_are_refused(change, message):
    with pytest.raises(mf.ManifestError, match=message):
        mf.Manifest.from_dict({**manifest().to_dict(), **change})


def test_a_missing_or_misnamed_partition_is_refused():
    d = manifest().to_dict()
    d["entries"] = [d["entries"][0], d["entries"][2]]
    with pytest.raises(mf.ManifestError, match=r"missing \[1\]"):
        mf.Manifest.from_dict(d)
    d = manifest().to_dict()
    d["entries"][1]["file"] = "p00007.rkvsnap"
    with pytest.raises(mf.ManifestError, match="names file"):
        mf.Manifest.from_dict(d)


def test_restore_target_must_have_the_same_partition_count():
    mf.check_target(manifest(3), partitions=3)
    with pytest.raises(mf.ManifestError, match="3 partitions but the target cluster has 4"):
        mf.check_target(manifest(3), partitions=4)


def _seed_header(partition: int) -> bytes:
    cluster = {tcp_node("old-a:17001"), tcp_node("old-b:17001")}
    raft = ((b"cmd-last", 57, 9), (b"cmd-prev", 56, 9), cluster)
    meta = {"v": 1, "partition": partition, "store_applied": 57, "raft": raft}
    return pickle.dumps(meta)


def test_restore_header_names_the_new_voters_and_resets_terms():
    peers = ["new-0:17001", "new-1:17001", "new-2:17001"]
    header = restore_header(_seed_header(1), partition=1, peers=peers)
    part, applied, members = seed_header_info(header)
    assert (part, applied, members) == (1, 57, peers)
    last, prev, _ = pickle.loads(header)["raft"]
    assert last == (b"cmd-last", 57, 0)
    assert prev == (b"cmd-prev", 56, 0)


def test_restore_header_refuses_another_partition():
    with pytest.raises(ValueError, match="partition 1 offered for 2"):
        restore_header(_seed_header(1), partition=2, peers=["a:1"])


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (None, "is required"),
        ("a:1,a:1", "twice"),
        ("nohost", "host:port"),
        ("a:0", "host:port"),
        ("a:70000", "host:port"),
        (",".join(f"h{i}:1" for i in range(16)), "at most 15"),
    ],
)
def test_restore_peers_are_validated(raw, problem):
    query = {} if raw is None else {"peers": raw}
    with pytest.raises(errors.InvalidArgument, match=problem):
        parse_admin.parse_peers(query)
    assert parse_admin.parse_peers({"peers": "a:1,b.c:65535"}) == ["a:1", "b.c:65535"]
