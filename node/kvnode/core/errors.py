"""Domain errors with stable machine-readable codes.

Every error a client can see is one of these. The HTTP layer maps ``code`` to a status in one
table (``kvnode.http.errors``); the client maps the JSON body back to the same class, so a
``NotLeader`` raised on a node is a ``NotLeader`` in the caller. ``retriable`` says whether the
operation certainly did not happen and may be retried as is.
"""

from __future__ import annotations

from typing import Any, ClassVar


class KvError(Exception):
    """Base of every ringkv domain error."""

    code: ClassVar[str] = "internal"
    retriable: ClassVar[bool] = False

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        body.update(self.details)
        return body


class InvalidArgument(KvError):
    """The request is malformed: wrong type, unknown field, bad UTF-8, out-of-range value."""

    code = "invalid_argument"


class TooLarge(KvError):
    """A key, value, batch or body exceeds its configured limit."""

    code = "too_large"


class NotFound(KvError):
    """The key does not exist (or has expired)."""

    code = "not_found"


class PreconditionFailed(KvError):
    """A compare-and-set condition (``if_version`` / ``if_value``) did not hold; nothing changed.

    ``details`` carry ``key`` and the ``current_version`` (0 when absent) so callers can retry.
    """

    code = "precondition_failed"


class NotLeader(KvError):
    """This replica is not the partition leader; ``details['leader']`` names a node id or None."""

    code = "not_leader"
    retriable = True


class StaleEpoch(KvError):
    """The caller's partition map is older than this node's; ``details["map"]`` is current."""

    code = "stale_epoch"
    retriable = True


class NotOwner(KvError):
    """This node holds no replica of the partition and was asked not to forward."""

    code = "not_owner"
    retriable = True


class Unavailable(KvError):
    """The partition has no leader / quorum right now; ``details['retry_after']`` is in seconds."""

    code = "unavailable"
    retriable = True


class Overloaded(KvError):
    """Too many requests in flight on this node or partition; back off and retry."""

    code = "overloaded"
    retriable = True


class UnknownOutcome(KvError):
    """A write's deadline passed before its outcome was known: it may or may not have committed."""

    code = "unknown_outcome"


class Unauthenticated(KvError):
    """No credential, or one the node does not know (HTTP 401 with ``WWW-Authenticate``)."""

    code = "unauthenticated"


class PermissionDenied(KvError):
    """The credential is known but its role or key prefix does not allow this (HTTP 403)."""

    code = "permission_denied"


class Compacted(KvError):
    """A watch asked to resume from a position older than the change history kept;
    ``details['partition']`` names one such partition, ``details['kept_after']`` what is kept."""

    code = "compacted"


class TlsVerifyFailed(KvError):
    """A node's TLS certificate was not accepted: not signed by a trusted CA (the wrong CA
    bundle, ``--cacert``), or not naming the host the call was made to. Not retriable: another
    attempt meets the same certificate. ``details['node']`` names the endpoint."""

    code = "tls_verify_failed"


class Internal(KvError):
    """A bug or an unexpected failure; never used for bad input."""

    code = "internal"


ERRORS_BY_CODE: dict[str, type[KvError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        TooLarge,
        NotFound,
        PreconditionFailed,
        NotLeader,
        StaleEpoch,
        NotOwner,
        Unavailable,
        Overloaded,
        UnknownOutcome,
        Unauthenticated,
        PermissionDenied,
        Compacted,
        TlsVerifyFailed,
        Internal,
    )
}


def error_from_dict(body: dict[str, Any]) -> KvError:
    """Rebuild the domain error a node sent as JSON (unknown codes become ``Internal``)."""
    code = str(body.get("code", "internal"))
    message = str(body.get("message", code))
    details = {k: v for k, v in body.items() if k not in ("code", "message")}
    return ERRORS_BY_CODE.get(code, Internal)(message, **details)
