"""The pure WebSite planner, driven through a tiny in-memory cloud (no OpenStack, no mocks).

``FakeTenant`` applies planned actions the way the cloud would (servers go BUILD -> ACTIVE on
the next pass, members appear in pools) so multi-pass behaviour — rolling replacement, scale
down ordering, drift repair — is checked pass by pass with its invariants.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from flexinfra.core import tags as T
from flexinfra.core.objects import CloudObject, Ref
from flexinfra.planning import servers as S
from flexinfra.planning import website as P
from flexinfra.planning.load_balancer import HealthCheckIntent
from flexinfra.planning.website import ObservedSite, SiteIntent

UID = "0b5c6a3e-1111-4222-8333-444455556666"


def intent(**over) -> SiteIntent:
    base = SiteIntent(
        prefix="fi-ns-site",
        owner_uid=UID,
        replicas=2,
        availability_zones=("az1", "az2"),
        cidr="10.201.1.0/24",
        existing_network=None,
        external_network="public",
        dns_nameservers=(),
        image="debian",
        flavor="small",
        user_data="#!/bin/sh\n",
        key_name=None,
        server_metadata={},
        template_ports=((80, "tcp"),),
        ingress=((80, "tcp", "0.0.0.0/0"), (22, "tcp", "203.0.113.0/24")),
        lb_ports=(80,),
        lb_protocol="TCP",
        lb_algorithm="ROUND_ROBIN",
        health_check=HealthCheckIntent(type="TCP"),
        public_ip=True,
        retain_ip=False,
        volume_size_gb=None,
        volume_type=None,
        anti_affinity="soft",
        template_hash="aaaa",
    )
    return replace(base, **over)


class FakeTenant:
    """Holds objects as the cloud would and turns a plan into the next observation."""

    def __init__(self) -> None:
        self.ids = (f"id-{n}" for n in itertools.count())
        self.objs: dict[str, dict[str, CloudObject]] = {}
        self.members: dict[int, list[CloudObject]] = {}
        self.build: set[str] = set()
        self.failing: dict[int, str] = {}  # server index -> Nova fault: its builds go to ERROR

    def put(self, kind: str, name: str, status=None, tags=(), **attrs) -> CloudObject:
        obj = CloudObject(
            kind, attrs.pop("id", None) or next(self.ids), name, status, frozenset(tags), attrs
        )
        self.objs.setdefault(kind, {})[obj.id] = obj
        return obj

    def observe(self, it: SiteIntent) -> ObservedSite:
        def one(kind):
            return next(iter(self.objs.get(kind, {}).values()), None)

        o = ObservedSite(
            network=one("network"),
            subnet=one("subnet"),
            router=one("router"),
            security_group=one("security_group"),
            load_balancer=one("load_balancer"),
            floating_ip=one("floating_ip"),
            external_network_id="ext-net",
            image_id="img",
            flavor_id="flv",
            available_zones=frozenset({"az1", "az2"}),
        )
        o.router_interface = one("router_interface")
        o.server_groups = list(self.objs.get("server_group", {}).values())
        o.servers = list(self.objs.get("server", {}).values())
        for port in self.objs.get("port", {}).values():
            o.ports[int(T.tag_value(port.tags, T.INDEX_PREFIX))] = port
        for volume in self.objs.get("volume", {}).values():
            o.volumes[int(T.tag_value(volume.tags, T.INDEX_PREFIX))] = volume
        for kind, target in (
            ("listener", o.listeners),
            ("pool", o.pools),
            ("health_monitor", o.health_monitors),
        ):
            for obj in self.objs.get(kind, {}).values():
                target[obj.get("port")] = obj
        o.members = {port: list(ms) for port, ms in self.members.items() if port in o.pools}
        return o

    def settle(self) -> None:
        """Time passes: servers that were building are ACTIVE now."""
        for sid in list(self.build):
            s = self.objs["server"][sid]
            fault = self.failing.get(int(T.tag_value(s.tags, T.INDEX_PREFIX)))
            if fault:
                s = replace(s, status="ERROR", attrs={**s.attrs, "fault": {"message": fault}})
            else:
                s = replace(s, status="ACTIVE")
            self.objs["server"][sid] = s
        self.build.clear()

    def apply(self, plan) -> None:
        created: dict[str, CloudObject] = {}

        def res(v):
            if isinstance(v, Ref):
                obj = created.get(v.key) or self._by_key(v.key)
                return obj.id if v.field == "id" else obj.get(v.field)
            return v

        for a in plan.actions:
            p = {k: res(v) for k, v in a.params.items()}
            if a.verb == "attach":
                vol = self.objs["volume"][a.target_id]
                self.objs["volume"][a.target_id] = replace(
                    vol, status="in-use", attrs={"attachments": [{"server_id": p["server_id"]}]}
                )
                continue
            if a.verb == "delete":
                if a.kind == "server":  # Nova detaches its volumes
                    for vid, vol in self.objs.get("volume", {}).items():
                        if {"server_id": a.target_id} in vol.get("attachments", []):
                            self.objs["volume"][vid] = replace(vol, status="available", attrs={})
                if a.kind == "member":
                    for port in self.members:
                        self.members[port] = [m for m in self.members[port] if m.id != a.target_id]
                elif a.kind != "security_group_rule":
                    self.objs[a.kind].pop(a.target_id)
                else:
                    sg = next(iter(self.objs["security_group"].values()))
                    rules = [r for r in sg.get("security_group_rules") if r["id"] != a.target_id]
                    self.objs["security_group"][sg.id] = replace(
                        sg, attrs={"security_group_rules": rules}
                    )
                continue
            if a.verb == "tag":
                obj = self.objs[a.kind][a.target_id]
                self.objs[a.kind][a.target_id] = replace(obj, tags=frozenset(p["tags"]))
                continue
            if a.verb in ("update", "associate"):
                obj = self.objs[a.kind][a.target_id]
                self.objs[a.kind][a.target_id] = replace(obj, attrs={**obj.attrs, **p})
            if a.verb != "create":
                continue
            if a.kind == "server":
                obj = self.put(
                    "server", a.name, "BUILD", p["tags"], availability_zone=p["availability_zone"]
                )
                self.build.add(obj.id)
            elif a.kind == "volume":
                tags = [f"{k}:{v}" for k, v in p["metadata"].items()]
                obj = self.put("volume", a.name, "available", tags)
            elif a.kind == "port":
                idx = a.key.split(":")[1]
                obj = self.put(
                    "port",
                    a.name,
                    tags=p["tags"],
                    fixed_ips=[{"ip_address": f"10.201.1.{10 + int(idx)}"}],
                )
            elif a.kind == "member":
                port = p["protocol_port"]
                obj = CloudObject(
                    "member",
                    next(self.ids),
                    a.name,
                    "ACTIVE",
                    frozenset(),
                    {"address": p["address"]},
                )
                self.members.setdefault(port, []).append(obj)
            elif a.kind == "security_group_rule":
                sg = self.objs["security_group"][p["security_group_id"]]
                r = p["rule"]
                rules = [
                    *sg.get("security_group_rules", []),
                    {
                        "id": next(self.ids),
                        "direction": r.direction,
                        "ethertype": r.ethertype,
                        "protocol": r.protocol,
                        "port_range_min": r.port_min,
                        "port_range_max": r.port_max,
                        "remote_ip_prefix": r.remote_ip_prefix,
                    },
                ]
                self.objs["security_group"][sg.id] = replace(
                    sg, attrs={"security_group_rules": rules}
                )
                continue
            elif a.kind == "security_group":
                obj = self.put(
                    "security_group",
                    a.name,
                    security_group_rules=[
                        {"id": "e4", "direction": "egress", "ethertype": "IPv4"},
                        {"id": "e6", "direction": "egress", "ethertype": "IPv6"},
                    ],
                )
            elif a.kind in ("listener", "pool", "health_monitor"):
                port = p.get("protocol_port") or int(a.name.rsplit("-", 1)[1])
                obj = self.put(
                    a.kind,
                    a.name,
                    "ACTIVE",
                    protocol=p.get("protocol"),
                    port=port,
                    lb_algorithm=p.get("lb_algorithm"),
                    type=p.get("type"),
                    delay=p.get("delay"),
                    timeout=p.get("timeout"),
                    max_retries=p.get("max_retries"),
                )
                if a.kind == "pool":  # Octavia makes it the listener's default pool
                    lis = self.objs["listener"][p["listener_id"]]
                    self.objs["listener"][lis.id] = replace(
                        lis, attrs={**lis.attrs, "default_pool_id": obj.id}
                    )
            elif a.kind == "load_balancer":
                obj = self.put(
                    "load_balancer",
                    a.name,
                    "ACTIVE",
                    vip_port_id="vip-port",
                    vip_address="10.201.1.5",
                )
            elif a.kind == "floating_ip":
                obj = self.put(
                    "floating_ip",
                    a.name,
                    "ACTIVE",
                    p["tags"],
                    port_id=p["port_id"],
                    floating_ip_address="203.0.113.7",
                )
            elif a.kind == "subnet":
                obj = self.put("subnet", a.name, cidr=p["cidr"], dns_nameservers=[])
            elif a.kind == "router":
                obj = self.put("router", a.name, external_gateway_info=p["external_gateway_info"])
            else:
                obj = self.put(a.kind, a.name)
            if a.key:
                created[a.key] = obj

    def _by_key(self, key: str) -> CloudObject:
        kind, _, index = key.partition(":")
        for obj in self.objs.get(kind, {}).values():
            if not index or obj.name.endswith(f"-{index}"):
                return obj
        raise KeyError(key)

    def serving(self) -> int:
        addresses = [{m.get("address") for m in ms} for ms in self.members.values()]
        return len(set.intersection(*addresses)) if addresses else 0


def converge(tenant: FakeTenant, it: SiteIntent, passes: int = 20, check=None):
    for _ in range(passes):
        plan, invalid = P.plan_site(it, tenant.observe(it))
        assert not invalid, invalid
        if plan.converged:
            return plan
        tenant.apply(plan)
        tenant.settle()
        if check:
            check(tenant)
    raise AssertionError(f"not converged: {plan.actions} {plan.waiting}")


def test_fresh_site_plans_everything_in_dependency_order():
    it = intent()
    plan, invalid = P.plan_site(it, FakeTenant().observe(it))
    assert not invalid
    kinds = [a.kind for a in plan.actions if a.verb == "create"]
    order = [
        "network",
        "subnet",
        "router",
        "router_interface",
        "security_group",
        "server_group",
        "port",
        "server",
        "load_balancer",
        "listener",
        "pool",
        "health_monitor",
        "floating_ip",
    ]
    assert [k for k in order if k in kinds] == order
    # positions respect dependencies
    first = {k: kinds.index(k) for k in order}
    assert first["network"] < first["subnet"] < first["router_interface"] < first["port"]
    assert first["port"] < first["server"] and first["load_balancer"] < first["listener"]
    assert kinds.count("server") == 2 and "member" not in kinds  # members wait for ACTIVE
    zones = [a.params["availability_zone"] for a in plan.actions if a.kind == "server"]
    assert sorted(zones) == ["az1", "az2"]
    server = next(a for a in plan.actions if a.kind == "server")
    assert f"flexinfra-owner:{UID}" in server.params["tags"]
    assert all(len(t) <= 60 and "/" not in t and "," not in t for t in server.params["tags"])


def test_converges_then_idle_plan_is_empty():
    tenant, it = FakeTenant(), intent()
    plan = converge(tenant, it)
    assert plan.ready_replicas == 2
    assert plan.url == "http://203.0.113.7"
    assert tenant.serving() == 2
    again, _ = P.plan_site(it, tenant.observe(it))
    assert again.actions == [] and again.waiting == []


def test_security_group_rules_converge_both_ways():
    tenant, it = FakeTenant(), intent()
    converge(tenant, it)
    changed = intent(ingress=((443, "tcp", "0.0.0.0/0"),))
    plan, _ = P.plan_site(changed, tenant.observe(changed))
    rules = [(a.verb, a.reason) for a in plan.actions if a.kind == "security_group_rule"]
    assert ("create", "allow ingress tcp port 443 from 0.0.0.0/0") in rules
    assert ("delete", "not declared: ingress tcp port 22 from 203.0.113.0/24") in rules
    assert ("delete", "not declared: ingress tcp port 80 from 0.0.0.0/0") in rules
    # the template port stays open to the site's subnet (the load balancer's side)
    assert not any("10.201.1.0/24" in r for _, r in rules)
    converge(tenant, changed)


def test_scale_down_drains_members_before_the_server_goes():
    tenant, it = FakeTenant(), intent(replicas=3)
    converge(tenant, it)
    down = intent(replicas=1)
    plan, _ = P.plan_site(down, tenant.observe(down))
    verbs = [(a.verb, a.kind) for a in plan.actions]
    assert verbs.count(("delete", "member")) == 2
    assert ("delete", "server") not in verbs  # next pass, once the members are gone
    tenant.apply(plan)
    plan, _ = P.plan_site(down, tenant.observe(down))
    deleted = [
        (a.name, a.reason) for a in plan.actions if a.verb == "delete" and a.kind == "server"
    ]
    assert deleted == [
        ("fi-ns-site-web-2", "scale down to 1"),
        ("fi-ns-site-web-1", "scale down to 1"),
    ]
    converge(tenant, down)
    assert [s.name for s in tenant.objs["server"].values()] == ["fi-ns-site-web-0"]
    assert len(tenant.objs["port"]) == 1  # the freed ports went too


def test_rolling_replacement_one_at_a_time_pool_never_below_replicas():
    tenant, it = FakeTenant(), intent(replicas=3)
    converge(tenant, it)
    new = intent(replicas=3, template_hash="bbbb")
    counts = []

    def invariant(t: FakeTenant):
        assert t.serving() >= 3
        counts.append(len(t.objs["server"]))

    converge(tenant, new, passes=40, check=invariant)
    hashes = {T.tag_value(s.tags, T.TEMPLATE_PREFIX) for s in tenant.objs["server"].values()}
    assert hashes == {"bbbb"} and len(tenant.objs["server"]) == 3
    assert max(counts) == 4  # surge of one, never more


def test_failed_server_is_replaced():
    tenant, it = FakeTenant(), intent()
    converge(tenant, it)
    sid = next(iter(tenant.objs["server"]))
    tenant.objs["server"][sid] = replace(tenant.objs["server"][sid], status="ERROR")
    plan, _ = P.plan_site(it, tenant.observe(it))
    assert ("delete", "member") in [(a.verb, a.kind) for a in plan.actions]
    converge(tenant, it)
    assert sid not in tenant.objs["server"] and tenant.serving() == 2


def test_drift_deleted_load_balancer_is_rebuilt_and_ip_moved():
    tenant, it = FakeTenant(), intent()
    converge(tenant, it)
    for kind in ("load_balancer", "listener", "pool", "health_monitor"):
        tenant.objs[kind].clear()
    tenant.members.clear()
    fip = next(iter(tenant.objs["floating_ip"].values()))
    tenant.objs["floating_ip"][fip.id] = replace(fip, attrs={**fip.attrs, "port_id": None})
    plan, _ = P.plan_site(it, tenant.observe(it))
    assert [a.kind for a in plan.actions][:1] == ["load_balancer"]
    assert ("associate", "floating_ip") in [(a.verb, a.kind) for a in plan.actions]
    converge(tenant, it)
    assert tenant.serving() == 2


def test_retained_ip_is_adopted_not_reallocated():
    it = intent(retain_ip=True, retained_tag="flexinfra-retained:abc")
    tenant = FakeTenant()
    obs = tenant.observe(it)
    obs.retained_ip = CloudObject(
        "floating_ip",
        "fip-old",
        "",
        "DOWN",
        frozenset({"flexinfra-retained:abc"}),
        {"floating_ip_address": "203.0.113.99"},
    )
    plan, _ = P.plan_site(it, obs)
    fips = [a for a in plan.actions if a.kind == "floating_ip"]
    assert [(a.verb, a.target_id) for a in fips] == [("adopt", "fip-old")]
    assert T.RETAIN_TAG in fips[0].params["tags"]


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        ({"image_id": None}, "image 'debian'"),
        ({"flavor_id": None}, "flavor 'small'"),
        ({"external_network_id": None}, "external network 'public'"),
        ({"overlapping_subnets": ["other (10.201.0.0/16)"]}, "overlaps existing subnet"),
        ({"available_zones": frozenset({"az1"})}, "availability zone(s) az2"),
    ],
)
def test_invalid_input_is_reported_before_anything_is_done(change, expect):
    it = intent()
    obs = FakeTenant().observe(it)
    for key, value in change.items():
        setattr(obs, key, value)
    _, invalid = P.plan_site(it, obs)
    assert any(expect in message for message in invalid), invalid


def test_cidr_change_on_a_built_site_is_refused():
    tenant, it = FakeTenant(), intent()
    converge(tenant, it)
    _, invalid = P.plan_site(intent(cidr="10.201.2.0/24"), tenant.observe(it))
    assert invalid and "cannot change range" in invalid[0]


def test_untagged_object_with_our_name_is_adopted():
    it = intent()
    obs = FakeTenant().observe(it)
    obs.untagged["network:fi-ns-site-net"] = CloudObject("network", "net-1", "fi-ns-site-net")
    plan, _ = P.plan_site(it, obs)
    net = [a for a in plan.actions if a.kind == "network"]
    assert [(a.verb, a.target_id) for a in net] == [("adopt", "net-1")]
    subnet = next(a for a in plan.actions if a.kind == "subnet")
    assert subnet.params["network_id"] == "net-1"


def test_untagged_floating_ip_with_our_description_is_adopted_not_duplicated():
    it = intent()
    obs = FakeTenant().observe(it)
    obs.untagged["floating_ip:fi-ns-site-fip"] = CloudObject("floating_ip", "fip-1", "")
    plan, _ = P.plan_site(it, obs)
    fip = [a for a in plan.actions if a.kind == "floating_ip"]
    assert [(a.verb, a.target_id) for a in fip] == [("adopt", "fip-1")]
    assert "port_id" in fip[0].params and any(t.startswith("flexinfra-owner:")
                                              for t in fip[0].params["tags"])


def test_load_balancer_pending_means_wait():
    tenant, it = FakeTenant(), intent()
    converge(tenant, it)
    lb = next(iter(tenant.objs["load_balancer"].values()))
    tenant.objs["load_balancer"][lb.id] = replace(lb, status="PENDING_UPDATE")
    plan, _ = P.plan_site(it, tenant.observe(it))
    assert any("PENDING_UPDATE" in w for w in plan.waiting)


def test_unplaceable_server_blocks_without_churn():
    tenant, it = FakeTenant(), intent(replicas=3, anti_affinity="hard")
    plan, _ = P.plan_site(it, tenant.observe(it))
    tenant.apply(plan)
    tenant.settle()
    sid = next(iter(tenant.objs["server"]))
    failed = replace(
        tenant.objs["server"][sid],
        status="ERROR",
        attrs={
            **tenant.objs["server"][sid].attrs,
            "fault": {"message": "No valid host was found. "},
        },
    )
    tenant.objs["server"][sid] = failed
    plan, _ = P.plan_site(it, tenant.observe(it))
    assert plan.blocked and "antiAffinity: soft" in plan.blocked[0]
    assert not [a for a in plan.actions if a.kind == "server"]  # no delete/create loop
    # once the user switches to soft, the failed server is just an old one: replaced
    soft = intent(replicas=3, anti_affinity="soft", template_hash="soft")
    plan, _ = P.plan_site(soft, tenant.observe(soft))
    assert not plan.blocked
    assert ("delete", failed.id) in [(a.verb, a.target_id) for a in plan.actions]


def test_rolling_with_volumes_is_in_place_and_keeps_each_volume():
    tenant, it = FakeTenant(), intent(replicas=2, volume_size_gb=1)
    converge(tenant, it)
    before = {v.name: v.id for v in tenant.objs["volume"].values()}
    assert len(before) == 2 and all(v.status == "in-use" for v in tenant.objs["volume"].values())
    new = intent(replicas=2, volume_size_gb=1, template_hash="bbbb")

    def invariant(t: FakeTenant):
        assert t.serving() >= 1 and len(t.objs["server"]) <= 2

    converge(tenant, new, passes=40, check=invariant)
    after = {v.name: v.id for v in tenant.objs["volume"].values()}
    assert after == before  # the same volumes, now on the new servers
    servers = {s.id for s in tenant.objs["server"].values()}
    attached = {v.get("attachments")[0]["server_id"] for v in tenant.objs["volume"].values()}
    assert attached == servers
    hashes = {T.tag_value(s.tags, T.TEMPLATE_PREFIX) for s in tenant.objs["server"].values()}
    assert hashes == {"bbbb"}


def test_single_replica_with_volume_replaces_in_place_and_keeps_its_volume():
    """replicas: 1 accepts a short outage rather than a fresh volume (the data would be lost)."""
    tenant, it = FakeTenant(), intent(replicas=1, volume_size_gb=1)
    converge(tenant, it)
    (volume,) = tenant.objs["volume"].values()
    new = intent(replicas=1, volume_size_gb=1, template_hash="bbbb")
    plan, _ = P.plan_site(new, tenant.observe(new))
    assert not [a for a in plan.actions if a.verb == "create"]  # the old one goes first
    assert any("site is down" in w and "replacing" in w for w in plan.waiting), plan.waiting
    waits = []

    def invariant(t: FakeTenant):
        assert len(t.objs["server"]) <= 1  # never a second server with a second volume
        assert list(t.objs["volume"]) == [volume.id]
        plan, _ = P.plan_site(new, t.observe(new))
        waits.extend(plan.waiting)

    converge(tenant, new, passes=40, check=invariant)
    (server,) = tenant.objs["server"].values()
    assert T.tag_value(server.tags, T.TEMPLATE_PREFIX) == "bbbb"
    (after,) = tenant.objs["volume"].values()
    assert after.id == volume.id and after.get("attachments") == [{"server_id": server.id}]
    # the outage is announced while the successor is being created, not only before
    assert any("replacing fi-ns-site-web-0; in place" in w for w in waits), waits


def test_scale_down_deletes_the_volume_of_the_server_that_goes():
    tenant, it = FakeTenant(), intent(replicas=2, volume_size_gb=1)
    converge(tenant, it)
    converge(tenant, intent(replicas=1, volume_size_gb=1))
    assert [v.name for v in tenant.objs["volume"].values()] == ["fi-ns-site-vol-0"]


def test_server_failing_again_and_again_is_kept_and_blocks_after_three():
    tenant, it = FakeTenant(), intent(replicas=2)
    converge(tenant, it)
    tenant.failing[1] = "Build of instance aborted: disk image is corrupt"
    first = next(s for s in tenant.objs["server"].values() if s.name.endswith("-1"))
    tenant.objs["server"][first.id] = replace(
        first, status="ERROR", attrs={**first.attrs, "fault": {"message": "host went away"}}
    )
    created, plan = 0, None
    for _ in range(30):
        plan, invalid = P.plan_site(it, tenant.observe(it))
        assert not invalid
        created += sum(1 for a in plan.actions if (a.verb, a.kind) == ("create", "server"))
        if plan.blocked:
            break
        tenant.apply(plan)
        tenant.settle()
        assert tenant.serving() >= 1
    assert plan is not None and plan.blocked, "never stopped re-creating"
    assert created == 2  # the first failure plus two re-creations that failed too
    assert "3 times in a row" in plan.blocked[0]
    assert "disk image is corrupt" in plan.blocked[0]  # Nova's fault, for the user
    assert not [a for a in plan.actions if a.kind == "server"]  # kept for inspection
    tenant.apply(plan)
    again, _ = P.plan_site(it, tenant.observe(it))  # stable: nothing more is done
    assert again.blocked and again.actions == []
    failed = next(s for s in tenant.objs["server"].values() if s.status == "ERROR")
    assert failed.name == "fi-ns-site-web-1" and failed.id != first.id

    # the user fixes the cause and deletes the server: one more try, it works, count cleared
    del tenant.failing[1]
    tenant.objs["server"].pop(failed.id)
    converge(tenant, it)
    assert tenant.serving() == 2
    assert not any(S.failure_record(p)[1] for p in tenant.objs["port"].values())


def test_failure_count_is_per_failure_not_per_pass_and_resets_on_active():
    """Seeing the same ERROR server on several passes counts it once; ACTIVE clears it."""
    tenant, it = FakeTenant(), intent(replicas=1)
    converge(tenant, it)
    sid = next(iter(tenant.objs["server"]))
    tenant.objs["server"][sid] = replace(tenant.objs["server"][sid], status="ERROR")
    for _ in range(3):  # the pass's writes are lost: the same server is seen again
        plan, _ = P.plan_site(it, tenant.observe(it))
        tags = [a for a in plan.actions if a.verb == "tag"]
        tenant.apply(replace(plan, actions=tags))
        port = next(iter(tenant.objs["port"].values()))
        assert S.failure_record(port) == ("aaaa", 1, sid)
    converge(tenant, it)
    port = next(iter(tenant.objs["port"].values()))
    assert S.failure_record(port) == (None, 0, None)


def test_error_server_of_an_old_template_is_replaced_not_blocked():
    tenant, it = FakeTenant(), intent(replicas=1)
    converge(tenant, it)
    tenant.failing[0] = "boom"
    sid = next(iter(tenant.objs["server"]))
    tenant.objs["server"][sid] = replace(tenant.objs["server"][sid], status="ERROR")
    for _ in range(12):  # fail it three times and more under the old template
        plan, _ = P.plan_site(it, tenant.observe(it))
        if plan.blocked:
            break
        tenant.apply(plan)
        tenant.settle()
    assert plan.blocked
    del tenant.failing[0]
    new = intent(replicas=1, template_hash="bbbb")  # the user fixed the template
    converge(tenant, new)
    (server,) = tenant.objs["server"].values()
    assert server.status == "ACTIVE" and T.tag_value(server.tags, T.TEMPLATE_PREFIX) == "bbbb"


def test_a_port_whose_tagging_was_lost_and_that_a_server_took_is_adopted():
    """A crash between a port's create and its tagging, then a server made with it: the
    port is attached (so no free orphan) and untagged; it is still the site's, found by
    name and device, and tagged (else teardown would leave it and its subnet behind)."""
    from flexinfra.cloud.gateway import Snapshot
    from flexinfra.core.kinds import Kind
    from flexinfra.reconcile.projection import attached_port_orphans

    it = intent()
    server = CloudObject("server", "srv-0", f"{it.prefix}-web-0", "ACTIVE",
                         frozenset({T.OWNER_PREFIX + UID, f"{T.INDEX_PREFIX}0"}), {})
    lost = CloudObject("port", "port-0", server.name, "ACTIVE", frozenset(),
                       {"device_id": "srv-0", "device_owner": "compute:az1"})
    someone_elses = CloudObject("port", "port-x", server.name, "ACTIVE", frozenset(),
                                {"device_id": "srv-other", "device_owner": "compute:az1"})
    snap = Snapshot(objects={Kind.PORT: [lost, someone_elses], Kind.SERVER: [server]})
    found = attached_port_orphans(snap, {Kind.SERVER: [server]}, it.fleet.server_prefix)
    assert found == {0: lost}

    tenant = FakeTenant()
    for _ in range(8):
        plan, _ = P.plan_site(it, tenant.observe(it))
        tenant.apply(plan)
        tenant.settle()
    observed = tenant.observe(it)
    port0 = observed.ports[0]
    observed.ports[0] = replace(port0, tags=frozenset())
    plan, _ = P.plan_site(it, observed)
    tags = [a for a in plan.actions if a.verb == "tag" and a.target_id == port0.id]
    assert tags and T.OWNER_PREFIX + UID in tags[0].params["tags"], plan.actions
