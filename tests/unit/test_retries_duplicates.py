"""Item 3: a retried write never duplicates, and a duplicate found is removed.

* a create answered 500/502/504 may have happened: it is retried only after a lookup by its
  tags says it did not; what the lookup finds is the result otherwise;
* 429/503 (refused before acting) are retried as before, honouring Retry-After (no 2 s cap;
  past the retry budget the error carries it);
* two copies of one object (same owner, same identity) -> the newer is deleted, with an Event.
"""

from __future__ import annotations

import copy

import pytest
from openstack import exceptions as os_exc

from flexinfra.cloud.errors import TransientError
from flexinfra.cloud.gateway import Gateway
from flexinfra.core.kinds import Kind
from flexinfra.core.objects import CloudObject
from flexinfra.reconcile import duplicates
from flexinfra.reconcile.driver import reconcile
from tests.unit.test_toy_kind import UID, drive


class Response:
    def __init__(self, headers):
        self.headers = headers


def http_error(status: int, retry_after: str | None = None) -> os_exc.HttpException:
    err = os_exc.HttpException(message=str(status), http_status=status)
    err.response = Response({"Retry-After": retry_after} if retry_after else {})
    return err


class Flaky:
    def __init__(self, failures):
        self.failures, self.calls = list(failures), 0

    def __call__(self, *a, **kw):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return {"id": "made"}


@pytest.mark.parametrize("status", [500, 502, 504])
def test_an_ambiguous_create_that_happened_is_not_sent_again(status):
    gw = Gateway(conn=None, retry_budget=5)
    fn = Flaky([http_error(status)])
    got = gw.call("svc", "thing", "create", fn, found=lambda: {"id": "made-by-the-first"})
    assert got == {"id": "made-by-the-first"} and fn.calls == 1


def test_an_ambiguous_create_that_did_not_happen_is_retried():
    gw = Gateway(conn=None, retry_budget=5)
    fn = Flaky([http_error(502)])
    assert gw.call("svc", "thing", "create", fn, found=lambda: None) == {"id": "made"}
    assert fn.calls == 2


def test_an_ambiguous_create_without_a_lookup_is_left_to_the_next_pass():
    gw = Gateway(conn=None, retry_budget=5)
    fn = Flaky([http_error(504)])
    with pytest.raises(TransientError):
        gw.call("svc", "thing", "create", fn)
    assert fn.calls == 1


def test_retry_after_is_honoured_within_the_budget_and_carried_beyond_it():
    gw = Gateway(conn=None, retry_budget=5)
    fn = Flaky([http_error(503, "0.2")])
    assert gw.call("svc", "thing", "create", fn) == {"id": "made"}
    fn = Flaky([http_error(503, "30")])
    with pytest.raises(TransientError) as err:
        gw.call("svc", "thing", "create", fn)
    assert fn.calls == 1 and err.value.retry_after == 30


def obj(kind, oid, name, created="", **attrs):
    return CloudObject(Kind(kind), oid, name, "ACTIVE", frozenset({"flexinfra-owner:u"}),
                       {"created_at": created, **attrs})


def test_duplicates_keep_the_oldest_and_a_floating_ip_in_use():
    owned = {
        Kind.NETWORK: [obj("network", "n2", "net", "2026-01-02"),
                       obj("network", "n1", "net", "2026-01-01")],
        Kind.FLOATING_IP: [obj("floating_ip", "f1", "", "2026-01-01", description="fip"),
                           obj("floating_ip", "f2", "", "2026-01-02", description="fip",
                               port_id="vip")],
        Kind.SERVER: [obj("server", "s1", "web-0", "2026-01-01"),
                      CloudObject(Kind.SERVER, "s2", "web-0", "ERROR",
                                  frozenset({"flexinfra-owner:u"}), {})],
    }
    found = {(d.extra.id, d.kept.id) for d in duplicates.find_duplicates(owned)}
    assert found == {("n2", "n1"), ("f1", "f2")}  # a server in ERROR is the fleet's


