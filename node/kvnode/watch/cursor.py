"""The watch resume token: one string holding a position per partition.

A prefix spans every partition and each partition has its own log, so resuming needs one
position per partition. The token is ``w1.<partitions>.<pos>~<pos>~...`` with one ``Position``
text per partition in partition order (``120`` or ``120.3``, see ``kvnode.watch.model``). It is
opaque to users: they store the last one they saw and pass it back as ``from_version``. A plain
integer ``N`` as ``from_version`` means "every change with version >= N", on every partition.
Pure functions only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from kvnode.core import errors
from kvnode.watch.model import WHOLE, Position

TOKEN_PREFIX = "w1."
MAX_TOKEN_CHARS = 64 * 1024
_VERSION = re.compile(r"[0-9]{1,18}")
_COUNT = re.compile(r"[0-9]{1,6}")


def encode(positions: Mapping[int, Position], partitions: int) -> str:
    """Token for ``positions`` (every partition 0..partitions-1 must be present)."""
    parts = [positions[p].to_text() for p in range(partitions)]
    return f"{TOKEN_PREFIX}{partitions}." + "~".join(parts)


def decode(token: str, partitions: int) -> dict[int, Position]:
    """Positions of a token made by ``encode`` for a cluster of ``partitions`` partitions;
    InvalidArgument (naming ``from_version``) for anything else."""
    if len(token) > MAX_TOKEN_CHARS or not token.startswith(TOKEN_PREFIX):
        raise _bad(f"is not a resume token: {token[:60]!r}")
    count, _, rest = token[len(TOKEN_PREFIX) :].partition(".")
    if not _COUNT.fullmatch(count):
        raise _bad(f"is not a resume token: {token[:60]!r}")
    if int(count) != partitions:
        raise _bad(
            f"was made for {int(count)} partitions; this cluster has {partitions}",
            partitions=partitions,
        )
    texts = rest.split("~")
    if len(texts) != partitions:
        raise _bad(f"holds {len(texts)} positions for {partitions} partitions")
    try:
        return {p: Position.from_text(t) for p, t in enumerate(texts)}
    except ValueError as exc:
        raise _bad(str(exc)) from None


def partitions_of(token: str) -> int:
    """The partition count a token was made for (InvalidArgument if it is not a token)."""
    count = token[len(TOKEN_PREFIX) :].partition(".")[0] if token.startswith(TOKEN_PREFIX) else ""
    if not _COUNT.fullmatch(count) or int(count) < 1:
        raise _bad(f"is not a resume token: {token[:60]!r}")
    return int(count)


def parse_from(raw: str | None, partitions: int) -> dict[int, Position] | None:
    """``from_version`` as positions: None (absent: from now), a token, or an integer N
    (every partition from version N inclusive)."""
    if raw is None:
        return None
    if _VERSION.fullmatch(raw):
        start = max(int(raw) - 1, 0)
        return dict.fromkeys(range(partitions), Position(start, WHOLE))
    return decode(raw, partitions)


def _bad(what: str, **details: object) -> errors.InvalidArgument:
    return errors.InvalidArgument(f"from_version {what}", field="from_version", **details)
