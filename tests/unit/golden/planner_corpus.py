"""Scenarios for the pure WebSite planner, pass by pass, over the in-memory tenant of
``test_planning_website`` (extended here with orphans to adopt and references to resolve).

Each scenario drives the planner the way the operator does (plan, apply, time passes, plan
again) and records every pass. ``render_corpus()`` is the golden text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from flexinfra.core import tags as T
from flexinfra.core.objects import CloudObject
from flexinfra.planning import website as P
from flexinfra.planning.load_balancer import HealthCheckIntent
from flexinfra.planning.website import SiteIntent
from tests.unit.golden.render import plan_lines
from tests.unit.test_planning_website import FakeTenant, intent


class GoldenTenant(FakeTenant):
    """FakeTenant plus what it does not model: orphans found by name (adopted by tagging),
    a retained floating IP, resolved references (image, flavor, zones, shared network) and
    free-form edits of the observation."""

    def __init__(self) -> None:
        super().__init__()
        self.orphans: dict[str, CloudObject] = {}
        self.retained: CloudObject | None = None
        self.refs: dict[str, Any] = {}
        self.edit: Callable | None = None

    def observe(self, it: SiteIntent):
        o = super().observe(it)
        o.untagged = dict(self.orphans)
        if o.floating_ip is None:
            o.retained_ip = self.retained
        for key, value in self.refs.items():
            setattr(o, key, value)
        if self.edit:
            self.edit(o)
        return o

    def apply(self, plan) -> None:
        for a in plan.actions:
            if a.verb != "adopt":
                continue
            key = next((k for k, v in self.orphans.items() if v.id == a.target_id), None)
            found = self.orphans.pop(key) if key else None
            if found is None and self.retained is not None and self.retained.id == a.target_id:
                found, self.retained = self.retained, None
            if found is None:  # re-tagging an object we hold (retain flag changed)
                found = self.objs[str(a.kind)][a.target_id]
            attrs = dict(found.attrs)
            if "port_id" in a.params and not hasattr(a.params["port_id"], "key"):
                attrs["port_id"] = a.params["port_id"]
            elif "port_id" in a.params:
                attrs["port_id"] = "vip-port"
            self.objs.setdefault(str(a.kind), {})[found.id] = replace(
                found, tags=frozenset(a.params.get("tags") or found.tags), attrs=attrs
            )
        super().apply(plan)


class Recorder:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def scenario(self, name: str) -> None:
        self.lines.append(f"=== {name}")

    def note(self, text: str) -> None:
        self.lines.append(f"--- {text}")

    def plan(self, tenant: GoldenTenant, it: SiteIntent, label: str, *, apply=True, settle=True):
        plan, invalid = P.plan_site(it, tenant.observe(it))
        self.lines.append(f"--- {label}")
        self.lines += plan_lines(plan, invalid)
        if apply and not invalid:
            tenant.apply(plan)
            if settle:
                tenant.settle()
        return plan, invalid

    def converge(self, tenant: GoldenTenant, it: SiteIntent, label: str, passes: int = 40):
        for n in range(passes):
            plan, invalid = self.plan(tenant, it, f"{label} pass {n}")
            if invalid or plan.converged or plan.blocked:
                return plan
        raise AssertionError(f"{label}: not converged")


def built(rec: Recorder, **over) -> tuple[GoldenTenant, SiteIntent]:
    tenant, it = GoldenTenant(), intent(**over)
    rec.converge(tenant, it, "build")
    return tenant, it


def only(tenant: GoldenTenant, kind: str) -> CloudObject:
    return next(iter(tenant.objs[kind].values()))


def server(tenant: GoldenTenant, index: int) -> CloudObject:
    return next(s for s in tenant.objs["server"].values() if s.name.endswith(f"-{index}"))


def put_back(tenant: GoldenTenant, kind: str, obj: CloudObject) -> None:
    tenant.objs[kind][obj.id] = obj


# --- scenarios -------------------------------------------------------------------------------
def fresh_default(rec):
    rec.converge(GoldenTenant(), intent(), "fresh")


def fresh_http_two_ports_no_zones(rec):
    it = intent(
        replicas=1, availability_zones=(), lb_ports=(80, 443), lb_protocol="HTTP",
        lb_algorithm="LEAST_CONNECTIONS",
        health_check=HealthCheckIntent(type="HTTP", path="/healthz", expected_codes="200-204"),
        template_ports=((80, "tcp"), (443, "tcp")), dns_nameservers=("192.0.2.53",),
        key_name="ops", server_metadata={"role": "web"},
        ingress=((443, "tcp", "0.0.0.0/0"), (None, "icmp", "198.51.100.0/24"),
                 (53, "udp", "2001:db8::/32")),
    )
    rec.converge(GoldenTenant(), it, "fresh http")


def fresh_without_public_ip_and_hard_anti_affinity(rec):
    rec.converge(GoldenTenant(), intent(public_ip=False, anti_affinity="hard", replicas=3),
                 "fresh private")


def fresh_with_volumes(rec):
    rec.converge(GoldenTenant(), intent(volume_size_gb=2, volume_type="ssd"), "fresh volumes")


def scale_up_and_down(rec):
    tenant, _ = built(rec, replicas=2)
    rec.converge(tenant, intent(replicas=4), "up to 4")
    rec.converge(tenant, intent(replicas=1), "down to 1")
    rec.converge(tenant, intent(replicas=0), "down to 0")
    rec.converge(tenant, intent(replicas=2), "back to 2")


def scale_down_with_volumes(rec):
    tenant, _ = built(rec, replicas=3, volume_size_gb=1)
    rec.converge(tenant, intent(replicas=1, volume_size_gb=1), "down to 1")


def template_change_surge(rec):
    tenant, _ = built(rec, replicas=3)
    rec.converge(tenant, intent(replicas=3, template_hash="bbbb"), "roll")


def template_change_in_place_with_volumes(rec):
    tenant, _ = built(rec, replicas=2, volume_size_gb=1)
    rec.converge(tenant, intent(replicas=2, volume_size_gb=1, template_hash="bbbb"), "roll")


def template_change_single_replica_with_volume(rec):
    tenant, _ = built(rec, replicas=1, volume_size_gb=1)
    rec.converge(tenant, intent(replicas=1, volume_size_gb=1, template_hash="bbbb"), "roll")


def volumes_turned_on_then_off(rec):
    tenant, _ = built(rec, replicas=2)
    rec.converge(tenant, intent(replicas=2, volume_size_gb=1, template_hash="vol"), "on")
    rec.converge(tenant, intent(replicas=2, template_hash="aaaa"), "off")


def volume_states(rec):
    tenant, it = built(rec, replicas=1, volume_size_gb=1)
    vol = only(tenant, "volume")
    put_back(tenant, "volume", replace(vol, status="creating", attrs={}))
    rec.plan(tenant, it, "volume creating", apply=False)
    put_back(tenant, "volume", replace(vol, status="available", attrs={}))
    rec.converge(tenant, it, "volume detached")
    put_back(tenant, "volume", replace(only(tenant, "volume"), status="error", attrs={}))
    rec.plan(tenant, it, "volume in error", apply=False)


def server_building_waits(rec):
    tenant, it = GoldenTenant(), intent()
    rec.plan(tenant, it, "first", settle=False)
    rec.plan(tenant, it, "servers still building", settle=False)
    tenant.settle()
    rec.converge(tenant, it, "after build")


def error_server_replaced(rec):
    tenant, it = built(rec)
    s = server(tenant, 0)
    put_back(tenant, "server", replace(s, status="ERROR", attrs={**s.attrs,
                                       "fault": {"message": "host went away"}}))
    rec.converge(tenant, it, "after ERROR")


def error_back_off_blocks_after_three(rec):
    tenant, it = built(rec, replicas=2)
    tenant.failing[1] = "Build of instance aborted: disk image is corrupt"
    s = server(tenant, 1)
    put_back(tenant, "server", replace(s, status="ERROR", attrs={**s.attrs,
                                       "fault": {"message": "host went away"}}))
    rec.converge(tenant, it, "failing")
    rec.plan(tenant, it, "blocked, again")
    del tenant.failing[1]
    failed = next(s for s in tenant.objs["server"].values() if s.status == "ERROR")
    tenant.objs["server"].pop(failed.id)
    rec.converge(tenant, it, "user deleted the server")


def error_same_server_seen_again(rec):
    tenant, it = built(rec, replicas=1)
    s = only(tenant, "server")
    put_back(tenant, "server", replace(s, status="ERROR"))
    for n in range(2):
        plan, _ = rec.plan(tenant, it, f"lost writes {n}", apply=False)
        tenant.apply(replace(plan, actions=[a for a in plan.actions if a.verb == "tag"]))
    rec.converge(tenant, it, "then")


def error_old_template_replaced(rec):
    tenant, it = built(rec, replicas=1)
    tenant.failing[0] = "boom"
    s = only(tenant, "server")
    put_back(tenant, "server", replace(s, status="ERROR"))
    rec.converge(tenant, it, "failing")
    del tenant.failing[0]
    rec.converge(tenant, intent(replicas=1, template_hash="bbbb"), "template fixed")


def unplaceable_then_soft(rec):
    tenant, it = GoldenTenant(), intent(replicas=3, anti_affinity="hard")
    rec.plan(tenant, it, "first")
    s = server(tenant, 0)
    put_back(tenant, "server", replace(s, status="ERROR", attrs={
        **s.attrs, "fault": {"message": "No valid host was found. "}}))
    rec.plan(tenant, it, "no valid host")
    rec.converge(tenant, intent(replicas=3, anti_affinity="soft", template_hash="soft"), "soft")


def server_shelved_and_deleted_state(rec):
    tenant, it = built(rec, replicas=2)
    put_back(tenant, "server", replace(server(tenant, 0), status="SHUTOFF"))
    rec.plan(tenant, it, "SHUTOFF (not failed, not serving)", apply=False)
    put_back(tenant, "server", replace(server(tenant, 0), status="SHELVED_OFFLOADED"))
    rec.converge(tenant, it, "shelved")


def zones_change(rec):
    tenant, _ = built(rec, replicas=2)
    tenant.refs["available_zones"] = frozenset({"az1", "az2", "az3"})
    rec.converge(tenant, intent(replicas=2, availability_zones=("az3",)), "to az3")


def anti_affinity_change(rec):
    tenant, _ = built(rec, replicas=2)
    rec.converge(tenant, intent(replicas=2, anti_affinity="hard", template_hash="hard"), "hard")


def load_balancer_deleted(rec):
    tenant, it = built(rec)
    for kind in ("load_balancer", "listener", "pool", "health_monitor"):
        tenant.objs[kind].clear()
    tenant.members.clear()
    fip = only(tenant, "floating_ip")
    put_back(tenant, "floating_ip", replace(fip, attrs={**fip.attrs, "port_id": None}))
    rec.converge(tenant, it, "LB gone")


def load_balancer_error_and_pending(rec):
    tenant, it = built(rec)
    lb = only(tenant, "load_balancer")
    put_back(tenant, "load_balancer", replace(lb, status="PENDING_UPDATE"))
    rec.plan(tenant, it, "pending", apply=False)
    put_back(tenant, "load_balancer", replace(lb, status="ERROR"))
    rec.plan(tenant, it, "error")
    for kind in ("listener", "pool", "health_monitor"):
        tenant.objs[kind].clear()
    tenant.members.clear()
    rec.converge(tenant, it, "re-created")


def load_balancer_ports_protocol_algorithm_health(rec):
    tenant, _ = built(rec, template_ports=((80, "tcp"), (8080, "tcp")))
    both = dict(template_ports=((80, "tcp"), (8080, "tcp")))
    rec.converge(tenant, intent(lb_ports=(80, 8080), **both), "add 8080")
    rec.converge(tenant, intent(lb_ports=(8080,), **both), "drop 80")
    rec.converge(tenant, intent(lb_ports=(8080,), lb_protocol="HTTP", **both), "protocol HTTP")
    rec.converge(tenant, intent(lb_ports=(8080,), lb_protocol="HTTP",
                                lb_algorithm="SOURCE_IP", **both), "algorithm")
    hc = HealthCheckIntent(type="HTTP", path="/up", delay=7)
    rec.converge(tenant, intent(lb_ports=(8080,), lb_protocol="HTTP", lb_algorithm="SOURCE_IP",
                                health_check=hc, **both), "health check type")
    hc2 = replace(hc, delay=9, max_retries=5, expected_codes="200,301")
    last = intent(lb_ports=(8080,), lb_protocol="HTTP", lb_algorithm="SOURCE_IP",
                  health_check=hc2, **both)
    rec.converge(tenant, last, "health check values")
    lis = only(tenant, "listener")
    put_back(tenant, "listener", replace(lis, attrs={**lis.attrs, "default_pool_id": None}))
    rec.converge(tenant, last, "default pool lost")


def floating_ip_variants(rec):
    tenant, it = built(rec)
    fip = only(tenant, "floating_ip")
    put_back(tenant, "floating_ip", replace(fip, attrs={**fip.attrs, "port_id": "elsewhere"}))
    rec.converge(tenant, it, "moved away")
    rec.converge(tenant, intent(retain_ip=True), "retain on")
    rec.converge(tenant, intent(retain_ip=False), "retain off")
    rec.converge(tenant, intent(public_ip=False), "public IP off")
    rec.converge(tenant, intent(), "public IP on")


def retained_ip_adopted(rec):
    tenant = GoldenTenant()
    tenant.retained = CloudObject(
        "floating_ip", "fip-old", "", "DOWN", frozenset({"flexinfra-retained:abc"}),
        {"floating_ip_address": "203.0.113.99"},
    )
    rec.converge(tenant, intent(retain_ip=True, retained_tag="flexinfra-retained:abc"), "new")


def existing_network(rec):
    tenant = GoldenTenant()
    tenant.refs.update(
        shared_network=CloudObject("network", "shared-net", "shared", "ACTIVE"),
        shared_subnet=CloudObject("subnet", "shared-sub", "shared-v4", None,
                                  attrs={"cidr": "10.30.0.0/16"}),
    )
    it = intent(cidr=None, existing_network="shared")
    rec.converge(tenant, it, "shared")
    tenant.refs["shared_subnet"] = None
    rec.plan(tenant, it, "shared network lost its subnet", apply=False)
    tenant.refs["shared_network"] = None
    rec.plan(tenant, it, "shared network gone", apply=False)


def security_group_drift(rec):
    tenant, it = built(rec)
    sg = only(tenant, "security_group")
    rules = list(sg.get("security_group_rules"))
    extra = {"id": "evil", "direction": "ingress", "ethertype": "IPv4", "protocol": "TCP",
             "port_range_min": 3306, "port_range_max": 3306, "remote_ip_prefix": "0.0.0.0/0"}
    dup = {**rules[-1], "id": "dup"}
    kept = [r for r in rules if r["id"] != "e6"]
    put_back(tenant, "security_group", replace(sg, attrs={"security_group_rules":
                                                          [*kept, extra, dup]}))
    rec.converge(tenant, it, "drift")
    rec.converge(tenant, intent(ingress=((443, "tcp", "0.0.0.0/0"),)), "ingress changed")
    rec.converge(tenant, intent(ingress=((443, "tcp", "0.0.0.0/0"),),
                                template_ports=((80, "tcp"), (9000, "udp"))), "template ports")


def orphans_adopted(rec):
    tenant, it = GoldenTenant(), intent(volume_size_gb=1)
    for kind, name in (("network", "fi-ns-site-net"), ("subnet", "fi-ns-site-subnet"),
                       ("router", "fi-ns-site-router"), ("security_group", "fi-ns-site-sg"),
                       ("load_balancer", "fi-ns-site-lb"), ("port", "fi-ns-site-web-0")):
        attrs: dict[str, Any] = {}
        if kind == "subnet":
            attrs = {"cidr": "10.201.1.0/24", "dns_nameservers": []}
        if kind == "router":
            attrs = {"external_gateway_info": {"network_id": "ext-net"}}
        if kind == "security_group":
            attrs = {"security_group_rules": [
                {"id": "o4", "direction": "egress", "ethertype": "IPv4"}]}
        if kind == "load_balancer":
            attrs = {"vip_port_id": "vip-port", "vip_address": "10.201.1.5"}
        if kind == "port":
            attrs = {"fixed_ips": [{"ip_address": "10.201.1.10"}]}
        tenant.orphans[f"{kind}:{name}"] = CloudObject(
            kind, f"orphan-{kind}", name, "ACTIVE" if kind == "load_balancer" else None,
            frozenset({T.INDEX_PREFIX + "0"}) if kind == "port" else frozenset(), attrs)
    tenant.orphans["floating_ip:fi-ns-site-fip"] = CloudObject(
        "floating_ip", "orphan-fip", "", "DOWN", frozenset(),
        {"floating_ip_address": "203.0.113.50", "description": "fi-ns-site-fip"})
    rec.converge(tenant, it, "orphans")


def network_drift(rec):
    tenant, it = built(rec)
    router = only(tenant, "router")
    put_back(tenant, "router", replace(router, attrs={"external_gateway_info": None}))
    tenant.objs["router_interface"].clear()
    rec.converge(tenant, it, "router drift")
    rec.converge(tenant, intent(dns_nameservers=("192.0.2.1", "192.0.2.2")), "dns")
    port = next(iter(tenant.objs["port"].values()))
    put_back(tenant, "port", replace(port, attrs={**port.attrs, "security_group_ids": []}))
    rec.converge(tenant, intent(dns_nameservers=("192.0.2.1", "192.0.2.2")), "port sg")


def invalid_inputs(rec):
    for key, value in (("image_id", None), ("flavor_id", None), ("external_network_id", None),
                       ("overlapping_subnets", ["other (10.201.0.0/16)"]),
                       ("available_zones", frozenset({"az1"}))):
        tenant = GoldenTenant()
        tenant.refs[key] = value
        rec.plan(tenant, intent(), f"{key}={value}", apply=False)
    rec.plan(GoldenTenant(), intent(cidr=None), "neither cidr nor existing network", apply=False)
    tenant, _ = built(rec)
    rec.plan(tenant, intent(cidr="10.201.2.0/24"), "cidr change", apply=False)
    tenant.refs["external_network_id"] = None
    rec.plan(tenant, intent(public_ip=True), "external network gone on a built site",
             apply=False)
    tenant.refs["image_id"] = None
    rec.plan(tenant, intent(), "image gone, nothing to create", apply=False)
    rec.plan(tenant, intent(replicas=3), "image gone, one to create", apply=False)


SCENARIOS = [
    fresh_default,
    fresh_http_two_ports_no_zones,
    fresh_without_public_ip_and_hard_anti_affinity,
    fresh_with_volumes,
    scale_up_and_down,
    scale_down_with_volumes,
    template_change_surge,
    template_change_in_place_with_volumes,
    template_change_single_replica_with_volume,
    volumes_turned_on_then_off,
    volume_states,
    server_building_waits,
    error_server_replaced,
    error_back_off_blocks_after_three,
    error_same_server_seen_again,
    error_old_template_replaced,
    unplaceable_then_soft,
    server_shelved_and_deleted_state,
    zones_change,
    anti_affinity_change,
    load_balancer_deleted,
    load_balancer_error_and_pending,
    load_balancer_ports_protocol_algorithm_health,
    floating_ip_variants,
    retained_ip_adopted,
    existing_network,
    security_group_drift,
    orphans_adopted,
    network_drift,
    invalid_inputs,
]


def render_corpus() -> str:
    rec = Recorder()
    for scenario in SCENARIOS:
        rec.scenario(scenario.__name__)
        scenario(rec)
    return "\n".join(rec.lines) + "\n"