def test_a_pass_removes_a_copy_made_by_a_create_that_ran_twice():
    cloud, gw, kind, outcomes = drive()
    assert outcomes[-1].ready
    mine = f"flexinfra-owner:{UID}"
    for k in ("network", "server"):
        (orig,) = [o for o in cloud.objects(k) if mine in o.get("tags", [])]
        orig["created_at"] = "2026-01-01T00:00:00Z"
        twin = copy.deepcopy(orig)
        twin["id"], twin["created_at"] = f"{k}:twin", "2026-01-01T00:00:05Z"
        cloud.put(k, twin)
    gw.invalidate()
    from flexinfra.core.tags import Owner
    from tests.unit.toy_kind import VaultSpec

    out = reconcile(kind, Owner(UID, "ns", "vault", kind="Vault"),
                    VaultSpec(cloud={"secretName": "s", "cloudName": "c"}), gw)
    removed = [m for r, m in out.events if r == "DuplicateRemoved"]
    assert len(removed) == 2 and all("twin" in m for m in removed)
    for k in ("network", "server"):
        left = [o["id"] for o in cloud.objects(k) if mine in o.get("tags", [])]
        assert len(left) == 1 and "twin" not in left[0]
    cloud.tick()
    gw.invalidate()
    again = reconcile(kind, Owner(UID, "ns", "vault", kind="Vault"),
                      VaultSpec(cloud={"secretName": "s", "cloudName": "c"}), gw)
    assert again.ready and not [r for r, _ in again.events if r == "DuplicateRemoved"]


def test_a_floating_ip_already_on_the_vip_is_adopted_not_created_again():
    """Neutron allows one floating IP per fixed IP: creating a second one failed with 409 on
    every pass (taken for transient) until someone acted."""
    from flexinfra.core.kinds import Verb
    from flexinfra.planning.builder import PlanBuilder
    from flexinfra.planning.floating_ip import (
        FloatingIPIntent,
        FloatingIPObserved,
        plan_floating_ip,
    )

    lb = CloudObject(Kind.LOAD_BALANCER, "lb1", "lb", "ACTIVE", frozenset(),
                     {"vip_port_id": "vip"})
    intent = FloatingIPIntent("fi-ns-a", True, False, "public")
    on_vip = CloudObject(Kind.FLOATING_IP, "f9", "", "ACTIVE", frozenset(),
                         {"port_id": "vip", "floating_ip_address": "203.0.113.9"})
    b = PlanBuilder("u")
    plan_floating_ip(b, intent, FloatingIPObserved(None, None, "ext", on_vip), lb)
    (action,) = b.plan.actions
    assert (action.verb, action.target_id) == (Verb.ADOPT, "f9")
    theirs = CloudObject(Kind.FLOATING_IP, "f9", "", "ACTIVE",
                         frozenset({"flexinfra-owner:other"}), {"port_id": "vip"})
    b = PlanBuilder("u")
    plan_floating_ip(b, intent, FloatingIPObserved(None, None, "ext", theirs), lb)
    assert not b.plan.actions and b.plan.blocked


def test_teardown_takes_what_the_owner_made_without_tagging_it():
    """Killed between a port's create and its tags, then deleted: the untagged port kept its
    subnet, hence the finalizer, forever (the takeover test found it)."""
    from flexinfra.cloud.gateway import Snapshot
    from flexinfra.reconcile.teardown import with_orphans

    port = CloudObject(Kind.PORT, "p1", "fi-ns-a-web-0", "DOWN", frozenset(), {})
    attached = CloudObject(Kind.PORT, "p2", "fi-ns-a-web-1", "ACTIVE", frozenset(),
                           {"device_owner": "compute:az1"})  # next pass, once detached
    retained = CloudObject(Kind.FLOATING_IP, "f1", "", "DOWN",
                           frozenset({"flexinfra-retained:abc"}), {"description": "fi-ns-a-fip"})
    other = CloudObject(Kind.PORT, "p3", "fi-ns-ab-web-0", "DOWN", frozenset(), {})
    snap = Snapshot({Kind.PORT: [port, attached, other], Kind.FLOATING_IP: [retained]})
    assert with_orphans(snap, {}, "fi-ns-a") == {Kind.PORT: [port]}


