"""Fixtures and helpers shared by the OpenStack, VM and reconcile sandbox tests."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from flexinfra.api.sitetemplate import SiteTemplateSpec
from flexinfra.api.website import WebSiteSpec
from flexinfra.cloud.connection import ConnectionCache
from flexinfra.cloud.errors import TransientError
from flexinfra.kinds.website import Owner, reconcile_website, teardown_website
from tests.sandbox.test_openstack import Cloud, connect

CLOUDS = (
    Path(os.environ.get("FLEXINFRA_SANDBOX_STATE", Path.home() / ".local/state/flexinfra/sandbox"))
    / "clouds.yaml"
)

USER_DATA = """#!/bin/sh
mkdir -p /tmp/www && echo "hello from $(hostname)" > /tmp/www/index.html
cd /tmp/www && exec python3 -m http.server 80 --bind 0.0.0.0
"""


@pytest.fixture(scope="module")
def conn():
    return connect("demo")


@pytest.fixture
def cloud(conn, request):
    """A scratch area named after the test (prefix: the module's ``NAME_PREFIX``), emptied
    and checked empty after it."""
    prefix = getattr(request.module, "NAME_PREFIX", "t")
    c = Cloud(conn, f"{prefix}{uuid.uuid4().hex[:6]}-{request.node.name[5:25].replace('_', '-')}")
    request.addfinalizer(c.teardown)
    return c


# --- the WebSite reconcile core, driven the way the kopf handler does ----------------------
@pytest.fixture(scope="module")
def clouds_text() -> str:
    if not CLOUDS.exists():
        pytest.skip("sandbox not up (no clouds.yaml)")
    return CLOUDS.read_text()


@pytest.fixture
def gateway(clouds_text):
    return ConnectionCache().get("sandbox-demo", "1", clouds_text, "demo")


def sandbox_template(gateway, **over) -> SiteTemplateSpec:
    images = [i.name for i in gateway.conn.image.images()]
    flavors = sorted(gateway.conn.compute.flavors(), key=lambda f: f.ram)
    if not images or not flavors:
        pytest.skip("sandbox has no image or flavor yet")
    over = {"user_data": USER_DATA, **over}
    return SiteTemplateSpec(image=images[0], flavor=flavors[0].name, **over)


def site_spec(
    gateway, cidr: str | None = None, *, existing_network: str | None = None, **over
) -> WebSiteSpec:
    """A two-server site on its own network ``cidr``, or on ``existing_network``."""
    external = next(
        (n.name for n in gateway.conn.network.networks(is_router_external=True)), "public"
    )
    network = {"existingNetwork": existing_network} if existing_network else {"cidr": cidr}
    body = {
        "cloud": {"secretName": "x", "cloudName": "demo"},
        "template": "web",
        "replicas": 2,
        "network": {**network, "externalNetwork": external},
        "loadBalancer": {"ports": [80], "healthCheck": {"type": "TCP"}},
        "ingress": [{"port": 80, "from": "0.0.0.0/0"}],
    }
    body.update(over)
    return WebSiteSpec.model_validate(body)


def drive(owner, spec, template, gateway, timeout=300.0):
    """Call reconcile like the handler does until Ready; return (outcome, seconds, passes)."""
    started, passes = time.monotonic(), 0
    while True:
        passes += 1
        try:
            outcome = reconcile_website(owner, spec, template, gateway)
        except TransientError as err:
            print("transient:", err.message)
            time.sleep(2)
            continue
        print(f"[{time.monotonic() - started:5.1f}s] {outcome.reason}: {outcome.message}")
        if outcome.ready:
            return outcome, time.monotonic() - started, passes
        assert time.monotonic() - started < timeout, outcome.message
        time.sleep(outcome.requeue_after or 1)


def tear_down(owner, gateway, timeout=300.0):
    started = time.monotonic()
    while True:
        out = teardown_website(owner, gateway)
        if out.done:
            return time.monotonic() - started
        print("teardown:", out.remaining)
        assert time.monotonic() - started < timeout, out.remaining
        time.sleep(out.requeue_after or 2)


def new_owner(name: str) -> Owner:
    return Owner(uid=str(uuid.uuid4()), namespace="t201", name=name)
