"""The ticker's epoll-based poller on real pipes: PySyncObj's Poller contract (subscribe
replaces a registration, unsubscribe of a closed or unknown descriptor is harmless, events map
to POLL_EVENT_TYPE)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from kvnode.raft import compat
from kvnode.raft.ticker import EpollPoller

READ, WRITE, ERROR = (
    compat.POLL_EVENT_TYPE.READ,
    compat.POLL_EVENT_TYPE.WRITE,
    compat.POLL_EVENT_TYPE.ERROR,
)


@pytest.fixture
def poller() -> Iterator[EpollPoller]:
    p = EpollPoller()
    yield p
    p.close()


def test_readable_and_writable_events_reach_their_callbacks(poller: EpollPoller) -> None:
    r, w = os.pipe()
    seen: list[tuple[int, int]] = []
    try:
        poller.subscribe(r, lambda d, e: seen.append((d, e)), READ | ERROR)
        poller.subscribe(w, lambda d, e: seen.append((d, e)), WRITE)
        poller.poll(0)
        assert seen == [(w, WRITE)]  # nothing to read yet
        seen.clear()
        poller.subscribe(w, lambda d, e: seen.append((d, e)), READ)  # re-subscribe: new mask
        os.write(w, b"x")
        poller.poll(0)
        assert seen == [(r, READ)]
    finally:
        os.close(r)
        os.close(w)


def test_a_closed_writer_is_reported_as_an_error_on_the_reader(poller: EpollPoller) -> None:
    r, w = os.pipe()
    seen: list[int] = []
    try:
        poller.subscribe(r, lambda d, e: seen.append(e), READ | ERROR)
        os.close(w)
        poller.poll(0)
        assert seen
        assert seen[0] & ERROR
    finally:
        os.close(r)


def test_unsubscribe_stops_events_and_tolerates_closed_or_unknown_descriptors(
    poller: EpollPoller,
) -> None:
    r, w = os.pipe()
    seen: list[int] = []
    poller.subscribe(r, lambda d, e: seen.append(e), READ)
    os.write(w, b"x")
    poller.unsubscribe(r)
    poller.poll(0)
    assert seen == []
    poller.unsubscribe(r)  # twice
    poller.unsubscribe(12345)  # never registered
    os.close(r)
    os.close(w)
    poller.unsubscribe(r)  # already closed
    assert poller.poll(0.01) is None
