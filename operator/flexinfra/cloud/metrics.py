"""One Prometheus metric family per OpenStack call, as CAPO does (service/resource/verb)."""

from __future__ import annotations

from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as os_exc
from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "flexinfra_openstack_requests",
    "OpenStack API calls made by the operator, by outcome (ok, notfound, conflict, "
    "throttled, servererror, timeout, error).",
    ["service", "resource", "verb", "outcome"],
)
DURATION = Histogram(
    "flexinfra_openstack_request_duration_seconds",
    "Duration of OpenStack API calls (including pagination of list calls).",
    ["service", "resource", "verb"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


#: what counts as a timeout, by class (keystoneauth wraps requests' timeouts in these)
TIMEOUTS = (ksa_exc.ConnectTimeout, ksa_exc.RequestTimeout, os_exc.ResourceTimeout, TimeoutError)


def outcome_of(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    status = getattr(exc, "status_code", None) or getattr(exc, "http_status", None)
    if status == 404:
        return "notfound"
    if status == 409:
        return "conflict"
    if status == 429:
        return "throttled"
    if status is not None and status >= 500:
        return "servererror"
    if isinstance(exc, TIMEOUTS):
        return "timeout"
    return "error"


def total_calls(verb: str | None = None, service: str | None = None) -> float:
    """Sum of the request counter, for tests and benchmarks (e.g. calls per idle reconcile)."""
    total = 0.0
    for metric in REQUESTS.collect():
        for sample in metric.samples:
            if not sample.name.endswith("_total"):
                continue
            if verb and sample.labels["verb"] != verb:
                continue
            if service and sample.labels["service"] != service:
                continue
            total += sample.value
    return total
