"""Online backup of a whole cluster and restore into a new one (issue 13).

* ``manifest`` (pure): what a backup directory holds and the checks a restore target must pass.
* ``files``: reading and verifying partition files and the manifest on disk.
* ``take``: an online backup over the nodes' admin API (each partition on its leader, at one
  log index, digest-checked against the replica before it counts).
* ``restore``: pushing a verified backup into the nodes of a new cluster before its map is
  installed, then installing the map and checking every partition's digest.

Client side only: like ``kvnode.rebalance`` it talks to nodes through ``kvnode.client`` and never
imports the Raft or service layers (see ``.importlinter``).
"""
