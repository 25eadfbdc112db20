"""SiteTemplate handler: its status shows the one template hash, and a spec change wakes the
sites that use it (a resume that changed nothing does not)."""

from __future__ import annotations

import kopf
import pytest

from flexinfra.api import TEMPLATE_GENERATION_ANNOTATION
from flexinfra.api.sitetemplate import SiteTemplateSpec
from flexinfra.handlers import sitetemplate as handler
from flexinfra.kinds.website import template_hash

SPEC = {"image": "cirros", "flavor": "m1.tiny", "userData": "#!/bin/sh\n"}
USERS = {("fixweb", "web"): ["site-b", "site-a"]}


@pytest.fixture
def woken(monkeypatch):
    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(handler, "annotate",
                        lambda plural, ns, name, annotations: calls.append((name, annotations)))
    monkeypatch.setattr(kopf, "event", lambda *a, **kw: None)
    return calls


def body(generation: int, seen: int | None) -> kopf.Body:
    raw = {"metadata": {"name": "web", "namespace": "fixweb", "uid": "t-1",
                        "generation": generation}, "spec": SPEC}
    if seen is not None:
        raw["status"] = {"observedGeneration": seen}
    return kopf.Body(raw)


def test_status_carries_the_template_hash_of_the_servers(woken):
    patch = kopf.Patch()
    handler.template_changed(body(1, None), patch, USERS)
    expected = template_hash(SiteTemplateSpec.model_validate(SPEC))
    assert patch["status"]["templateHash"] == expected
    assert patch["status"]["usedBy"] == ["site-a", "site-b"]
    assert woken == []  # created: nothing to wake


def test_a_spec_change_wakes_every_site_using_it(woken):
    handler.template_changed(body(3, 2), kopf.Patch(), USERS)
    assert woken == [("site-a", {TEMPLATE_GENERATION_ANNOTATION: "3"}),
                     ("site-b", {TEMPLATE_GENERATION_ANNOTATION: "3"})]


def test_a_resume_with_nothing_changed_wakes_nobody(woken):
    handler.template_changed(body(3, 3), kopf.Patch(), USERS)
    assert woken == []