def test_a_copied_load_balancer_in_error_goes_and_the_healthy_one_stays():
    def lb(oid, status, created):
        return CloudObject(Kind.LOAD_BALANCER, oid, "fi-ns-a-lb", status,
                           frozenset({"flexinfra-owner:u"}), {"created_at": created})

    found = duplicates.find_duplicates({Kind.LOAD_BALANCER: [lb("old", "ERROR", "1"),
                                                             lb("new", "ACTIVE", "2")]})
    assert [(d.extra.id, d.kept.id) for d in found] == [("old", "new")]
    busy = duplicates.find_duplicates({Kind.LOAD_BALANCER: [lb("old", "ACTIVE", "1"),
                                                            lb("new", "PENDING_CREATE", "2")]})
    assert busy == []  # Octavia refuses the delete meanwhile: a later pass


def test_teardown_removes_debris_ports_on_the_owners_own_subnet():
    from flexinfra.cloud.adapters import adapter

    subnet = CloudObject(Kind.SUBNET, "sub", "fi-ns-a-subnet", "ACTIVE",
                         frozenset({"flexinfra-owner:u"}), {})
    debris = CloudObject(Kind.PORT, "vrrp", "octavia-lb-vrrp-x", "DOWN", frozenset(),
                         {"fixed_ips": [{"subnet_id": "sub"}], "device_owner": ""})
    dhcp = CloudObject(Kind.PORT, "dhcp", "host", "ACTIVE", frozenset(),
                       {"fixed_ips": [{"subnet_id": "sub"}], "device_owner": "network:dhcp"})
    elsewhere = CloudObject(Kind.PORT, "other", "x", "DOWN", frozenset(),
                            {"fixed_ips": [{"subnet_id": "not-ours"}], "device_owner": ""})
    deleted = []

    class Gw:
        def call(self, service, kind, verb, fn, target, **kw):
            deleted.append(target)

        def sdk(self, proxy, method):
            return None

    from flexinfra.cloud.gateway import Snapshot
    from flexinfra.core.tags import Owner

    snap = Snapshot({Kind.PORT: [debris, dhcp, elsewhere]})
    step = adapter(Kind.PORT).teardown(Gw(), Owner("u", "ns", "a"), {Kind.SUBNET: [subnet]},
                                       snap)
    assert deleted == ["vrrp"] and "unattached port" in step.events[0][1]


def test_a_create_that_may_have_happened_is_looked_for_before_it_is_sent_again():
    """Found by the campaign: with a short API timeout, a load balancer create still running
    in Octavia when the client gave up was made again by the next pass, in every fault mode."""
    from flexinfra.core.errors import ErrorCode
    from flexinfra.core.plan import PlannedAction
    from flexinfra.reconcile.executor import Executor

    made: list[str] = []
    listing: list[CloudObject] = []

    class Gw:
        uncertain_creates: dict = {}

        def fresh(self, kind, after):
            return listing

        def invalidate(self, *a, **kw):
            pass

        def forget_lookups(self):
            pass

    from flexinfra.cloud.adapters import adapter

    net = adapter(Kind.NETWORK)
    calls = {"n": 0}

    def apply(gw, action, params):
        calls["n"] += 1
        if calls["n"] == 1:
            raise TransientError("create network: timed out", code=ErrorCode.TIMEOUT)
        made.append(action.name)
        return CloudObject(Kind.NETWORK, "n-new", action.name)

    gw = Gw()
    action = PlannedAction("create", "network", "fi-ns-a-net", "missing", key="network",
                           params={"tags": ["flexinfra-owner:u"]})
    orig = net.apply
    net.apply = apply
    try:
        with pytest.raises(TransientError):
            Executor(gw, {})._create_once(action, dict(action.params))
        assert ("network", "fi-ns-a-net") in gw.uncertain_creates
        # not listed yet, and recently: wait, do not create again
        with pytest.raises(TransientError) as err:
            Executor(gw, {})._create_once(action, dict(action.params))
        assert "may still be completing" in err.value.message and made == []
        # it shows up: used, never made twice
        listing.append(CloudObject(Kind.NETWORK, "n-first", "fi-ns-a-net",
                                   tags=frozenset({"flexinfra-owner:u"}),
                                   attrs={"id": "n-first", "name": "fi-ns-a-net",
                                          "tags": ["flexinfra-owner:u"]}))
        got = Executor(gw, {})._create_once(action, dict(action.params))
        assert got.id == "n-first" and made == [] and not gw.uncertain_creates
    finally:
        net.apply = orig
