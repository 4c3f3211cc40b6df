"""A reproducible "busy machine": many loopback sockets in TIME-WAIT plus unrelated listeners.

    python bench/busy_machine.py [--time-wait 12000] [--listen 127.0.0.1:31000,...]
                                 [--max-seconds 1800] [--netns] [-- COMMAND ...]

What a busy developer machine or CI runner looks like to the tests: thousands of recently
closed connections hold local ports of the ephemeral range (32768-60999) in TIME-WAIT for 60 s,
and unrelated programs listen on ports that a naive test would pick. The tool keeps at least
``--time-wait`` client-side TIME-WAIT sockets on 127.0.0.1 (it counts them in /proc/net/tcp
twice a second and opens and closes just enough new connections to its own listener), and keeps
listening on ``--listen`` (default: ports inside the old integration-test range 31000-45500).

Bounded: at most ``--max-seconds`` (default 1800) and at most 4000 new connections per second;
with a COMMAND it runs the command, stops when it exits and returns its exit status. On exit it
closes every socket it opened; the TIME-WAIT entries then expire on their own within 60 s.

``--netns`` runs the tool and COMMAND in a private network namespace (``unshare -n``, ``-r``
when not root; loopback brought up), so the load does not disturb other users of the machine:
inside it, the tool's sockets and the tests' sockets share one network stack exactly as they
would on a busy host. Linux only.
"""

from __future__ import annotations

import argparse
import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

log = logging.getLogger("busy_machine")

IN_NETNS_ENV = "RINGKV_BUSY_IN_NETNS"
MAX_RATE = 2000  # new connections per tick
TICK_S = 0.5  # top up twice a second: entries expire continuously, the count must not dip
TIME_WAIT = "06"  # state code in /proc/net/tcp


def time_wait_count() -> int:
    """Sockets in TIME-WAIT in this network namespace (what ``ss -tan state time-wait`` lists)."""
    count = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path, encoding="ascii") as f:
                next(f)
                count += sum(1 for line in f if line.split()[3] == TIME_WAIT)
        except OSError:
            continue
    return count


def ss_time_wait_count() -> int | None:
    """The same count from ``ss`` (header line excluded), to cross-check; None without ss."""
    if shutil.which("ss") is None:
        return None
    out = subprocess.run(
        ["ss", "-tan", "state", "time-wait"], capture_output=True, text=True, check=False
    ).stdout
    return max(0, len(out.splitlines()) - 1)


class Acceptor(threading.Thread):
    """Accepts on every listener, reads each connection to EOF, then closes it (so the client
    closes first and its side goes to TIME-WAIT)."""

    def __init__(self, listeners: list[socket.socket]) -> None:
        super().__init__(name="busy-acceptor", daemon=True)
        self.sel = selectors.DefaultSelector()
        for lst in listeners:
            lst.setblocking(False)
            self.sel.register(lst, selectors.EVENT_READ, "listener")
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for key, _ in self.sel.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if key.data == "listener":
                    self._accept(sock)
                else:
                    self._read(sock)

    def _accept(self, lst: socket.socket) -> None:
        try:
            conn, _ = lst.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        self.sel.register(conn, selectors.EVENT_READ, "conn")

    def _read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.sel.unregister(conn)
            conn.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.sel.close()


def listen(spec: str) -> socket.socket:
    host, port = spec.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(1024)
    return s


def churn(target: tuple[str, int], n: int) -> int:
    """Open and close ``n`` connections to ``target``; return how many succeeded."""
    done = 0
    for _ in range(n):
        try:
            with socket.create_connection(target, timeout=2) as c:
                c.shutdown(socket.SHUT_WR)
                c.recv(1)  # wait for the server's close: our side then enters TIME-WAIT
            done += 1
        except OSError as exc:
            log.warning("connection to %s:%d failed: %s", *target, exc)
            break
    return done


def keep_busy(args: argparse.Namespace, stop: threading.Event) -> None:
    listeners = [listen(spec) for spec in args.listen.split(",")]
    target = listeners[0].getsockname()[:2]
    acceptor = Acceptor(listeners)
    acceptor.start()
    names = ", ".join("{}:{}".format(*s.getsockname()[:2]) for s in listeners)
    log.info("listening on %s", names)
    deadline = time.monotonic() + args.max_seconds
    last_report = 0.0
    opened = 0
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            tick = time.monotonic()
            have = time_wait_count()
            opened += churn(target, min(MAX_RATE, max(0, args.time_wait - have)))
            if tick - last_report >= 10:
                log.info(
                    "TIME-WAIT: %d (/proc/net/tcp), %s (ss); connections opened so far: %d",
                    have,
                    ss_time_wait_count(),
                    opened,
                )
                last_report = tick
            stop.wait(max(0.0, TICK_S - (time.monotonic() - tick)))
    finally:
        acceptor.stop()
        log.info("stopped: %d connections opened; TIME-WAIT now %d", opened, time_wait_count())


def reexec_in_netns(argv: list[str]) -> int:
    """Run this script again inside a new network namespace (loopback up)."""
    flags = ["-n"] if os.geteuid() == 0 else ["-r", "-n"]
    inner = f'ip link set lo up && exec {sys.executable} {os.path.abspath(__file__)} "$@"'
    cmd = ["unshare", *flags, "sh", "-c", inner, "busy_machine", *argv]
    return subprocess.call(cmd, env={**os.environ, IN_NETNS_ENV: "1"})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--time-wait", type=int, default=12000, help="TIME-WAIT sockets to keep")
    p.add_argument("--listen", default="127.0.0.1:31000,127.0.0.1:37000,127.0.0.1:45000")
    p.add_argument("--max-seconds", type=float, default=1800.0)
    p.add_argument("--warmup-seconds", type=float, default=120.0, help="max wait for the count")
    p.add_argument("--netns", action="store_true", help="run in a private network namespace")
    args = p.parse_args(argv)
    if not 0 <= args.time_wait <= 25000:
        p.error("--time-wait must be in [0, 25000] (the ephemeral range has 28232 ports)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s busy_machine: %(message)s")
    if args.netns and not os.environ.get(IN_NETNS_ENV):
        rest = [a for a in argv if a != "--netns"]
        return reexec_in_netns([*rest, "--", *command] if command else rest)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    busy = threading.Thread(target=keep_busy, args=(args, stop), name="busy")
    busy.start()
    try:
        warm = time.monotonic() + args.warmup_seconds
        while time_wait_count() < args.time_wait and time.monotonic() < warm and busy.is_alive():
            time.sleep(0.5)
        log.info("ready: TIME-WAIT %d (/proc), %s (ss)", time_wait_count(), ss_time_wait_count())
        if not command:
            busy.join()
            return 0
        log.info("running %s", " ".join(command))
        return subprocess.call(command)
    finally:
        stop.set()
        busy.join(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
