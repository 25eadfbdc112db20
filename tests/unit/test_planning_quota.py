"""The quota pre-check refuses a plan the project cannot hold, before any write."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from flexinfra.cloud.errors import CloudError
from flexinfra.core.objects import CloudObject
from flexinfra.core.plan import Plan, PlannedAction
from flexinfra.planning.website import ObservedSite
from flexinfra.reconcile.quota import check_quota


class QuotaOnly:
    """Answers the two quota reads; anything else would be a bug in the check."""

    def __init__(self, instances_left: int, networks_left: int) -> None:
        self.limits = SimpleNamespace(
            absolute=SimpleNamespace(
                instances=10,
                instances_used=10 - instances_left,
                total_cores=100,
                total_cores_used=0,
                total_ram=100_000,
                total_ram_used=0,
            )
        )
        self.quota = SimpleNamespace(
            networks={"limit": 5, "used": 5 - networks_left, "reserved": 0}
        )

    def compute_limits(self):
        return self.limits

    def network_quota(self):
        return self.quota

    def find_flavor(self, _):
        return SimpleNamespace(vcpus=1, ram=512)


def plan(servers: int, networks: int = 1) -> Plan:
    actions = [PlannedAction("create", "network", "n", "missing") for _ in range(networks)]
    actions += [PlannedAction("create", "server", f"s{i}", "missing") for i in range(servers)]
    return Plan(actions=actions)


def test_enough_quota_passes():
    check_quota(QuotaOnly(instances_left=3, networks_left=1), plan(3), ObservedSite(flavor_id="f"))


def test_short_on_instances_and_networks_says_what_to_do():
    with pytest.raises(CloudError) as err:
        check_quota(
            QuotaOnly(instances_left=1, networks_left=0), plan(3), ObservedSite(flavor_id="f")
        )
    message = err.value.message
    assert "instances: need 3, 1 left" in message and "networks: need 1, 0 left" in message
    assert "nothing was created" in message and "raise the project's quota" in message
    assert "or lower spec.replicas" in message  # servers are per replica: fewer would fit


class WithOctaviaAndCinder(QuotaOnly):
    """Plus Octavia limits (no usage: counted from the inventory) and Cinder's quota set."""

    def __init__(self, lb: dict, objects: dict, cinder: dict, readable: bool = True):
        super().__init__(instances_left=10, networks_left=5)
        self.lb = SimpleNamespace(project_id="p1", **lb)
        self.objects = objects
        self.cinder = cinder
        self.readable = readable
        self.lb_reads: list[float] = []

    def load_balancer_quota(self, max_age: float = 60):
        self.lb_reads.append(max_age)
        if not self.readable:
            raise CloudError("get quota: forbidden by the cloud's policy (403)")
        return self.lb

    def volume_quota(self):
        if not self.readable:
            raise CloudError("get quota: forbidden by the cloud's policy (403)")
        return SimpleNamespace(**self.cinder)

    def inventory(self, *_, **__):
        return SimpleNamespace(of=lambda kind: self.objects.get(kind, []))


def obj(kind: str, project: str = "p1", **attrs) -> CloudObject:
    return CloudObject(kind, f"{kind}-{project}", attrs={"project_id": project, **attrs})


def site_plan(members: int = 2, volumes: int = 2, size: int = 5) -> Plan:
    actions = [
        PlannedAction("create", kind, kind, "missing")
        for kind in ("load_balancer", "listener", "pool", "health_monitor")
    ]
    actions += [PlannedAction("create", "member", f"m{i}", "ready") for i in range(members)]
    actions += [
        PlannedAction("create", "volume", f"v{i}", "missing", params={"size": size})
        for i in range(volumes)
    ]
    return Plan(actions=actions)


UNLIMITED_LB = {
    "load_balancers": -1,
    "listeners": -1,
    "pools": None,
    "health_monitors": -1,
    "members": -1,
}
ROOMY_CINDER = {
    "volumes": 10,
    "gigabytes": -1,
    "usage": {"volumes": 0, "gigabytes": 0},
    "reservation": {},
}


