"""WebSite end to end: real kube-apiserver, the operator as a process, real OpenStack."""

from __future__ import annotations

import urllib.request

import pytest

from tests.e2e.harness import dump, owned_by, unique, wait_for

pytestmark = pytest.mark.e2e

PAGE_SCRIPT = """#!/bin/sh
mkdir -p /srv/www && cd /srv/www
echo "{marker} $(hostname)" > index.html
echo ok > healthz
exec python3 -m http.server 80 --bind 0.0.0.0
"""


def template(ns: str, name: str, marker: str) -> dict:
    return {
        "apiVersion": "flexinfra.io/v1alpha1", "kind": "SiteTemplate",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"image": "cirros", "flavor": "m1.tiny", "ports": [{"port": 80}],
                 "userData": PAGE_SCRIPT.format(marker=marker)},
    }


def website(ns: str, name: str, cidr: str, replicas: int = 2, **spec) -> dict:
    return {
        "apiVersion": "flexinfra.io/v1alpha1", "kind": "WebSite",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "cloud": {"secretName": "tenant", "cloudName": "demo"},
            "template": spec.pop("template", "web"),
            "replicas": replicas,
            "availabilityZones": ["az1", "az2"],
            "network": {"cidr": cidr},
            "loadBalancer": {"ports": [80], "healthCheck": {"path": "/healthz"}},
            "ingress": [{"port": 80, "from": "0.0.0.0/0"}],
            **spec,
        },
    }


def page(address: str) -> str:
    return urllib.request.urlopen(f"http://{address}/", timeout=5).read().decode()


def servers_of(kube, ns, name):
    return kube.get("websites", ns, name)["status"]["resources"]["servers"]


def test_bad_manifests_are_refused_by_the_schema(kube, namespace):
    bad = website(namespace, "bad-schema", "10.20.9.0/33")
    result = kube.apply(bad, check=False)
    assert result.returncode != 0
    assert "spec.network.cidr" in result.stderr
    bad = website(namespace, "bad-replicas", "10.20.9.0/24", replicas=-2)
    result = kube.apply(bad, check=False)
    assert result.returncode != 0 and "spec.replicas" in result.stderr


def test_unknown_template_is_invalid_spec_and_builds_nothing(kube, namespace, operator, conn):
    name = unique("notmpl")
    kube.apply(website(namespace, name, "10.20.8.0/24", template="does-not-exist"))
    obj = kube.wait_condition("websites", namespace, name, status="False",
                              reason="InvalidSpec", timeout=60)
    cond = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert "does-not-exist" in cond["message"] and "spec.template" in cond["message"]
    assert owned_by(conn, obj["metadata"]["uid"]) == {}
    kube.delete("websites", namespace, name)
    wait_for(lambda: not kube.exists("websites", namespace, name), 60, "deletion")


def test_missing_flavor_is_invalid_spec_and_builds_nothing(kube, namespace, operator, conn):
    tmpl = template(namespace, "noflavor", "x")
    tmpl["spec"]["flavor"] = "m1.does-not-exist"
    kube.apply(tmpl)
    name = unique("noflavor")
    kube.apply(website(namespace, name, "10.20.7.0/24", template="noflavor"))
    obj = kube.wait_condition("websites", namespace, name, status="False",
                              reason="InvalidSpec", timeout=90)
    cond = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert "m1.does-not-exist" in cond["message"]
    assert owned_by(conn, obj["metadata"]["uid"]) == {}
    kube.delete("websites", namespace, name)
    wait_for(lambda: not kube.exists("websites", namespace, name), 60, "deletion")


