"""Watch: the per-partition change history and the resume cursor (no I/O, no asyncio).

``model`` (a committed change and its position), ``history`` (the bounded, thread-safe history
each replica records on its apply path) and ``cursor`` (the user-facing resume token). The
service layer (``kvnode.service.watch``) fans out over partitions; see node/DESIGN.md "Watch".
"""
