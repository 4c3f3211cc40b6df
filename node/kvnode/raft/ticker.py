"""One thread drives every Raft group of the process.

PySyncObj's ``autoTick`` starts one thread per group, which collapses under the GIL at a few
dozen groups (research/libraries.md §A4). Instead every ``SyncObj`` gets a *facade* poller whose
``subscribe`` registers the descriptor on one shared real poller and whose ``poll`` does nothing.
The ticker thread waits on the real poller, ticks the groups whose sockets (or command pipes)
became ready, and ticks every awake group at least every ``full_tick_s`` so heartbeats and
election timers run (a quiesced group has neither, ``kvnode.raft.quiesce``).

What must stay true: PySyncObj objects are only ever touched from the ticker thread (creation,
ticks, destruction, membership calls) — other threads hand work over with ``call`` — except
``_applyCommand``, which PySyncObj makes thread-safe and which wakes the loop through the group's
pipe notifier.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import queue
import select
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from kvnode.raft import compat, failstop

log = logging.getLogger(__name__)
T = TypeVar("T")


class _FacadePoller(compat.Poller):  # type: ignore[misc]
    """Per-group poller that forwards registrations to the shared poller and marks its group
    dirty when one of its descriptors fires."""

    def __init__(self, ticker: SharedTicker) -> None:
        self._ticker = ticker
        self.owner: Any = None

    def subscribe(self, descr: int, callback: Callable[[int, int], None], eventMask: int) -> None:
        def fired(d: int, ev: int) -> None:
            if self.owner is not None:
                self._ticker.mark_dirty(self.owner)
            callback(d, ev)

        self._ticker.real_poller.subscribe(descr, fired, eventMask)

    def unsubscribe(self, descr: int) -> None:
        self._ticker.real_poller.unsubscribe(descr)

    def poll(self, timeout: float) -> None:
        return None

    def hold_send(self, conn: Any, message: Any) -> bool:
        """Called by every Raft connection's ``send`` (``compat``): True when the ticker keeps
        the message until its loop's WAL sync."""
        return self._ticker.hold(conn, message)


class EpollPoller(compat.Poller):  # type: ignore[misc]
    """PySyncObj's poller interface over epoll. PySyncObj's ``PollPoller`` hands the kernel
    every registered descriptor on each wait: with a replica per partition, two Raft
    connections and a listening socket each, an idle node with 256 partitions spent most of its
    CPU in ``poll`` itself (a py-spy showed 43 % of its samples there). epoll's wait costs what
    is ready, not what is registered."""

    _IN = {
        compat.POLL_EVENT_TYPE.READ: select.EPOLLIN,
        compat.POLL_EVENT_TYPE.WRITE: select.EPOLLOUT,
        compat.POLL_EVENT_TYPE.ERROR: select.EPOLLERR,
    }

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._callbacks: dict[int, Callable[[int, int], None]] = {}

    def subscribe(self, descr: int, callback: Callable[[int, int], None], eventMask: int) -> None:
        mask = 0
        for ours, theirs in self._IN.items():
            if eventMask & ours:
                mask |= theirs
        self._callbacks[descr] = callback
        try:
            self._epoll.register(descr, mask)
        except FileExistsError:
            self._epoll.modify(descr, mask)  # re-subscribing changes the mask, as poll() does

    def unsubscribe(self, descr: int) -> None:
        self._callbacks.pop(descr, None)
        # Already closed (the kernel dropped it from the set) or never registered: nothing to do.
        with contextlib.suppress(KeyError, FileNotFoundError, OSError):
            self._epoll.unregister(descr)

    def poll(self, timeout: float) -> None:
        for descr, event in self._epoll.poll(timeout):
            mask = 0
            if event & select.EPOLLIN:
                mask |= compat.POLL_EVENT_TYPE.READ
            if event & select.EPOLLOUT:
                mask |= compat.POLL_EVENT_TYPE.WRITE
            if event & (select.EPOLLERR | select.EPOLLHUP):
                mask |= compat.POLL_EVENT_TYPE.ERROR
            callback = self._callbacks.get(descr)
            if callback is not None:  # unsubscribed by an earlier callback of this round
                callback(descr, mask)

    def close(self) -> None:
        self._epoll.close()


