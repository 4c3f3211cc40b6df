"""One set of Raft defaults: NodeSettings; RaftTuning reads them, never restates them."""

from __future__ import annotations

import dataclasses

import pytest
from kvnode.raft.tuning import RaftTuning
from kvnode.settings import NodeSettings


def test_tuning_defaults_are_the_settings_defaults() -> None:
    settings = NodeSettings(node_id="n", data_dir="/tmp/x")
    assert RaftTuning() == RaftTuning.from_settings(settings)


def test_from_settings_copies_every_field() -> None:
    settings = NodeSettings(
        node_id="n",
        data_dir="/tmp/x",
        bind_host="127.9.0.1",
        heartbeat_s=0.2,
        election_min_s=1.5,
        election_max_s=2.5,
        leader_fallback_s=3.0,
        connection_retry_s=0.5,
        compaction_min_entries=7,
        compaction_min_time_s=8.0,
        durability="fsync",
        read_mode="barrier",
    )
    tuning = RaftTuning.from_settings(settings)
    for f in dataclasses.fields(RaftTuning):
        if f.name not in ("fsync", "password"):
            assert getattr(tuning, f.name) == getattr(settings, f.name), f.name
    assert tuning.fsync


def test_read_mode_defaults_to_readindex_and_is_validated() -> None:
    assert RaftTuning().read_mode == "readindex"
    env = {"KVNODE_NODE_ID": "n", "KVNODE_DATA_DIR": "/tmp/x"}
    assert NodeSettings.from_env({**env, "KVNODE_READ_MODE": "barrier"}).read_mode == "barrier"
    with pytest.raises(ValueError, match="KVNODE_READ_MODE"):
        NodeSettings.from_env({**env, "KVNODE_READ_MODE": "lease"})


def test_follower_reads_default_on_and_are_validated() -> None:
    assert RaftTuning().follower_reads == "on"
    env = {"KVNODE_NODE_ID": "n", "KVNODE_DATA_DIR": "/tmp/x"}
    assert NodeSettings.from_env({**env, "KVNODE_FOLLOWER_READS": "off"}).follower_reads == "off"
    with pytest.raises(ValueError, match="KVNODE_FOLLOWER_READS"):
        NodeSettings.from_env({**env, "KVNODE_FOLLOWER_READS": "yes"})


def test_raft_password_reaches_every_group_conf_and_is_never_shown() -> None:
    from kvnode.raft.tuning import syncobj_conf

    settings = NodeSettings(node_id="n", data_dir="/tmp/x")
    tuning = RaftTuning.from_settings(settings, password="s3cret-pass")
    conf = syncobj_conf(tuning, partition_dir="/tmp/x/p0", self_addr="127.0.0.1:17000")
    assert conf.password == "s3cret-pass"
    assert "s3cret-pass" not in repr(tuning)
    plain = syncobj_conf(RaftTuning(), partition_dir="/tmp/x/p0", self_addr="127.0.0.1:17000")
    assert plain.password is None
