"""Prometheus metrics of the operator itself (cloud call metrics live in flexinfra.cloud)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILE_TOTAL = Counter(
    "flexinfra_reconcile_total", "Reconcile runs by kind and result", ["kind", "result"]
)
RECONCILE_SECONDS = Histogram(
    "flexinfra_reconcile_duration_seconds",
    "Time spent in one reconcile run",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RECONCILE_PHASE_SECONDS = Histogram(
    "flexinfra_reconcile_phase_seconds",
    "Time spent in each phase of a reconcile pass: observe (inventory), quota (pre-checks), "
    "execute (cloud writes and load balancer waits)",
    ["kind", "phase"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
OBJECT_READY = Gauge(
    "flexinfra_object_ready",
    "1 when the object's Ready condition is True",
    ["kind", "namespace", "name"],
)
STATUS_WRITES = Counter(
    "flexinfra_status_writes_total", "Status patches sent to Kubernetes", ["kind"]
)

# --- GaleraCluster ----------------------------------------------------------------------------
GALERA_CLUSTER_SIZE = Gauge(
    "flexinfra_galera_cluster_size",
    "Nodes in the Primary component, as the nodes' agents report it (0: no Primary)",
    ["namespace", "name"],
)
GALERA_NODE_SYNCED = Gauge(
    "flexinfra_galera_node_synced",
    "1 when the node is Synced in a Primary component",
    ["namespace", "name", "node"],
)
GALERA_FAILOVERS = Counter(
    "flexinfra_galera_failovers_total",
    "Writer moves (SetWriter) carried out",
    ["namespace", "name"],
)
GALERA_ACTIONS = Counter(
    "flexinfra_galera_actions_total",
    "Failover and recovery actions carried out, by kind (StartServer, BootstrapFrom, ...)",
    ["namespace", "name", "action"],
)
GALERA_RECOVERY_SECONDS = Histogram(
    "flexinfra_galera_recovery_seconds",
    "From the first pass that found the cluster unhealthy to the next Ready",
    ["namespace", "name"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
)