def test_octavia_used_counts_come_from_the_project_inventory():
    existing_pool = obj("pool", members=[{"id": "a"}, {"id": "b"}])
    objects = {
        "load_balancer": [obj("load_balancer"), obj("load_balancer", project="other")],
        "listener": [obj("listener")],
        "pool": [existing_pool, obj("pool", project="other", members=[{"id": "c"}] * 9)],
    }
    lb = {**UNLIMITED_LB, "load_balancers": 1, "listeners": 2, "members": 3}
    cloud = WithOctaviaAndCinder(lb, objects, ROOMY_CINDER)
    with pytest.raises(CloudError) as err:
        check_quota(cloud, site_plan(members=2), ObservedSite())
    message = err.value.message
    assert "load balancers: need 1, 0 left" in message
    assert "members: need 2, 1 left" in message  # 3 - the 2 in this project's pool
    assert "listeners" not in message and "pools" not in message  # 1 left / unlimited
    assert "health monitors" not in message
    lb["load_balancers"] = 2
    check_quota(WithOctaviaAndCinder(lb, objects, ROOMY_CINDER), site_plan(1), ObservedSite())


def test_cinder_counts_volumes_and_their_gigabytes_with_reservations():
    cinder = {
        "volumes": 4,
        "gigabytes": 100,
        "usage": {"volumes": 2, "gigabytes": 95},
        "reservation": {"volumes": 1, "gigabytes": 0},
    }
    cloud = WithOctaviaAndCinder(UNLIMITED_LB, {}, cinder)
    with pytest.raises(CloudError) as err:
        check_quota(cloud, site_plan(volumes=2, size=5), ObservedSite())
    message = err.value.message
    assert "volumes: need 2, 1 left" in message and "volume gigabytes: need 10, 5 left" in message
    check_quota(cloud, site_plan(volumes=1, size=5), ObservedSite())


def test_every_shortfall_in_one_message():
    lb = {**UNLIMITED_LB, "load_balancers": 0}
    cinder = {"volumes": 0, "gigabytes": -1, "usage": {}, "reservation": {}}
    cloud = WithOctaviaAndCinder(lb, {}, cinder)
    cloud.limits.absolute.instances_used = 10
    plan_ = site_plan()
    plan_.actions.append(PlannedAction("create", "server", "s0", "missing"))
    with pytest.raises(CloudError) as err:
        check_quota(cloud, plan_, ObservedSite(flavor_id="f"))
    message = err.value.message
    for part in ("instances: need 1, 0 left", "load balancers: need 1, 0 left", "volumes: need 2"):
        assert part in message
    assert message.count("quota exceeded") == 1 and "raise the project's quota" in message


def test_unlimited_or_unreadable_octavia_and_cinder_quotas_pass():
    check_quota(WithOctaviaAndCinder(UNLIMITED_LB, {}, ROOMY_CINDER), site_plan(), ObservedSite())
    refused = {**UNLIMITED_LB, "load_balancers": 0}
    empty = {"volumes": 0, "gigabytes": 0, "usage": {}, "reservation": {}}
    check_quota(
        WithOctaviaAndCinder(refused, {}, empty, readable=False), site_plan(), ObservedSite()
    )


def test_a_load_balancer_shortfall_does_not_suggest_fewer_replicas():
    cloud = WithOctaviaAndCinder({**UNLIMITED_LB, "load_balancers": 0}, {}, ROOMY_CINDER)
    with pytest.raises(CloudError) as err:
        check_quota(cloud, site_plan(members=1, volumes=0), ObservedSite())
    assert "load balancers: need 1, 0 left" in err.value.message
    assert "spec.replicas" not in err.value.message  # no number of replicas frees one


def test_a_refusal_is_checked_against_fresh_octavia_limits():
    cloud = WithOctaviaAndCinder({**UNLIMITED_LB, "load_balancers": 0}, {}, ROOMY_CINDER)
    with pytest.raises(CloudError):
        check_quota(cloud, site_plan(members=1, volumes=0), ObservedSite())
    assert cloud.lb_reads == [60, 0]  # the cached read said no: asked again before refusing
    cloud.lb_reads.clear()
    cloud.lb.load_balancers = 5
    check_quota(cloud, site_plan(members=1, volumes=0), ObservedSite())
    assert cloud.lb_reads == [60]  # a cached read that lets the plan through is enough
