"""The ticker's hold on Raft messages in ``durability=fsync`` (``kvnode.raft.ticker``): what a
loop sends leaves only after that loop's WAL sync, in order; with a fake WAL and connections
(the real ones are exercised by the durability tests)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kvnode.raft import compat
from kvnode.raft.ticker import SharedTicker

CONNECTED = compat._CONNECTED


class FakeWal:
    def __init__(self, events: list[Any]) -> None:
        self.events = events
        self.dirty = False

    def sync(self) -> None:
        if self.dirty:
            self.events.append("sync")
            self.dirty = False

    def maybe_rotate(self) -> None:
        pass


class FakeConn:
    def __init__(self, events: list[Any], sent: threading.Event) -> None:
        self.events = events
        self.sent = sent
        self.state = CONNECTED

    def send(self, message: Any) -> None:
        self.events.append(("send", message))
        self.sent.set()


@pytest.fixture
def ticker() -> Iterator[SharedTicker]:
    t = SharedTicker()
    t.start()
    yield t
    t.stop()


def test_messages_leave_after_the_loops_wal_sync_in_order(ticker: SharedTicker) -> None:
    events: list[Any] = []
    wal = FakeWal(events)
    ticker.wal = wal
    sent = threading.Event()
    conn = FakeConn(events, sent)

    def loop_work() -> list[bool]:
        wal.dirty = True  # a journal change recorded in this loop
        held = [ticker.hold(conn, "append_entries_response 1"), ticker.hold(conn, "vote 2")]
        events.append("held")
        return held

    assert ticker.call(loop_work) == [True, True]
    assert sent.wait(10), f"held messages never sent: {events}"
    ticker.call(lambda: None)  # one more loop: the release of the first one is complete
    assert events == [
        "held",
        "sync",
        ("send", "append_entries_response 1"),
        ("send", "vote 2"),
    ]


def test_a_message_for_a_connection_closed_meanwhile_is_dropped(ticker: SharedTicker) -> None:
    events: list[Any] = []
    ticker.wal = FakeWal(events)
    sent = threading.Event()
    closed, open_ = FakeConn(events, sent), FakeConn(events, sent)

    def loop_work() -> None:
        ticker.hold(closed, "lost")
        ticker.hold(open_, "kept")
        closed.state = None  # disconnected before the loop ended

    ticker.call(loop_work)
    assert sent.wait(10), f"held messages never sent: {events}"
    assert events == [("send", "kept")]


def test_nothing_is_held_without_a_wal_or_outside_the_ticker_thread(ticker: SharedTicker) -> None:
    conn = FakeConn([], threading.Event())
    assert ticker.call(lambda: ticker.hold(conn, "m")) is False  # process mode: no WAL
    ticker.wal = FakeWal([])
    assert ticker.hold(conn, "m") is False  # not the ticker thread: sent as PySyncObj does


def test_the_transport_offers_each_message_to_its_groups_poller() -> None:
    offered: list[Any] = []
    conn = FakeConn([], threading.Event())

    class Poller:
        def hold_send(self, c: Any, message: Any) -> bool:
            offered.append((c, message))
            return True

    class SyncObj:
        _poller = Poller()

    class Transport:
        _syncObj = SyncObj()
        _connections = {"peer": conn}

    assert compat._send_or_hold(Transport(), "peer", {"type": "append_entries"}) is True
    assert offered == [(conn, {"type": "append_entries"})]
    assert conn.events == []  # held, not sent
