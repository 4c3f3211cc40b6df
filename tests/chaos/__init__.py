"""The chaos suite: seeded fault scenarios against real local clusters, with every client
operation recorded and checked.

- ``sandbox``: ``python -m tests.chaos`` re-executes itself in fresh network, mount and pid
  namespaces (root), so nothing a run makes can outlive it or touch the machine.
- ``netns``: one network namespace per node on a bridge (loopback-range addresses), so one node
  can be cut off both ways with tc and healed.
- ``faults``: kill -9/restart, SIGSTOP/SIGCONT, isolate/heal, fill/free a tmpfs data directory,
  and ``heal_all`` (also restarts a node whose /healthz reports a stalled or dead Raft ticker,
  as a Kubernetes liveness probe would; a storage failure itself now exits the node).
- ``nemesis``: the scenarios (seeded schedules of faults, each verified to have taken effect).
- ``workload``: five clients over a few keys (strong/eventual gets, puts, deletes, CAS by
  version and by value), recorded for ``tests.support.linearizability``.
- ``runner``: one run (cluster, workload, faults, heal, final reads, checks, kept evidence).
- ``test_chaos_ci``: the bounded subset the normal test run includes.
"""
