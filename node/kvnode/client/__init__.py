"""ringkv client: ``Client`` (async, smart routing and retries), ``SyncClient`` (blocking
facade) and ``NodeHttp`` (the pooled transport the node also uses to forward requests).

Layering: imports only ``kvnode.core`` and aiohttp, so the operator, the CLI and tests can use it
without pulling in storage or Raft.
"""

from kvnode.client.client import Client
from kvnode.client.sync import SyncClient
from kvnode.client.transport import NodeHttp
from kvnode.client.types import BatchItem, BatchOp, BatchResult, Deletion, Entry, Page
from kvnode.client.watch import Watcher, WatchEvent

__all__ = [
    "BatchItem",
    "BatchOp",
    "BatchResult",
    "Client",
    "Deletion",
    "Entry",
    "NodeHttp",
    "Page",
    "SyncClient",
    "WatchEvent",
    "Watcher",
]
