"""SiteTemplate handlers: validate, hash, and wake the WebSites that use a changed template."""

from __future__ import annotations

from typing import Any

import kopf
from pydantic import ValidationError

from flexinfra.api import GROUP, TEMPLATE_GENERATION_ANNOTATION, VERSION
from flexinfra.api.conditions import Reason
from flexinfra.api.sitetemplate import SiteTemplateSpec, SiteTemplateStatus
from flexinfra.handlers.common import (
    conditions_for,
    lease_active,
    parse_conditions,
    validation_message,
    write_status,
)
from flexinfra.k8s import annotate
from flexinfra.kinds.website import template_hash

KIND = "SiteTemplate"


@kopf.on.resume(GROUP, VERSION, "sitetemplates", when=lease_active)
@kopf.on.create(GROUP, VERSION, "sitetemplates", when=lease_active)
@kopf.on.update(GROUP, VERSION, "sitetemplates", field="spec", when=lease_active)
def template_changed(body: kopf.Body, patch: kopf.Patch, sites_by_template: kopf.Index,
                     **_: Any) -> None:
    meta = body.metadata
    generation = meta.get("generation")
    old = body.get("status") or {}
    users = sorted(sites_by_template.get((meta.namespace, meta.name), []))
    try:
        spec = SiteTemplateSpec.model_validate(dict(body.spec))
    except ValidationError as e:
        conds = conditions_for(parse_conditions(old), generation, ready=False,
                               reason=Reason.INVALID_SPEC,
                               message=f"{validation_message(e)}; fix the template",
                               progressing=False)
        write_status(KIND, body, patch, SiteTemplateStatus(
            observed_generation=generation, conditions=conds, used_by=users).to_k8s())
        return
    conds = conditions_for(parse_conditions(old), generation, ready=True,
                           reason=Reason.RECONCILED, message="template is valid",
                           progressing=False)
    write_status(KIND, body, patch, SiteTemplateStatus(
        observed_generation=generation, conditions=conds, template_hash=template_hash(spec),
        used_by=users).to_k8s())
    seen = old.get("observedGeneration")
    if seen is not None and seen != generation:
        # the spec changed since it was last seen: an annotation change wakes each site's
        # handler at once (no wait for its drift timer); the site decides what changes (its
        # servers only when their template hash does)
        for site in users:
            annotate("websites", meta.namespace, site,
                     {TEMPLATE_GENERATION_ANNOTATION: str(generation)})
            kopf.event(body, type="Normal", reason="RollingSites",
                       message=f"template changed: rolling {site}")
