"""The host-restart marker of a data directory (``kvnode.storage.unsynced``): when stores are
rebuilt, that only the first open of each store in a process destroys it, and the clean stop."""

from __future__ import annotations

import os
from pathlib import Path

from kvnode.storage import unsynced
from kvnode.storage.leveldb import LevelDBStore
from kvnode.storage.unsynced import UnsyncedStores


def marker(data_dir: Path) -> str | None:
    path = data_dir / unsynced.MARKER
    return path.read_text() if path.exists() else None


def test_the_running_kernel_has_a_boot_id() -> None:
    boot = unsynced.current_boot_id()
    assert len(boot) == 36  # a UUID
    assert boot.count("-") == 4
    assert unsynced.current_boot_id() == boot


def test_only_a_marker_of_another_boot_means_rebuild() -> None:
    assert not unsynced.must_rebuild(None, "b1")  # first start, or stopped cleanly
    assert not unsynced.must_rebuild("b1", "b1")  # the process died, the kernel did not
    assert unsynced.must_rebuild("b0", "b1")  # the host restarted with unsynced stores


def test_a_first_start_rebuilds_nothing_and_marks_the_directory(tmp_path: Path) -> None:
    stores = UnsyncedStores.begin(str(tmp_path), boot_id="b1")
    assert not stores.rebuild
    assert marker(tmp_path) == "b1"
    stores.end()
    assert marker(tmp_path) is None


def test_after_a_host_restart_each_store_is_destroyed_once_then_opened(tmp_path: Path) -> None:
    (tmp_path / "p00000").mkdir()
    path = str(tmp_path / "p00000" / "data")
    store = LevelDBStore.open(path)
    store.apply(7, puts={}, deletes=())
    store.close()
    (tmp_path / unsynced.MARKER).write_text("b0")
    stores = UnsyncedStores.begin(str(tmp_path), boot_id="b1")
    assert stores.rebuild
    assert marker(tmp_path) == "b1"  # a crash during the rebuild is detected again
    first = stores.open(path, LevelDBStore.open, LevelDBStore.destroy)
    assert first.applied_index() == 0  # empty: Raft reloads its snapshot and journal into it
    first.apply(9, puts={}, deletes=())
    first.close()
    again = stores.open(path, LevelDBStore.open, LevelDBStore.destroy)  # e.g. a join reopens
    assert again.applied_index() == 9
    again.close()
    assert stores.rebuilt == [path]


def test_a_restarted_process_on_the_same_boot_keeps_its_stores(tmp_path: Path) -> None:
    path = str(tmp_path / "data")
    UnsyncedStores.begin(str(tmp_path), boot_id="b1")  # the node that was killed
    store = LevelDBStore.open(path)
    store.apply(3, puts={}, deletes=())
    del store  # the process dies: no clean stop, the marker stays
    stores = UnsyncedStores.begin(str(tmp_path), boot_id="b1")
    assert not stores.rebuild
    reopened = stores.open(path, LevelDBStore.open, LevelDBStore.destroy)
    assert reopened.applied_index() == 3
    reopened.close()
    assert os.path.exists(tmp_path / unsynced.MARKER)
