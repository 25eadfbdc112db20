"""`flexinfra run`: start the operator (kopf) with our settings and the metrics endpoint."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import kopf
from prometheus_client import start_http_server

from flexinfra.api import ANNOTATION_PREFIX, FINALIZER, LAST_HANDLED_KEY
from flexinfra.settings import Settings, get_settings, set_settings


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """Keep kopf's own bookkeeping out of status and its chatter out of Events.

    * progress and diff-base in annotations under our prefix, not in ``status.kopf``;
    * only warnings become Kubernetes Events automatically: an idle operator must make
      zero writes, and kopf would otherwise post an Event for every successful timer run.
    """
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key=LAST_HANDLED_KEY
    )
    settings.posting.level = logging.WARNING
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
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if os.environ.get("FLEXINFRA_DEBUG_STATUS"):  # which status fields each write changes
        logging.getLogger("flexinfra.handlers.common").setLevel(logging.DEBUG)
    from flexinfra.handlers import register
    from flexinfra.handlers.common import RequeueLogFilter

    logging.getLogger("kopf.objects").addFilter(RequeueLogFilter())
    register()

    from flexinfra.cloud.connection import connection_cache

    connection_cache.configure(
        inventory_ttl=settings.inventory_max_age,
        rate=settings.api_rate,
        burst=max(1, int(settings.api_rate * 2)),
        concurrency=settings.api_concurrency,
    )
    if get_settings().metrics_port:
        start_http_server(get_settings().metrics_port)
    asyncio.run(kopf.operator(**operator_kwargs(settings)))
    return 0
