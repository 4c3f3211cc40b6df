"""Schemathesis hooks for the contract run: keep random admin input from destroying the cluster,
and keep watch streams short (see ``WATCH_DURATION_S``).

Only two admin operations can change the cluster when given valid-looking input, and both are
rewritten here (everything else is sent as generated):

- ``PUT /v1/admin/map``: a well-formed map with a newer epoch would be adopted and move every
  partition to made-up nodes. Any epoch >= 1 is rewritten to 0, which is older than the running
  map's, so the node must answer 409 ``stale_epoch`` (after validating the body: malformed maps
  still get their 400). Adoption itself is covered by tests/integration/test_admin_move.py.
- ``POST /v1/admin/partitions/{p}/members`` with ``remove``: naming a real node (schemathesis
  learns ids such as ``node-1`` from ``GET /v1/cluster``) would shrink a Raft group. Such a value
  is rewritten to a node id that is not in the map, so the node must answer 400. ``add`` of an
  existing voter is a no-op and is left alone.

``DELETE /v1/admin/partitions/{p}`` (drop) needs no rewrite: the test cluster places every
partition on every node (replication = nodes), so the node must refuse with 412.
"""

from __future__ import annotations

import re
from typing import Any

import schemathesis

REAL_NODE_ID = re.compile(r"node-[0-9]+")
# A watch streams until the client leaves or `duration_s` passes; the internal feed waits up to
# `wait_ms` for a change. Valid values of those are capped so a case takes well under a second
# (absent ones are set): the stream's contents are tested in tests/integration/test_watch.py.
WATCH_DURATION_S = 0.3
WATCH_WAIT_MS = 200
NOT_A_NODE = "not-a-node-of-this-map"


def _cap(query: dict[str, Any], name: str, cap: float) -> None:
    value = query.get(name)
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if value is None or (numeric and value > cap):
        query[name] = cap


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    op = context.operation
    if op is not None and op.path in ("/v1/watch", "/v1/internal/watch"):
        query = dict(case.query or {})
        if op.path == "/v1/watch":
            _cap(query, "duration_s", WATCH_DURATION_S)
        else:
            _cap(query, "wait_ms", WATCH_WAIT_MS)
        case.query = query
        return case
    if op is None or not isinstance(case.body, dict):
        return case
    body = case.body
    if (op.method.upper(), op.path) == ("PUT", "/v1/admin/map"):
        epoch = body.get("epoch")
        if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 1:
            case.body = {**body, "epoch": 0}
    elif op.path == "/v1/admin/partitions/{p}/members":
        remove = body.get("remove")
        if isinstance(remove, str) and REAL_NODE_ID.fullmatch(remove):
            case.body = {**body, "remove": NOT_A_NODE}
    return case
