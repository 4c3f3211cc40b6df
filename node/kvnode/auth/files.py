"""Files re-read when they change: the tokens file and a secret (the cluster credential).

Rotation needs no restart: each reader checks the file's identity (device, inode, mtime, size;
``os.stat`` follows symlinks, so a Kubernetes Secret volume's atomic ``..data`` swap counts) at
most once per ``interval_s`` when asked for its value, and re-reads it when that changed. The
check runs in the caller (a request, a forwarded call): one ``stat`` per interval, no thread.

A file that becomes unreadable or invalid keeps the last good value and logs an error (once per
change of the file): a botched edit must not lock every client out, nor open the cluster. At
start, a missing or invalid file is an error (``load`` raises), so a typo fails loudly.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from kvnode.auth import tokens

log = logging.getLogger(__name__)

T = TypeVar("T")
StatKey = tuple[int, int, int, int]


def stat_key(path: str) -> StatKey | None:
    """The file's identity (see module doc); None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class WatchedFile(Generic[T]):
    """The parsed content of ``path``, re-parsed when the file changes (see module doc)."""

    def __init__(
        self,
        path: str,
        parse: Callable[[bytes], T],
        *,
        what: str,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._parse = parse
        self._what = what
        self._interval = interval_s
        self._clock = clock
        self._key = stat_key(path)
        self._value = self._read()  # at start a bad file raises
        self._checked = clock()
        self._failed_key: StatKey | None = None
        self.reloads = 0

    def _read(self) -> T:
        with open(self.path, "rb") as f:
            return self._parse(f.read())

    def get(self) -> T:
        now = self._clock()
        if now - self._checked >= self._interval:
            self._checked = now
            self.refresh()
        return self._value

    def refresh(self) -> bool:
        """Re-read now if the file changed; True when a new value was adopted."""
        key = stat_key(self.path)
        if key == self._key or (key is not None and key == self._failed_key):
            return False
        try:
            value = self._read()
        except (OSError, ValueError) as exc:
            if key != self._failed_key or key is None:
                log.error(
                    "%s %s unusable, keeping the previous one: %s", self._what, self.path, exc
                )
            self._failed_key = key
            return False
        self._key, self._failed_key, self._value = key, None, value
        self.reloads += 1
        log.info("%s %s reloaded", self._what, self.path)
        return True


def parse_tokens_file(raw: bytes) -> tokens.TokenTable:
    try:
        doc = json.loads(raw)
    except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"not JSON: {exc}") from None
    return tokens.parse_table(doc)


def parse_secret(raw: bytes) -> str:
    """A file holding one token (surrounding whitespace, e.g. a trailing newline, ignored)."""
    try:
        value = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError("must hold one token in UTF-8") from None  # no byte of it in the error
    if not value or any(c.isspace() for c in value):
        raise ValueError("must hold exactly one token")
    return value


def tokens_file(path: str, *, interval_s: float = 1.0) -> WatchedFile[tokens.TokenTable]:
    watched = WatchedFile(path, parse_tokens_file, what="tokens file", interval_s=interval_s)
    return watched


def secret_file(path: str, *, interval_s: float = 1.0) -> WatchedFile[str]:
    return WatchedFile(path, parse_secret, what="credential file", interval_s=interval_s)
