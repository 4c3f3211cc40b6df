"""Node settings: one typed object, read once from ``KVNODE_*`` environment variables.

Nothing else in the node reads ``os.environ``. Each field's docstring is its documentation; the
env var is the field name upper-cased with the ``KVNODE_`` prefix (e.g. ``KVNODE_HTTP_PORT``).
These field defaults are the only place defaults live: ``kvnode.raft.tuning.RaftTuning`` reads
its own from here rather than restating them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kvnode.core import envconfig
from kvnode.core.ops import Limits
from kvnode.watch.history import HistoryLimits

PREFIX = "KVNODE_"
_DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class NodeSettings:
    node_id: str
    """Stable identity of this node (the StatefulSet pod name on Kubernetes)."""
    data_dir: str
    """Directory for LevelDB stores, Raft journals, snapshots and the persisted partition map."""
    host: str = "127.0.0.1"
    """Advertised host name other nodes and clients use; must never change for this node."""
    bind_host: str = "127.0.0.1"
    """Address the HTTP and Raft listeners bind to (0.0.0.0 inside a pod)."""
    http_port: int = 7000
    """HTTP API port."""
    raft_port_base: int = 17000
    """Raft port of partition p is raft_port_base + p."""
    zone: str | None = None
    """Failure zone of this node, used for zone-aware placement."""
    map_file: str | None = None
    """JSON partition map to adopt at start if this node has none (or an older one)."""
    durability: str = "process"
    """'process': an acknowledged write survives kill -9 of every replica (page cache, no fsync).
    'fsync': every Raft journal entry and the term/vote record are synced before a replica
    acknowledges, so it also survives a simultaneous power loss of every replica. In both modes
    LevelDB applies are not synced: a store that a host restart may have damaged is rebuilt from
    the Raft snapshot and journal (node/DESIGN.md, Durability)."""
    group_commit_max_requests: int = 64
    """Most client write requests coalesced into one Raft entry by group commit (writes to a
    partition arriving while its previous entry is in flight share the next entry: one journal
    sync, one LevelDB write). 1 turns group commit off: every write is its own entry. A leader
    groups only once every replica of the partition confirmed it decodes grouped entries, so a
    rolling upgrade from a release without group commit needs no setting."""
    group_commit_max_inflight: int = 1
    """Group-commit entries of one partition in flight (proposed, not yet applied on the leader)
    before further writes queue for the next entry. 1 groups the most writes per entry; more
    pipelines entries behind each other at the cost of smaller groups."""
    read_mode: str = "readindex"
    """How a strong read is made linearizable. 'readindex': the leader confirms it still leads
    with a quorum probe round after the read arrives, no log entry (node/DESIGN.md). 'barrier':
    a coalesced barrier entry through the Raft log per round of reads (slower, the fallback)."""
    follower_reads: str = "on"
    """With read_mode 'readindex': 'on' lets a follower serve a strong read itself once the
    leader confirmed a read index for it (no forwarding of the request; node/DESIGN.md,
    "Consistency"); 'off' forwards every strong read to the partition leader."""
    heartbeat_s: float = 0.15
    """Raft append-entries period (heartbeat) of every group."""
    election_min_s: float = 1.0
    """Lower bound of the randomised election timeout (> 3 x heartbeat)."""
    election_max_s: float = 2.0
    """Upper bound of the randomised election timeout."""
    leader_fallback_s: float = 2.0
    """A leader that hears from no majority for this long steps down."""
    quiesce_idle_s: float = 2.0
    """A partition whose log has not moved for this long, fully replicated and applied on every
    replica, stops heartbeating: one beacon per node pair keeps its followers asleep, and any
    write, read barrier or silence of the leader's node wakes it (node/DESIGN.md, "Idle
    partitions"). 0 turns quiescing off."""
    ticker_stall_s: float = 10.0
    """/healthz fails (503) when the shared Raft ticker thread has not ticked for this long, so a
    liveness probe restarts a stuck node. Several election timeouts: a tick delayed by load must
    not get a healthy node restarted; must exceed election_max_s."""
    connection_retry_s: float = 1.0
    """Wait between reconnect attempts to a Raft peer."""
    compaction_min_entries: int = 20000
    """Log entries after which a group snapshots its state and truncates its journal."""
    compaction_min_time_s: float = 600.0
    """Seconds after which a group snapshots even if few entries were written."""
    request_timeout_s: float = 5.0
    """Default deadline for a client operation when the caller sends none."""
    max_inflight: int = 4096
    """Requests this node handles at once before answering 429 (backpressure)."""
    http_idle_timeout_s: float = 75.0
    """An HTTP connection without a complete request for this long is closed: bounds idle
    keep-alive connections, slowloris-style header drips and how long a connection flood holds
    file descriptors (aiohttp's default is an hour). Longer than clients' pool keep-alive
    (aiohttp's 15 s), so the client, not the server, drops an idle pooled connection and never
    reuses one the server is closing."""
    expiry_interval_s: float = 1.0
    """How often a partition leader proposes removal of expired (TTL) records."""
    watch_history_entries: int = 10_000
    """Change history kept per partition replica for watchers to resume from: at most this many
    log entries that changed something (memory only; a restarted replica starts empty)."""
    watch_history_bytes: int = 8 * 1024 * 1024
    """... and at most this many bytes of keys and values (64 bytes of overhead per change)."""
    watch_buffer_bytes: int = 1024 * 1024
    """Changes buffered per watcher between the partitions and its connection; when full, the
    watcher's feeds wait (a watcher that stays behind is cut off as 'compacted')."""
    watch_stall_s: float = 30.0
    """A watcher whose connection accepts nothing for this long while changes wait is cut off
    ('slow_consumer')."""
    watch_max_watchers: int = 1024
    """Watch streams this node serves at once before answering 429."""
    log_level: str = "INFO"
    """Python logging level."""
    max_key_bytes: int = _DEFAULT_LIMITS.max_key_bytes
    """Largest key, in UTF-8 bytes."""
    max_value_bytes: int = _DEFAULT_LIMITS.max_value_bytes
    """Largest value, in UTF-8 bytes."""
    max_batch_ops: int = _DEFAULT_LIMITS.max_batch_ops
    """Most operations in one batch."""
    max_body_bytes: int = _DEFAULT_LIMITS.max_body_bytes
    """Largest HTTP request body."""
    auth_tokens_file: str | None = None
    """JSON tokens file (README, Security): bearer tokens by SHA-256 with a role and an optional
    key prefix. Unset: authentication is OFF and anyone who reaches the port may do anything."""
    cluster_token_file: str | None = None
    """File holding this node's cluster credential: an admin token listed in the tokens file,
    sent on every node-to-node call (forwarding, rebalance, seeding). Required with auth."""
    auth_metrics: str = "open"
    """'open': /metrics needs no token (Prometheus scrapes it as it is); 'token': any valid
    token of the tokens file."""
    auth_reload_s: float = 1.0
    """At most this long after the tokens or credential file changes, the new one is in use."""
    tls_cert_file: str | None = None
    """PEM certificate (chain) the HTTP API presents; with ``tls_key_file`` and ``tls_ca_file``
    (all three or none) the API (client, admin, internal, probes, /metrics) is served over TLS
    1.2+ only. It must name this node's advertised ``host`` (a SAN): peers verify it. Unset:
    TLS is OFF and tokens and data cross the network in clear."""
    tls_key_file: str | None = None
    """PEM private key of ``tls_cert_file``."""
    tls_ca_file: str | None = None
    """PEM CA bundle this node verifies other nodes' certificates with (node-to-node calls)."""
    tls_reload_s: float = 10.0
    """At most this long after the TLS files change, new connections use the new ones."""
    raft_password_file: str | None = None
    """File holding the password every partition's Raft traffic is encrypted and authenticated
    with (PySyncObj's Fernet); every node of the cluster needs the same one. Read once at start:
    changing it needs a restart of every node (a node with another password cannot talk to the
    rest). Unset: Raft traffic is plain and unauthenticated."""

    @property
    def history_limits(self) -> HistoryLimits:
        return HistoryLimits(
            max_entries=self.watch_history_entries, max_bytes=self.watch_history_bytes
        )

    def tls_problem(self) -> str | None:
        """Why the TLS settings are unusable (None if fine): the three files come together."""
        given = {
            f"{PREFIX}TLS_CERT_FILE": self.tls_cert_file,
            f"{PREFIX}TLS_KEY_FILE": self.tls_key_file,
            f"{PREFIX}TLS_CA_FILE": self.tls_ca_file,
        }
        missing = [name for name, value in given.items() if not value]
        if missing and len(missing) < len(given):
            return f"TLS needs all of {', '.join(given)}; missing {', '.join(missing)}"
        return None

    @property
    def limits(self) -> Limits:
        return Limits(
            max_key_bytes=self.max_key_bytes,
            max_value_bytes=self.max_value_bytes,
            max_batch_ops=self.max_batch_ops,
            max_body_bytes=self.max_body_bytes,
        )

    def validate(self) -> None:
        if self.durability not in ("process", "fsync"):
            raise ValueError(
                f"{PREFIX}DURABILITY must be 'process' or 'fsync', not {self.durability!r}"
            )
        if self.group_commit_max_requests < 1 or self.group_commit_max_inflight < 1:
            raise ValueError(f"{PREFIX}GROUP_COMMIT_MAX_REQUESTS and _MAX_INFLIGHT must be >= 1")
        if self.read_mode not in ("readindex", "barrier"):
            raise ValueError(
                f"{PREFIX}READ_MODE must be 'readindex' or 'barrier', not {self.read_mode!r}"
            )
        if self.follower_reads not in ("on", "off"):
            raise ValueError(
                f"{PREFIX}FOLLOWER_READS must be 'on' or 'off', not {self.follower_reads!r}"
            )
        if self.auth_metrics not in ("open", "token"):
            raise ValueError(
                f"{PREFIX}AUTH_METRICS must be 'open' or 'token', not {self.auth_metrics!r}"
            )
        if self.auth_tokens_file and not self.cluster_token_file:
            raise ValueError(
                f"{PREFIX}AUTH_TOKENS_FILE needs {PREFIX}CLUSTER_TOKEN_FILE: nodes call each "
                "other with that admin token"
            )
        if self.auth_reload_s <= 0:
            raise ValueError(f"{PREFIX}AUTH_RELOAD_S must be positive")
        if self.tls_reload_s <= 0:
            raise ValueError(f"{PREFIX}TLS_RELOAD_S must be positive")
        if self.election_min_s <= 3 * self.heartbeat_s:
            raise ValueError("election_min_s must exceed 3 x heartbeat_s")
        if self.quiesce_idle_s < 0:
            raise ValueError(f"{PREFIX}QUIESCE_IDLE_S must be >= 0 (0: never quiesce)")
        if self.election_max_s <= self.election_min_s:
            raise ValueError("election_max_s must exceed election_min_s")
        if min(self.watch_history_entries, self.watch_history_bytes, self.watch_buffer_bytes) < 1:
            raise ValueError("watch history and buffer limits must be positive")
        if self.ticker_stall_s <= self.election_max_s:
            raise ValueError("ticker_stall_s must exceed election_max_s")
        if self.http_idle_timeout_s <= 0:
            raise ValueError("http_idle_timeout_s must be positive")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> NodeSettings:
        """Parse every field from ``env`` (missing → default; required fields must be set)."""
        settings = envconfig.from_env(cls, env, prefix=PREFIX)
        settings.validate()
        return settings
