"""`flexinfra plan -f site.yaml [--cloud NAME]`: what applying would create, change, delete.

Reads WebSites (and SiteTemplates) from the file, the cloud from the local clouds.yaml
(``OS_CLIENT_CONFIG_FILE`` or the usual locations), and, when a kubeconfig works, the live
object's UID so that what already exists is recognised. Changes nothing anywhere.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from flexinfra.api import GROUP, VERSION
from flexinfra.api.sitetemplate import SiteTemplateSpec
from flexinfra.api.website import WebSiteSpec
from flexinfra.core.errors import FlexinfraError
from flexinfra.core.kinds import Verb
from flexinfra.handlers.common import validation_message

CLOUDS_YAML_PLACES = (
    Path.cwd() / "clouds.yaml",
    Path.home() / ".config/openstack/clouds.yaml",
    Path("/etc/openstack/clouds.yaml"),
)


def _clouds_yaml() -> str:
    explicit = os.environ.get("OS_CLIENT_CONFIG_FILE")
    for place in ([Path(explicit)] if explicit else []) + list(CLOUDS_YAML_PLACES):
        if place.exists():
            return place.read_text()
    raise FlexinfraError("no clouds.yaml found: set OS_CLIENT_CONFIG_FILE")


def _live_uid(namespace: str, name: str) -> str | None:
    """The UID of the object in the cluster, if a kubeconfig reaches one and it exists."""
    try:
        from flexinfra import k8s

        obj = k8s.custom().get_namespaced_custom_object(GROUP, VERSION, namespace, "websites",
                                                        name)
        return obj["metadata"]["uid"]
    except Exception:
        return None


def _live_template(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        from flexinfra import k8s

        return k8s.custom().get_namespaced_custom_object(GROUP, VERSION, namespace,
                                                         "sitetemplates", name)["spec"]
    except Exception:
        return None


def plan(args: Any) -> int:
    from flexinfra.cloud.connection import connection_cache
    from flexinfra.kinds.website import Owner, plan_website

    docs = [d for d in yaml.safe_load_all(Path(args.filename).read_text()) if d]
    templates = {(d["metadata"].get("namespace", "default"), d["metadata"]["name"]): d["spec"]
                 for d in docs if d.get("kind") == "SiteTemplate"}
    sites = [d for d in docs if d.get("kind") == "WebSite"]
    if not sites:
        print(f"{args.filename}: no WebSite in the file", file=sys.stderr)
        return 2
    status = 0
    for doc in sites:
        meta = doc["metadata"]
        ns, name = meta.get("namespace", "default"), meta["name"]
        try:
            spec = WebSiteSpec.model_validate(doc.get("spec") or {})
            raw_template = templates.get((ns, spec.template)) or _live_template(ns, spec.template)
            if raw_template is None:
                raise FlexinfraError(f"SiteTemplate {spec.template!r} is neither in the file nor "
                                     f"in namespace {ns} of the cluster")
            template = SiteTemplateSpec.model_validate(raw_template)
            cloud_name = args.cloud or os.environ.get("OS_CLOUD") or spec.cloud.cloud_name
            gateway = connection_cache.get("plan", "local", _clouds_yaml(), cloud_name)
            uid = _live_uid(ns, name)
            owner = Owner(uid=uid or f"not-yet-created-{ns}-{name}", namespace=ns, name=name)
            actions = plan_website(owner, spec, template, gateway)
        except ValidationError as e:
            print(f"WebSite {ns}/{name}: invalid: {validation_message(e)}")
            status = 1
            continue
        except FlexinfraError as e:
            print(f"WebSite {ns}/{name}: {e.message}")
            status = 1
            continue
        state = "exists" if uid else "new"
        print(f"WebSite {ns}/{name} ({state}, cloud {cloud_name}): "
              f"{len(actions) or 'no'} change(s)")
        for action in actions:
            print(f"  {_sign(action.verb)} {action.describe()}")
    return status


def _sign(verb: Verb) -> str:
    return {Verb.CREATE: "+", Verb.DELETE: "-", Verb.UPDATE: "~"}.get(verb, "*")
