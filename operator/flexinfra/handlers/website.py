"""WebSite handlers: kopf wiring only. Change handlers and the drift timer share one path."""

from __future__ import annotations

from functools import partial
from typing import Any

import kopf
from pydantic import ValidationError

from flexinfra.api import (
    ACTING_INSTANCE_ANNOTATION,
    GROUP,
    TEMPLATE_GENERATION_ANNOTATION,
    VERSION,
)
from flexinfra.api.conditions import Condition, Reason
from flexinfra.api.sitetemplate import SiteTemplateSpec
from flexinfra.api.website import WebSiteResources, WebSiteSpec, WebSiteStatus
from flexinfra.core.errors import InvalidSpec
from flexinfra.core.tags import Owner
from flexinfra.handlers.common import (
    PROGRESSING,
    deletion_filter,
    lease_active,
    transient_streaks,
    validation_message,
)
from flexinfra.handlers.protection import holds_finalizer
from flexinfra.handlers.runner import Runner, gateway_for
from flexinfra.handlers.site_database import (
    DependencyWait,
    drop_site_database,
    ensure_site_database,
    secret_name,
)
from flexinfra.k8s import delete_secret, secret_owned_by
from flexinfra.kinds.website import reconcile_website, teardown_website
from flexinfra.reconcile.outcome import Outcome
from flexinfra.settings import get_settings

__all__ = ["gateway_for", "reconcile_website", "run", "transient_streaks"]

KIND = "WebSite"
PLURAL = "websites"


@kopf.index(GROUP, VERSION, "sitetemplates")
def template_index(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict:
    return {(namespace, name): dict(spec)}


@kopf.index(GROUP, VERSION, PLURAL)
def sites_by_template(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict:
    return {(namespace, spec.get("template")): name}


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


def reconcile_once(owner: Owner, spec: WebSiteSpec, template_index: kopf.Index) -> Outcome:
    template = _template(template_index, owner.namespace, spec.template)
    try:
        database = ensure_site_database(owner, spec)
    except DependencyWait as e:
        # the servers boot with the credentials: nothing is built before the database is
        return Outcome(False, Reason.DEPENDENCY_NOT_READY, str(e), progressing=True,
                       requeue_after=10.0)
    gateway = gateway_for(owner.namespace, spec.cloud.model_dump(by_alias=True))
    return reconcile_website(owner, spec, template, gateway,
                             get_settings().member_health == "required", database=database)


def website_status(body: kopf.Body, outcome: Outcome, conditions: list[Condition]) -> dict:
    old = body.get("status") or {}
    # on an error keep what we knew was built: it is still there
    resources = outcome.resources
    if resources is None:
        resources = WebSiteResources.model_validate(old.get("resources") or {})
    return WebSiteStatus(
        observed_generation=body.metadata.get("generation"),
        conditions=conditions,
        url=outcome.url if outcome.resources is not None else old.get("url"),
        replicas=body.spec.get("replicas"),
        ready_replicas=(
            outcome.ready_replicas if outcome.ready_replicas is not None
            else old.get("readyReplicas")
        ),
        resources=resources,
    ).to_k8s()


RUNNER = Runner(KIND, WebSiteSpec, website_status, noun="site")


def run(body: kopf.Body, patch: kopf.Patch, template_index: kopf.Index, *,
        from_timer: bool) -> None:
    RUNNER.run(body, patch, partial(reconcile_once, template_index=template_index),
               from_timer=from_timer)


@kopf.on.resume(GROUP, VERSION, PLURAL, when=lease_active)
@kopf.on.create(GROUP, VERSION, PLURAL, when=lease_active)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec", when=lease_active)
@kopf.on.field(GROUP, VERSION, PLURAL, when=lease_active,
               field=("metadata", "annotations", TEMPLATE_GENERATION_ANNOTATION))
@kopf.on.field(GROUP, VERSION, PLURAL, when=lease_active,
               field=("metadata", "annotations", ACTING_INSTANCE_ANNOTATION))
def website_changed(body: kopf.Body, patch: kopf.Patch, template_index: kopf.Index,
                    **_: Any) -> None:
    run(body, patch, template_index, from_timer=False)


@kopf.timer(GROUP, VERSION, PLURAL, interval=get_settings().drift_interval,
            initial_delay=get_settings().drift_interval, idle=None, when=holds_finalizer)
def website_drift(body: kopf.Body, patch: kopf.Patch, template_index: kopf.Index,
                  **_: Any) -> None:
    """Puts back what was changed behind the operator's back; costs no writes when idle."""
    if body.metadata.get("deletionTimestamp"):
        return
    run(body, patch, template_index, from_timer=True)


@kopf.on.delete(GROUP, VERSION, PLURAL, when=deletion_filter)
def website_deleted(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    RUNNER.delete(body, patch, teardown_website)
    if not body.spec.get("database"):
        return
    meta = body.metadata
    spec = WebSiteSpec.model_validate(dict(body.spec))
    try:
        done = drop_site_database(RUNNER.owner(body), spec)
    except DependencyWait as e:
        raise kopf.TemporaryError(f"{PROGRESSING} {e}", delay=10) from None
    if done:
        kopf.event(body, type="Normal", reason="DatabaseDropped", message=done)
    elif spec.database is not None:
        kopf.event(body, type="Normal", reason="DatabaseRetained",
                   message=f"database {spec.database.name} kept on GaleraCluster "
                   f"{spec.database.galera_cluster!r} (deletionPolicy: Retain)")
    if secret_owned_by(meta.namespace, secret_name(meta.name), meta.uid):
        delete_secret(meta.namespace, secret_name(meta.name))
