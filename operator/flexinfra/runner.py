"""`flexinfra run`: start the operator (kopf) with our settings and the metrics endpoint."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import kopf
from prometheus_client import start_http_server

from flexinfra.api import (
    ACTING_INSTANCE_ANNOTATION,
    ANNOTATION_PREFIX,
    FINALIZER,
    GROUP,
    LAST_HANDLED_KEY,
    VERSION,
)
from flexinfra.settings import Settings, get_settings, set_settings


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """Keep kopf's own bookkeeping out of status and its chatter out of Events.

    * progress and diff-base in annotations under our prefix, not in ``status.kopf``;
    * only warnings become Kubernetes Events automatically: an idle operator must make
      zero writes, and kopf would otherwise post an Event for every successful timer run;
    * no scanning of Namespaces and CRDs (least privilege, see ``manifests/rbac.yaml``).
    """
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key=LAST_HANDLED_KEY
    )
    settings.posting.level = logging.WARNING
    # no watch on Namespaces and CRDs: the API is discovered once at start (the CRDs are
    # installed before the operator), so the RBAC needs neither, and a namespaced install
    # needs no ClusterRole at all
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # sync handlers run in this thread pool, one pass per site at a time, and a pass may wait
    # up to 20 s on its load balancer (cheap: one shared listing polls them all): enough
    # workers that 50 sites progress together
    settings.execution.max_workers = 64


@kopf.on.startup()
def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    configure_kopf(settings)


def operator_kwargs(settings: Settings) -> dict[str, Any]:
    """Arguments of ``kopf.operator``: cluster-wide unless namespaces are given (kopf wants a
    list of namespaces, never None, and ``clusterwide`` only without them)."""
    return {
        "clusterwide": not settings.namespaces,
        "namespaces": list(settings.namespaces),
        "standalone": settings.peering is None,
        "peering_name": settings.peering,
        "liveness_endpoint": (
            f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
        ),
    }


def run(args: Any) -> int:
    overrides: dict[str, Any] = {}
    if getattr(args, "namespace", None):
        overrides["namespaces"] = args.namespace
    if getattr(args, "metrics_port", None) is not None:
        overrides["metrics_port"] = args.metrics_port
    settings = Settings(**overrides)
    set_settings(settings)
    configure_logging()
    if os.environ.get("FLEXINFRA_DEBUG_STATUS"):  # which status fields each write changes
        logging.getLogger("flexinfra.handlers.common").setLevel(logging.DEBUG)
    from flexinfra.handlers import register
    from flexinfra.handlers.common import RequeueLogFilter

    logging.getLogger("kopf.objects").addFilter(RequeueLogFilter())
    register()
    keeper = start_leases(settings)

    from flexinfra.cloud.connection import connection_cache

    connection_cache.configure(
        inventory_ttl=settings.inventory_max_age,
        rate=settings.api_rate,
        burst=max(1, int(settings.api_rate * 2)),
        concurrency=settings.api_concurrency,
    )
    if get_settings().metrics_port:
        start_http_server(get_settings().metrics_port)
    try:
        asyncio.run(kopf.operator(**operator_kwargs(settings)))
    finally:
        if keeper is not None:
            keeper.stop()  # hand the namespaces over now, not after the Lease expires
    return 0


def configure_logging() -> None:
    """Every log line and every Event kopf posts goes through the redactor: the operator's
    own messages are scrubbed where they are made, but a library's exception or a traceback
    is only caught here."""
    from flexinfra.core.redact import EventFormatter, ScrubbingFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(ScrubbingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    from kopf._core.engines import posting  # kopf's Event poster: no public way to reach it

    for h in logging.getLogger("kopf").handlers + logging.getLogger("kopf.objects").handlers:
        if isinstance(h, posting.K8sPoster):
            h.setFormatter(EventFormatter())


def start_leases(settings: Settings) -> Any:
    """One active instance per namespace (``flexinfra.lease``); a namespaced instance claims
    its namespaces now, a cluster-wide one each namespace when it first acts there."""
    from flexinfra import lease

    if not settings.leases:
        return None
    keeper = lease.LeaseKeeper(duration=settings.lease_duration, renew=settings.lease_renew)
    keeper.on_acquire = lambda namespace: wake(namespace, keeper.me)
    from flexinfra.handlers.protection import namespace_holds_resources

    keeper.teardowns_pending = namespace_holds_resources
    lease.set_keeper(keeper)
    keeper.start(claim=list(settings.namespaces) or namespaces_in_use())
    return keeper


#: the kinds an instance acts on, for the wake-up after a takeover
ACTING_PLURALS = ("websites", "galeraclusters", "glustervolumes")


def namespaces_in_use() -> list[str]:
    """A cluster-wide instance claims, before kopf starts, the namespaces that hold objects:
    its resume handlers then run there as usual (a namespace taken later is woken up)."""
    from kubernetes.client.rest import ApiException

    from flexinfra import k8s

    found: set[str] = set()
    for plural in ACTING_PLURALS:
        try:
            items = k8s.custom().list_cluster_custom_object(GROUP, VERSION, plural)["items"]
        except ApiException:
            continue  # a kind not installed
        found |= {i["metadata"]["namespace"] for i in items}
    return sorted(found)


def wake(namespace: str, me: str) -> None:
    """After a takeover: this instance ignored the namespace's events while it stood by, so
    its objects get an annotation naming it, which runs their change handler here."""
    from kubernetes.client.rest import ApiException

    from flexinfra import k8s

    for plural in ACTING_PLURALS:
        try:
            items = k8s.list_objects(plural, namespace)
        except ApiException:
            continue
        for item in items:
            k8s.annotate(plural, namespace, item["metadata"]["name"],
                         {ACTING_INSTANCE_ANNOTATION: me})
    logging.getLogger(__name__).info("lease %s: took over; woke its objects", namespace)