def test_site_lifecycle(kube, namespace, operator, conn):
    """apply → Ready and serving; scale 2→3→1; ingress change; template change rolls;
    delete → nothing left by tag."""
    kube.apply(template(namespace, "web", "v1"))
    name = "client-a"
    kube.apply(website(namespace, name, "10.20.1.0/24", replicas=2))
    obj = kube.wait_condition("websites", namespace, name, timeout=300)
    uid = obj["metadata"]["uid"]
    status = obj["status"]
    assert status["url"].startswith("http://203.0.113."), dump(status)
    res = status["resources"]
    for key in ("network", "subnet", "router", "securityGroup", "loadBalancer"):
        assert res.get(key), f"status.resources.{key} missing: {dump(res)}"
    assert len(res["servers"]) == 2
    assert {s["availabilityZone"] for s in res["servers"]} == {"az1", "az2"}
    for server in res["servers"]:
        assert page(server["address"]).startswith("v1 "), server
    reasons = {e["reason"] for e in kube.events(namespace, name)}
    assert "Created" in reasons, reasons

    # scale up
    kube.patch("websites", namespace, name, {"spec": {"replicas": 3}})
    obj = wait_for(lambda: (o := kube.wait_condition("websites", namespace, name, timeout=300))
                   and len(o["status"]["resources"]["servers"]) == 3 and o, 300, "3 servers")
    assert len(list(conn.compute.servers(tags=f"flexinfra-owner:{uid}"))) == 3
    pool = next(iter(obj["status"]["resources"]["pools"].values()))
    assert len(list(conn.load_balancer.members(pool))) == 3

    # scale down: the pool shrinks with the servers
    kube.patch("websites", namespace, name, {"spec": {"replicas": 1}})
    obj = wait_for(lambda: (o := kube.wait_condition("websites", namespace, name, timeout=300))
                   and len(o["status"]["resources"]["servers"]) == 1 and o, 300, "1 server")
    assert len(list(conn.compute.servers(tags=f"flexinfra-owner:{uid}"))) == 1
    assert len(list(conn.load_balancer.members(pool))) == 1

    # ingress change: rules converge both ways
    sg = obj["status"]["resources"]["securityGroup"]
    kube.patch("websites", namespace, name,
               {"spec": {"ingress": [{"port": 8443, "from": "198.51.100.0/24"}]}})
    kube.wait_condition("websites", namespace, name, timeout=120)

    def ingress_rules():
        return {(r.port_range_min, r.remote_ip_prefix)
                for r in conn.network.security_group_rules(security_group_id=sg)
                if r.direction == "ingress" and r.remote_ip_prefix}
    wait_for(lambda: (8443, "198.51.100.0/24") in ingress_rules()
             and (80, "0.0.0.0/0") not in ingress_rules(), 60, "ingress rules converged")

    # template change: servers replaced one at a time, the pool never empty
    kube.patch("websites", namespace, name, {"spec": {"replicas": 2}})
    kube.wait_condition("websites", namespace, name, timeout=300)
    before = {s["id"] for s in servers_of(kube, namespace, name)}
    kube.apply(template(namespace, "web", "v2"))
    min_members = 99

    def rolled():
        nonlocal min_members
        min_members = min(min_members, len(list(conn.load_balancer.members(pool))))
        servers = servers_of(kube, namespace, name)
        return (len(servers) == 2 and not ({s["id"] for s in servers} & before)
                and all(page(s["address"]).startswith("v2 ") for s in servers))
    wait_for(rolled, 420, "rolling replacement to v2", every=0.5)
    assert min_members >= 1, "the pool went empty during the roll"
    kube.wait_condition("websites", namespace, name, timeout=120)

    # delete: ordered teardown, nothing left by tag
    kube.delete("websites", namespace, name)
    wait_for(lambda: not kube.exists("websites", namespace, name), 300, "finalizer released")
    assert owned_by(conn, uid) == {}


def test_idle_operator_makes_no_kubernetes_writes(kube, namespace, operator):
    """Once Ready, a drift period passes with zero status writes."""
    kube.apply(template(namespace, "web", "idle"))
    name = unique("idle")
    kube.apply(website(namespace, name, "10.20.3.0/24", replicas=1))
    obj = kube.wait_condition("websites", namespace, name, timeout=300)
    import time

    time.sleep(5)  # let the last retries settle
    before = kube.get("websites", namespace, name)["metadata"]["resourceVersion"]
    writes_before = operator.metrics().get('flexinfra_status_writes_total{kind="WebSite"}', 0)
    time.sleep(35)  # two drift periods (15 s each in the harness)
    after = kube.get("websites", namespace, name)["metadata"]["resourceVersion"]
    writes_after = operator.metrics().get('flexinfra_status_writes_total{kind="WebSite"}', 0)
    assert before == after, "the idle operator wrote to the object"
    assert writes_after == writes_before
    uid = obj["metadata"]["uid"]
    kube.delete("websites", namespace, name)
    wait_for(lambda: not kube.exists("websites", namespace, name), 300, "deletion")
    assert uid
