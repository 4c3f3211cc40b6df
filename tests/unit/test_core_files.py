"""The shared atomic file writer: old or new content, never torn, nothing left behind."""

from __future__ import annotations

import json
import os

import pytest
from kvnode.core import files


def test_write_atomic_replaces_content_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    files.write_atomic(str(target), b"new")
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["state.json"]


def test_write_json_atomic_round_trips(tmp_path):
    target = tmp_path / "identity.json"
    files.write_json_atomic(str(target), {"incarnation": "abc", "needs_reseed": [1, 2]})
    assert json.loads(target.read_text()) == {"incarnation": "abc", "needs_reseed": [1, 2]}


def test_failed_rename_keeps_old_target_and_removes_temporary(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()  # a directory cannot be replaced by a file: the rename fails
    (target / "inside").write_text("kept")
    with pytest.raises(IsADirectoryError):
        files.write_atomic(str(target), b"new")
    assert (target / "inside").read_text() == "kept"
    assert sorted(os.listdir(tmp_path)) == ["taken"]


def test_large_payload_is_written_whole(tmp_path):
    target = tmp_path / "big"
    payload = os.urandom(3 * 1024 * 1024)
    files.write_atomic(str(target), payload, durable=False)
    assert target.read_bytes() == payload
