"""Issue 12: tokens and credential files are re-read when they change (rotation, no restart),
and a broken edit keeps the last good content instead of locking everyone out."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from kvnode.auth import files, tokens
from kvnode.auth.tokens import Role


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def write_tokens(path: Path, *pairs: tuple[str, str]) -> None:
    doc = {"tokens": [tokens.entry_json(name=n, role=Role.READ, token=t) for n, t in pairs]}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)  # a new inode, as an editor or a Secret volume update makes


def test_rotation_is_seen_within_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    old, new = tokens.new_token(), tokens.new_token()
    write_tokens(path, ("app", old))
    clock = Clock()
    watched = files.WatchedFile(
        str(path), files.parse_tokens_file, what="tokens file", interval_s=1.0, clock=clock
    )
    assert watched.get().authenticate(old) is not None
    write_tokens(path, ("app", new))
    clock.now = 0.5  # within the interval: no stat, the old table still answers
    assert watched.get().authenticate(old) is not None
    clock.now = 1.0
    table = watched.get()
    assert table.authenticate(new) is not None
    assert table.authenticate(old) is None
    assert watched.reloads == 1


def test_a_broken_file_keeps_the_last_good_table_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens.json"
    tok = tokens.new_token()
    write_tokens(path, ("app", tok))
    clock = Clock()
    watched = files.WatchedFile(
        str(path), files.parse_tokens_file, what="tokens file", interval_s=1.0, clock=clock
    )
    path.write_text('{"tokens": [')  # a half-saved edit
    with caplog.at_level(logging.ERROR):
        for i in range(1, 4):
            clock.now = float(i)
            assert watched.get().authenticate(tok) is not None
    assert len([r for r in caplog.records if "unusable" in r.getMessage()]) == 1
    path.unlink()
    clock.now = 10.0
    assert watched.get().authenticate(tok) is not None
    write_tokens(path, ("app", tok), ("other", tokens.new_token()))
    clock.now = 11.0
    assert len(watched.get().entries) == 2


def test_a_missing_or_invalid_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        files.tokens_file(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"tokens": [{"name": "x"}]}')
    with pytest.raises(ValueError, match="role must be"):
        files.tokens_file(str(bad))


def test_secret_file_strips_newline_and_follows_symlink_swaps(tmp_path: Path) -> None:
    # A Kubernetes Secret volume: <dir>/cluster-token -> ..data/cluster-token, and an update
    # swaps the ..data symlink atomically.
    first, second = tmp_path / "v1", tmp_path / "v2"
    first.mkdir()
    second.mkdir()
    (first / "cluster-token").write_text("rkv_one\n")
    (second / "cluster-token").write_text("rkv_two")
    (tmp_path / "..data").symlink_to(first)
    (tmp_path / "cluster-token").symlink_to(tmp_path / "..data" / "cluster-token")
    clock = Clock()
    watched = files.WatchedFile(
        str(tmp_path / "cluster-token"), files.parse_secret, what="c", interval_s=1, clock=clock
    )
    assert watched.get() == "rkv_one"
    tmp_link = tmp_path / "..data_tmp"
    tmp_link.symlink_to(second)
    os.replace(tmp_link, tmp_path / "..data")
    clock.now = 2.0
    assert watched.get() == "rkv_two"


@pytest.mark.parametrize("raw", [b"", b"\n", b"two words", "é\xff".encode("latin-1")])
def test_secret_file_content_must_be_one_token(raw: bytes) -> None:
    with pytest.raises(ValueError, match="one token") as info:
        files.parse_secret(raw)
    assert "0x" not in str(info.value)  # not even one byte of the file
