"""WebSite handlers: change handlers and the drift timer share one reconcile path."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import kopf
from pydantic import ValidationError

from flexinfra.api import GROUP, VERSION
from flexinfra.api.conditions import Reason
from flexinfra.api.sitetemplate import SiteTemplateSpec
from flexinfra.api.website import WebSiteResources, WebSiteSpec, WebSiteStatus
from flexinfra.cloud.connection import connection_cache
from flexinfra.cloud.errors import (
    CloudError,
    CredentialsError,
    FlexinfraError,
    InvalidSpec,
    TransientError,
)
from flexinfra.handlers.common import (
    PROGRESSING,
    TRANSIENT,
    conditions_for,
    forget_lock,
    object_lock,
    parse_conditions,
    transient_streaks,
    validation_message,
    write_status,
)
from flexinfra.k8s import read_clouds_yaml
from flexinfra.metrics import RECONCILE_SECONDS, RECONCILE_TOTAL
from flexinfra.reconcile.website import Owner, reconcile_website, teardown_website
from flexinfra.settings import get_settings

KIND = "WebSite"
PLURAL = "websites"
TEMPLATE_HASH_ANNOTATION = "flexinfra.io/template-hash"
log = logging.getLogger(__name__)


@dataclass
class Result:
    """What one reconcile run decided, before it is written anywhere."""

    ready: bool
    reason: Reason | str
    message: str
    progressing: bool
    retry_after: float | None = None
    url: str | None = None
    ready_replicas: int | None = None
    resources: WebSiteResources | None = None
    events: list[tuple[str, str]] = field(default_factory=list)
    warning: bool = False


@kopf.index(GROUP, VERSION, "sitetemplates")
def template_index(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict:
    return {(namespace, name): dict(spec)}


@kopf.index(GROUP, VERSION, PLURAL)
def sites_by_template(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict:
    return {(namespace, spec.get("template")): name}


def gateway_for(namespace: str, cloud: dict[str, Any]):
    text, secret_uid, version = read_clouds_yaml(
        namespace, cloud["secretName"], cloud.get("secretKey", "clouds.yaml")
    )
    return connection_cache.get(f"{secret_uid}", version, text, cloud["cloudName"])


def _template(template_index: kopf.Index, namespace: str, name: str) -> SiteTemplateSpec:
    store = template_index.get((namespace, name))
    if not store:
        raise InvalidSpec(
            f"SiteTemplate {name!r} not found in namespace {namespace}: create it or fix "
            "spec.template"
        )
    raw = next(iter(store))
    try:
        return SiteTemplateSpec.model_validate(raw)
    except ValidationError as e:
        raise InvalidSpec(
            f"SiteTemplate {name!r} is invalid ({validation_message(e)}); fix the template"
        ) from None


def reconcile_once(body: kopf.Body, template_index: kopf.Index) -> Result:
    meta = body.metadata
    try:
        spec = WebSiteSpec.model_validate(dict(body.spec))
    except ValidationError as e:
        return Result(False, Reason.INVALID_SPEC, f"{validation_message(e)}; fix the manifest",
                      progressing=False, warning=True)
    owner = Owner(uid=meta.uid, namespace=meta.namespace, name=meta.name, kind=KIND)
    try:
        template = _template(template_index, meta.namespace, spec.template)
        gateway = gateway_for(meta.namespace, dict(body.spec["cloud"]))
        outcome = reconcile_website(owner, spec, template, gateway)
    except TransientError as e:
        return Result(False, Reason.TRANSIENT_ERROR, f"{e.message} (retrying)", progressing=True,
                      retry_after=e.retry_after or get_settings().retry_delay, events=e.events)
    except (InvalidSpec, CloudError, CredentialsError) as e:
        return Result(False, e.reason, e.message, progressing=False, warning=True,
                      events=e.events)
    except FlexinfraError as e:
        return Result(False, Reason.CLOUD_ERROR, e.message, progressing=False, warning=True,
                      events=e.events)
    return Result(
        ready=outcome.ready,
        reason=outcome.reason,
        message=outcome.message,
        progressing=not outcome.ready,
        retry_after=outcome.requeue_after,
        url=outcome.url,
        ready_replicas=outcome.ready_replicas,
        resources=outcome.resources,
        events=list(outcome.events),
    )


def desired_status(body: kopf.Body, result: Result) -> dict[str, Any]:
    old = body.get("status") or {}
    generation = body.metadata.get("generation")
    conditions = conditions_for(
        parse_conditions(old),
        generation,
        ready=result.ready,
        reason=result.reason,
        message=result.message,
        progressing=result.progressing,
    )
    # on an error keep what we knew was built: it is still there
    resources = result.resources
    if resources is None:
        resources = WebSiteResources.model_validate(old.get("resources") or {})
    status = WebSiteStatus(
        observed_generation=generation,
        conditions=conditions,
        url=result.url if result.resources is not None else old.get("url"),
        replicas=body.spec.get("replicas"),
        ready_replicas=(
            result.ready_replicas if result.ready_replicas is not None
            else old.get("readyReplicas")
        ),
        resources=resources,
    )
    return status.to_k8s()


def _backoff(uid: str) -> float:
    s = get_settings()
    return transient_streaks.next_delay(uid, s.retry_delay, s.retry_max_delay)


def run(body: kopf.Body, patch: kopf.Patch, template_index: kopf.Index, *,
        from_timer: bool) -> None:
    with object_lock(body.metadata.uid, wait=not from_timer) as acquired:
        if not acquired:
            return
        started = time.monotonic()
        result = reconcile_once(body, template_index)
        RECONCILE_SECONDS.labels(KIND).observe(time.monotonic() - started)
        RECONCILE_TOTAL.labels(KIND, str(result.reason)).inc()
        old_ready = next((c for c in parse_conditions(body.get("status"))
                          if c.type == "Ready"), None)
        for reason, message in result.events:
            kopf.event(body, type="Normal", reason=reason, message=message)
        changed = old_ready is None or (old_ready.reason, old_ready.message) != (
            str(result.reason), result.message)
        if changed and result.warning:
            kopf.event(body, type="Warning", reason=str(result.reason),
                       message=result.message)
        elif changed and result.ready:
            kopf.event(body, type="Normal", reason=str(result.reason),
                       message=result.message)
        write_status(KIND, body, patch, desired_status(body, result))
    if result.reason != Reason.TRANSIENT_ERROR:
        transient_streaks.reset(body.metadata.uid)
    if result.retry_after is not None and not from_timer:
        transient = result.reason == Reason.TRANSIENT_ERROR
        delay = (
            max(_backoff(body.metadata.uid), result.retry_after) if transient
            else result.retry_after
        )
        marker = TRANSIENT if result.reason == Reason.TRANSIENT_ERROR else PROGRESSING
        raise kopf.TemporaryError(f"{marker} {result.message}", delay=delay)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
@kopf.on.field(GROUP, VERSION, PLURAL, field=("metadata", "annotations", TEMPLATE_HASH_ANNOTATION))
def website_changed(body: kopf.Body, patch: kopf.Patch, template_index: kopf.Index,
                    **_: Any) -> None:
    run(body, patch, template_index, from_timer=False)


@kopf.timer(GROUP, VERSION, PLURAL, interval=get_settings().drift_interval,
            initial_delay=get_settings().drift_interval, idle=None)
def website_drift(body: kopf.Body, patch: kopf.Patch, template_index: kopf.Index,
                  **_: Any) -> None:
    """Puts back what was changed behind the operator's back; costs no writes when idle."""
    if body.metadata.get("deletionTimestamp"):
        return
    run(body, patch, template_index, from_timer=True)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def website_deleted(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Ordered teardown; the finalizer goes only when a tag sweep finds nothing left."""
    meta = body.metadata
    owner = Owner(uid=meta.uid, namespace=meta.namespace, name=meta.name, kind=KIND)
    with object_lock(meta.uid, wait=True):
        try:
            gateway = gateway_for(meta.namespace, dict(body.spec["cloud"]))
            outcome = teardown_website(owner, gateway)
        except FlexinfraError as e:
            message = (f"cannot delete cloud resources yet: {e.message}. The finalizer stays "
                       "until they are gone (fix the credentials; or remove the finalizer to "
                       "abandon them)")
            write_status(KIND, body, patch, desired_status(
                body, Result(False, Reason.DELETING, message, progressing=True)))
            raise kopf.TemporaryError(f"{TRANSIENT} {message}", delay=_backoff(meta.uid)) from None
        for reason, message in getattr(outcome, "events", []):
            kopf.event(body, type="Normal", reason=reason, message=message)
        transient_streaks.reset(meta.uid)
        if not outcome.done:
            message = "deleting: waiting for " + ", ".join(outcome.remaining[:8])
            write_status(KIND, body, patch, desired_status(
                body, Result(False, Reason.DELETING, message, progressing=True)))
            raise kopf.TemporaryError(f"{PROGRESSING} {message}",
                                      delay=outcome.requeue_after or 3)
    forget_lock(meta.uid)
    kopf.event(body, type="Normal", reason="Deleted",
               message="every cloud resource owned by this site is gone")