class SharedTicker:
    """The single thread that owns and ticks all PySyncObj groups of this process."""

    def __init__(self, *, full_tick_s: float = 0.05, name: str = "raft-ticker") -> None:
        self.real_poller = EpollPoller()
        self._full_tick_s = full_tick_s
        self._groups: dict[int, Any] = {}  # id -> group
        self._awake: dict[int, Any] = {}  # the groups every full tick ticks (not quiesced)
        self._dirty: set[int] = set()
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]]
        self._calls = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._wake_r, self._wake_w = _pipe()
        self.real_poller.subscribe(self._wake_r, self._drain_wake, compat.POLL_EVENT_TYPE.READ)
        self.last_loop_monotonic = time.monotonic()
        self.tick_errors = 0
        self.group_ticks = 0  # doTick calls (observability: quiesced groups are not ticked)
        self._full_tick_hooks: list[Callable[[], None]] = []
        # durability=fsync: the node's WAL (kvnode.raft.wal), synced at the end of every loop
        # before the Raft messages the loop sent leave the process.
        self.wal: Any = None
        self._held: list[tuple[Any, Any]] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, *, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"raft ticker did not stop within {timeout}s")
        self.real_poller.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- cross-thread API --------------------------------------------------------------------
    def call(self, fn: Callable[[], T], *, timeout: float = 30.0) -> T:
        """Run ``fn`` in the ticker thread and return its result (re-raising its exception)."""
        if threading.current_thread() is self._thread:
            return fn()
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._calls.put((fn, fut))
        self._wake()
        return fut.result(timeout)

    def post(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Queue ``fn`` for the ticker thread without waiting (for the event loop)."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._calls.put((fn, fut))
        self._wake()
        return fut

    @contextlib.contextmanager
    def constructing(self) -> Iterator[_FacadePoller]:
        """Within this block (ticker thread only), new SyncObjs get a facade poller."""
        facade = _FacadePoller(self)
        with compat.facade_poller(facade):
            yield facade

    def add_group(self, group: Any, facade: _FacadePoller) -> None:
        facade.owner = group
        self._groups[id(group)] = group
        self._awake[id(group)] = group
        self._dirty.add(id(group))

    def remove_group(self, group: Any) -> None:
        self._groups.pop(id(group), None)
        self._awake.pop(id(group), None)
        self._dirty.discard(id(group))

    def sleep(self, group: Any) -> None:
        """Stop ticking ``group`` on full ticks (quiesced: ``kvnode.raft.quiesce``); it is still
        ticked whenever one of its sockets or its command pipe fires. Ticker thread."""
        self._awake.pop(id(group), None)

    def wake(self, group: Any) -> None:
        """Tick ``group`` on every full tick again, starting with this loop. Ticker thread."""
        if id(group) in self._groups:
            self._awake[id(group)] = group
            self._dirty.add(id(group))

    def awake_groups(self) -> list[Any]:
        return list(self._awake.values())

    def on_full_tick(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` in the ticker thread after every full tick (status snapshots)."""
        self._full_tick_hooks.append(hook)

    def mark_dirty(self, group: Any) -> None:
        self._dirty.add(id(group))

    # -- loop --------------------------------------------------------------------------------
    def _run(self) -> None:
        """The loop, fail-stopped on anything unexpected: a ticker thread that dies leaves a
        process that answers HTTP but never ticks Raft again (``/healthz`` ``ticker_dead``),
        which nothing but a liveness probe would restart. Exiting lets any supervisor do it."""
        try:
            self._loop()
        except BaseException:
            failstop.fail_stop(log, "raft ticker loop failed")

    def _loop(self) -> None:
        next_full = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            self.last_loop_monotonic = now
            self.real_poller.poll(max(0.0, min(self._full_tick_s, next_full - now)))
            self._run_calls()
            full = time.monotonic() >= next_full
            if full:
                next_full = time.monotonic() + self._full_tick_s
            self._tick(full=full)
            if full:
                self._run_hooks()
            self._release()

    def hold(self, conn: Any, message: Any) -> bool:
        if self.wal is None or threading.current_thread() is not self._thread:
            return False
        self._held.append((conn, message))
        return True

    def _release(self) -> None:
        """Sync the WAL (one ``fdatasync`` for every journal change of the loop), then send
        the messages held meanwhile, in order."""
        if self.wal is None:
            return
        try:
            self.wal.sync()
        except OSError:
            # Entries are appended in memory but not on disk: unsafe to go on (as in _tick).
            failstop.fail_stop(log, "raft WAL sync failed")
        held, self._held = self._held, []
        for conn, message in held:
            compat.send_held(conn, message)
        self.wal.maybe_rotate()

    def _tick(self, *, full: bool) -> None:
        dirty, self._dirty = self._dirty, set()
        # A quiesced group (kvnode.raft.quiesce) has no timer to run: it is ticked only when one
        # of its sockets or its command pipe fires, or when it is woken.
        groups = list(self._awake.values()) if full else []
        for gid in dirty:
            group = self._groups.get(gid)
            if group is not None and not (full and gid in self._awake):
                groups.append(group)
        for group in groups:
            self.group_ticks += 1
            try:
                group.doTick(0.0)
            except OSError:
                # PySyncObj's transport handles its socket errors itself; an OSError out
                # of a tick is storage (journal entry or term/vote record, e.g. ENOSPC),
                # already applied in memory but not on disk: unsafe to go on.
                failstop.fail_stop(log, "raft tick failed for %s", _label(group))
            except Exception:
                self.tick_errors += 1
                log.exception("raft tick failed for %s", _label(group))

    def _run_hooks(self) -> None:
        for hook in self._full_tick_hooks:
            try:
                hook()
            except Exception:
                log.exception("raft ticker hook failed")

    def _run_calls(self) -> None:
        while True:
            try:
                fn, fut = self._calls.get_nowait()
            except queue.Empty:
                return
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    def _drain_wake(self, descr: int, event: int) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(descr, 4096):
                pass


def _label(group: Any) -> object:
    return getattr(group, "label", group)


def _pipe() -> tuple[int, int]:
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    return r, w
