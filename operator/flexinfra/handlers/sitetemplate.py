"""SiteTemplate handlers: validate, hash, and roll the WebSites that use a changed template."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import kopf
from pydantic import ValidationError

from flexinfra.api import GROUP, VERSION
from flexinfra.api.conditions import Reason
from flexinfra.api.sitetemplate import SiteTemplateSpec, SiteTemplateStatus
from flexinfra.handlers.common import (
    conditions_for,
    parse_conditions,
    validation_message,
    write_status,
)
from flexinfra.k8s import annotate

KIND = "SiteTemplate"


def template_hash(spec: SiteTemplateSpec) -> str:
    """What makes a server: a change of it replaces servers (one at a time)."""
    payload = json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


@kopf.on.resume(GROUP, VERSION, "sitetemplates")
@kopf.on.create(GROUP, VERSION, "sitetemplates")
@kopf.on.update(GROUP, VERSION, "sitetemplates", field="spec")
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
    digest = template_hash(spec)
    conds = conditions_for(parse_conditions(old), generation, ready=True,
                           reason=Reason.RECONCILED, message="template is valid",
                           progressing=False)
    write_status(KIND, body, patch, SiteTemplateStatus(
        observed_generation=generation, conditions=conds, template_hash=digest,
        used_by=users).to_k8s())
    if old.get("templateHash") and old.get("templateHash") != digest:
        for site in users:
            # an annotation change wakes the site's handler at once (no wait for the timer)
            annotate("websites", meta.namespace, site,
                     {"flexinfra.io/template-hash": digest})
            kopf.event(body, type="Normal", reason="RollingSites",
                       message=f"template changed: rolling {site}")
