"""The fault campaign (issue 10): `make campaign`, not in the default run (~15 min).

* bad input: every manifest of ``BAD_MANIFESTS`` is refused, either by the schema at `kubectl
  apply` or by the operator (InvalidSpec / CloudError) before its first cloud write; checked
  by name and by tag that nothing was made, and that it deletes at once;
* faults: 500, 502, 503 (+Retry-After), 504, a time-out (nothing reaches the service) and a
  lost answer (the service acted, the answer never came) on every write kind of Neutron, Nova
  and Octavia, one site per mode, all at once: each converges, with no duplicate;
* SIGKILL: the operator killed again and again while sites are created (including inside the
  create -> tag window, held open by the fault proxy) and deleted: no duplicate, no leak;
* a namespace deleted with its sites in it: everything torn down, the namespace gone.

Leaks are looked for by tag, by name and by subnet. The totals are printed at the end of the
run (tests/e2e/conftest.py) and written to $FLEXINFRA_CAMPAIGN_REPORT if set.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.e2e import campaign_totals as T
from tests.e2e.harness import (
    Operator,
    cloud,
    leaks,
    named_like,
    owned_by,
    prefix_of,
    remove_cluster_wide_serviceaccount,
    retrying,
    serviceaccount_kubeconfig,
    serviceaccount_mode,
    tenant_secret,
    unique,
    wait_for,
)
from tests.e2e.test_website import template, website
from tests.faultproxy import Fault, FaultProxy

pytestmark = [pytest.mark.e2e, pytest.mark.campaign]

#: what one site of one server is made of, by tag (the duplicate check)
EXPECTED = {"networks": 1, "subnets": 1, "routers": 1, "security_groups": 1, "servers": 1,
            "server_groups": 1, "load_balancers": 1, "floating_ips": 1}


class Box:
    def __init__(self, kube, paths, logs: Path, prefix: str = "camp",
                 cluster_wide: bool = False) -> None:
        self.kube, self.paths, self.logs = kube, paths, logs
        self.ns = unique(prefix)
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.ns}})
        kube.apply(tenant_secret(self.ns, paths.clouds_yaml))
        kube.apply(template(self.ns, "web", "campaign"))
        self.kubeconfig = (serviceaccount_kubeconfig(kube, self.ns, logs / "kubeconfig",
                                                     cluster_wide=cluster_wide)
                           if serviceaccount_mode(kube) else paths.kubeconfig)
        self.operator = Operator(self.kubeconfig, self.ns, logs)

    def close(self) -> None:
        if not self.operator.alive:
            self.operator.start()
        try:
            self.kube.delete_namespace(self.ns)
        finally:
            self.operator.stop()


@pytest.fixture
def box(kube, paths, tmp_path):
    b = Box(kube, paths, tmp_path)
    try:
        yield b
    finally:
        b.close()


def duplicates_of(conn, uid: str, kube, ns: str, name: str) -> int:
    counts = {k: len(v) for k, v in retrying(lambda: owned_by(conn, uid)).items()}
    extra = sum(max(0, counts.get(k, 0) - n) for k, n in EXPECTED.items())
    removed = sum(1 for e in kube.events(ns, name) if e["reason"] == "DuplicateRemoved")
    return extra + removed


def count_leaks(conn, uid: str, ns: str, name: str, cidr: str) -> int:
    found = leaks(conn, uid, prefix_of(ns, name) + "-", cidr)
    if found:
        print(f"LEAK {ns}/{name}: {json.dumps(found)}")
    return sum(len(ids) for by in found.values() for ids in by.values())


# --- bad input -------------------------------------------------------------------------------
#: (what, spec changes, SiteTemplate changes or None, refused by: "schema" | "operator")
BAD_MANIFESTS = [
    ("unknown field", {"replica": 3}, None, "schema"),
    ("CIDR /33", {"network": {"cidr": "10.60.200.0/33"}}, None, "schema"),
    ("DNS server not an address",
     {"network": {"cidr": "10.60.200.0/24", "dnsNameservers": ["dns.example.com"]}}, None,
     "schema"),
    ("load balancer port twice", {"loadBalancer": {"ports": [80, 80]}}, None, "schema"),
    ("template port twice", {"template": "dup"}, {"ports": [{"port": 80}, {"port": 80}]},
     "schema"),
    ("negative replicas", {"replicas": -1}, None, "schema"),
    ("ingress protocol sctp", {"ingress": [{"port": 80, "protocol": "sctp"}]}, None, "schema"),
    ("host bits in the CIDR", {"network": {"cidr": "10.60.200.9/24"}}, None, "operator"),
    ("health-check timeout above delay",
     {"loadBalancer": {"ports": [80], "healthCheck": {"delay": 2, "timeout": 5}}}, None,
     "operator"),
    ("cidr and existingNetwork",
     {"network": {"cidr": "10.60.200.0/24", "existingNetwork": "x"}}, None, "operator"),
    ("glusterVolume", {"storage": {"glusterVolume": "shared"}}, None, "operator"),
    ("missing template", {"template": "nope"}, None, "operator"),
    ("port the template does not serve", {"loadBalancer": {"ports": [8080]}}, None, "operator"),
    ("existing network not found", {"network": {"existingNetwork": "no-such-net"}}, None,
     "operator"),
    ("external network not found",
     {"network": {"cidr": "10.60.200.0/24", "externalNetwork": "no-such-ext"}}, None,
     "operator"),
    ("unknown flavor", {"template": "badflavor"}, {"flavor": "m9.nope"}, "operator"),
    ("name too long for OpenStack", {"__name__": "x" * 200}, None, "operator"),
]


def test_bad_inputs_are_refused_before_any_write(kube, box, conn):
    box.operator.start()
    for n, (what, change, tmpl, by) in enumerate(BAD_MANIFESTS):
        name = change.pop("__name__", f"bad-{n}")
        site = website(box.ns, name, "10.60.200.0/24", replicas=1)
        for key, value in change.items():
            site["spec"][key] = value
        if tmpl is not None:
            t = template(box.ns, site["spec"]["template"], "bad")
            t["spec"].update(tmpl)
            result = kube.apply(t, check=False)
            if by == "schema" and result.returncode != 0:
                T.refused(what, "schema (template)")
                continue
        result = kube.apply(site, check=False)
        if result.returncode != 0:
            assert by == "schema", f"{what}: refused by the schema, expected {by}"
            T.refused(what, "schema")
            continue
        assert by == "operator", f"{what}: accepted by the schema: {result.stdout}"
        obj = wait_for(lambda name=name: (o := kube.get("websites", box.ns, name)) and any(
            c["type"] == "Ready" and c["reason"] in ("InvalidSpec", "CloudError")
            for c in (o.get("status") or {}).get("conditions", [])) and o, 90,
            f"{what}: refused by the operator")
        uid = obj["metadata"]["uid"]
        assert "flexinfra.io/cleanup" not in (obj["metadata"].get("finalizers") or []), what
        made = {**retrying(lambda uid=uid: owned_by(conn, uid)),
                **retrying(lambda name=name: named_like(conn, prefix_of(box.ns, name) + "-"))}
        assert made == {}, f"{what}: {made}"
        kube.delete("websites", box.ns, name)
        wait_for(lambda name=name: not kube.exists("websites", box.ns, name), 15,
                 f"{what}: deleted at once")
        T.refused(what, "operator, before any write")
    assert T.TOTALS["bad inputs tried"] == len(BAD_MANIFESTS)


# --- faults on every write kind ------------------------------------------------------------
NEUTRON = [r"/networks$", r"/subnets$", r"/routers$", r"/ports$", r"/security-groups$",
           r"/security-group-rules$", r"/floatingips$"]
NEUTRON_PUT = [r"/add_router_interface$", r"/tags$"]
NOVA = [r"/servers$", r"/os-server-groups$"]
OCTAVIA = [r"/loadbalancers$", r"/listeners$", r"/pools$", r"/healthmonitors$", r"/members$"]

MODES = {
    "500": dict(status=500),
    "502": dict(status=502),
    "503": dict(status=503, headers={"Retry-After": "1"}),
    "504": dict(status=504),
    "timeout": dict(status=None, stall=8),  # nothing reaches the service
    "lost answer": dict(status=None, stall=8, forward_first=True),  # it acted; no answer
}


def faulty_secret(ns: str, name: str, data: dict, proxies: dict[str, FaultProxy],
                  upstream: dict[str, str]) -> dict:
    demo = json.loads(json.dumps(data))
    c = demo["clouds"]["demo"]
    c["api_timeout"] = 5
    c["network_endpoint_override"] = proxies["network"].url + "/"
    c["compute_endpoint_override"] = proxies["compute"].url + urlsplit(upstream["compute"]).path
    c["load_balancer_endpoint_override"] = proxies["load-balancer"].url + "/"
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
            "stringData": {"clouds.yaml": yaml.safe_dump(demo)}}


def test_faults_on_every_write_kind_converge_without_duplicates(kube, box, conn, paths):
    probe = cloud(paths.clouds_yaml)
    upstream = {"network": probe.network.get_endpoint(),
                "compute": probe.compute.get_endpoint(),
                "load-balancer": probe.load_balancer.get_endpoint()}
    data = yaml.safe_load(paths.clouds_yaml.read_text())
    proxies: dict[str, dict[str, FaultProxy]] = {}
    sites = {}
    try:
        for n, (mode, fault) in enumerate(MODES.items()):
            ps = {svc: FaultProxy(url).__enter__() for svc, url in upstream.items()}
            proxies[mode] = ps
            for path in NEUTRON:
                ps["network"].inject(Fault("POST", path, **fault))
            for path in NEUTRON_PUT:
                ps["network"].inject(Fault("PUT", path, **fault))
            for path in NOVA:
                ps["compute"].inject(Fault("POST", path, **fault))
            for path in OCTAVIA:
                ps["load-balancer"].inject(Fault("POST", path, **fault))
            name = f"fault-{mode.replace(' ', '-')}"
            secret = f"tenant-{n}"
            kube.apply(faulty_secret(box.ns, secret, data, ps, upstream))
            sites[name] = (f"10.60.{110 + n}.0/24", mode)
        box.operator.start()
        for name in sites:
            site = website(box.ns, name, sites[name][0], replicas=1)
            site["spec"]["cloud"]["secretName"] = f"tenant-{list(sites).index(name)}"
            kube.apply(site)
        uids = {}
        for name in sites:
            obj = kube.wait_condition("websites", box.ns, name, timeout=900)
            uids[name] = obj["metadata"]["uid"]
        for name, (_, mode) in sites.items():
            hits = sum(f.hits for p in proxies[mode].values() for f in p.faults)
            T.add("faults injected", hits)
            T.add(f"faults injected: {mode}", hits)
            T.add("duplicates found", duplicates_of(conn, uids[name], kube, box.ns, name))
        for p in proxies.values():
            for proxy in p.values():
                proxy.clear()
        for name in sites:
            kube.delete("websites", box.ns, name)
        for name, (cidr, _) in sites.items():
            wait_for(lambda name=name: not kube.exists("websites", box.ns, name), 400,
                     f"{name} deleted")
            T.add("leaks found", count_leaks(conn, uids[name], box.ns, name, cidr))
    finally:
        for p in proxies.values():
            for proxy in p.values():
                proxy.__exit__(None, None, None)
    assert T.TOTALS["duplicates found"] == 0 and T.TOTALS["leaks found"] == 0, T.TOTALS


# --- SIGKILL ---------------------------------------------------------------------------------
def test_sigkill_during_creates_and_deletes(kube, box, conn, paths):
    """Four sites applied a few seconds apart; the operator SIGKILLed every few seconds while
    they are built (one kill while a tag call is held open by the proxy: inside the create ->
    tag window), then again while they are deleted."""
    before = (T.TOTALS["duplicates found"], T.TOTALS["leaks found"])
    probe = cloud(paths.clouds_yaml)
    upstream = probe.network.get_endpoint()
    data = yaml.safe_load(paths.clouds_yaml.read_text())
    names = [f"kill-{n}" for n in range(4)]
    cidrs = {name: f"10.60.{120 + n}.0/24" for n, name in enumerate(names)}
    with FaultProxy(upstream) as proxy:
        demo = json.loads(json.dumps(data))
        demo["clouds"]["demo"]["network_endpoint_override"] = proxy.url + "/"
        kube.apply({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "tenant-tagwindow", "namespace": box.ns},
                    "stringData": {"clouds.yaml": yaml.safe_dump(demo)}})
        # the tag call after a create hangs 6 s (then the connection drops): a kill then is
        # a kill between the create and its tags
        window = proxy.inject(Fault("PUT", r"/tags$", status=None, stall=6, times=1))
        box.operator.start()
        for n, name in enumerate(names):
            site = website(box.ns, name, cidrs[name], replicas=1)
            if n == 0:
                site["spec"]["cloud"]["secretName"] = "tenant-tagwindow"
            kube.apply(site)
            time.sleep(3)
        uids = {n: wait_for(lambda n=n: kube.get("websites", box.ns, n)["metadata"]["uid"], 30,
                            "uid") for n in names}
        # inside the window: as soon as the held tag call is seen
        if window.hits or wait_for(lambda: window.hits, 90, "a tag call held", every=0.2):
            time.sleep(1)
            box.operator.kill()
            T.add("crashes")
            T.add("crashes inside create -> tag")
            box.operator.start()
        for delay in (4, 6, 9, 13, 20):
            time.sleep(delay)
            box.operator.kill()
            T.add("crashes")
            box.operator.start()
        for name in names:
            kube.wait_condition("websites", box.ns, name, timeout=900)
        for name in names:
            T.add("duplicates found", duplicates_of(conn, uids[name], kube, box.ns, name))
        for name in names:
            kube.delete("websites", box.ns, name)
        for delay in (2, 5, 8):
            time.sleep(delay)
            box.operator.kill()
            T.add("crashes")
            T.add("crashes during delete")
            box.operator.start()
        for name in names:
            wait_for(lambda name=name: not kube.exists("websites", box.ns, name), 600,
                     f"{name} deleted")
            T.add("leaks found", count_leaks(conn, uids[name], box.ns, name, cidrs[name]))
    # this test's own (the totals add up over the campaign)
    assert (T.TOTALS["duplicates found"], T.TOTALS["leaks found"]) == before, T.TOTALS


# --- a namespace deleted with its sites in it --------------------------------------------------
def test_namespace_deleted_with_sites_in_it(kube, paths, conn, tmp_path):
    """The operator installed the default way (cluster-wide rights, its ServiceAccount in a
    namespace of its own). With watchNamespaces the chart's RoleBinding sits in the namespace
    being deleted and goes with it: see README, "Deleting a watched namespace"."""
    b = Box(kube, paths, tmp_path, prefix="camp-ns", cluster_wide=True)
    b.operator.start()
    try:
        names = {"ns-a": "10.60.130.0/24", "ns-b": "10.60.131.0/24"}
        for name, cidr in names.items():
            kube.apply(website(b.ns, name, cidr, replicas=1))
        uids = {name: kube.wait_condition("websites", b.ns, name, timeout=600)
                ["metadata"]["uid"] for name in names}
        started = time.monotonic()
        if serviceaccount_mode(kube):  # the controller-manager's namespace controller
            kube.kubectl("delete", "namespace", b.ns, "--wait=false")
        else:  # by hand, in the order it would (objects, Secrets, finalize)
            kube.kubectl("-n", b.ns, "delete", "secret", "tenant", "--wait=false")
            kube.delete_namespace(b.ns)
        wait_for(lambda: not kube.kubectl("get", "namespace", b.ns, "--ignore-not-found",
                                          "-o", "name", check=False).stdout.strip(), 600,
                 "the namespace gone")
        print(f"namespace with 2 sites gone in {time.monotonic() - started:.0f}s")
        for name, cidr in names.items():
            T.add("leaks found", count_leaks(conn, uids[name], b.ns, name, cidr))
    finally:
        b.operator.stop()
        if serviceaccount_mode(kube):
            remove_cluster_wide_serviceaccount(kube, b.ns)
    assert T.TOTALS["leaks found"] == 0
