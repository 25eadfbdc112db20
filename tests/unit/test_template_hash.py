"""One template hash: what a server is made of. Its values must never move (they are in
every server's tags: a new value would replace every server of every site)."""

from __future__ import annotations

from flexinfra.api.sitetemplate import SiteTemplateSpec
from flexinfra.kinds.website import template_hash

TEMPLATE = SiteTemplateSpec(image="cirros", flavor="m1.tiny", user_data="#!/bin/sh\n")


def test_values_are_those_of_the_servers_already_built():
    # pinned from the code before issue 8 (planning.intent.template_hash)
    assert template_hash(TEMPLATE, "soft", False) == "b7645a81388d"
    assert template_hash(TEMPLATE, "hard", True) == "ae55ca7bbd84"


def test_the_sitetemplate_shows_the_hash_of_a_default_site_servers():
    assert template_hash(TEMPLATE) == template_hash(TEMPLATE, "soft", False)


def test_what_does_not_make_a_server_does_not_move_it():
    ports = TEMPLATE.model_copy(update={"ports": [{"port": 8080}]})
    assert template_hash(ports) == template_hash(TEMPLATE)
    assert template_hash(TEMPLATE.model_copy(update={"image": "debian"})) != template_hash(
        TEMPLATE)
