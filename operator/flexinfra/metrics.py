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
