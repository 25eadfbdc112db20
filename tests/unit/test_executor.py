"""The executor's ordering: what may overlap does, what must wait does (a recording fake
gateway; the real calls are exercised by the sandbox tests)."""

from __future__ import annotations

import threading
import time

import pytest

from flexinfra.cloud.errors import CloudError
from flexinfra.core.objects import CloudObject, Ref
from flexinfra.core.plan import PlannedAction
from flexinfra.reconcile.executor import Executor, ref_keys


class Recorder:
    """Stands in for Executor._apply: records start/end times, sleeps a little."""

    def __init__(self, fail: set[str] = frozenset(), seconds: float = 0.1):
        self.fail, self.seconds = fail, seconds
        self.spans: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def __call__(self, action: PlannedAction, params: dict):
        start = time.monotonic()
        time.sleep(self.seconds)
        with self.lock:
            self.spans[action.name] = (start, time.monotonic())
        if action.name in self.fail:
            raise CloudError(f"{action.name} refused")
        return CloudObject(action.kind, f"id-{action.name}", action.name, "ACTIVE",
                           frozenset(), {})


def executor(recorder, lb_active=True) -> Executor:
    ex = Executor(gateway=type("G", (), {"conn": None})(), known={})
    ex._apply = recorder
    ex._lb_active = lambda: lb_active
    return ex


def run(actions, recorder, lb_active=True):
    return executor(recorder, lb_active).run(actions)


def create(kind, name, key=None, **params):
    return PlannedAction("create", kind, name, "missing", key, None, params)


def overlaps(spans, a, b):
    return spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]


def test_ref_keys_are_found_however_nested():
    assert ref_keys({"a": Ref("net"), "b": [Ref("sg"), {"c": Ref("port:0", "id")}], "d": 1}) == {
        "net", "sg", "port:0"}


def test_independent_creates_overlap_and_dependents_wait():
    rec = Recorder()
    plan = [
        create("network", "net", "network"),
        create("subnet", "subnet", "subnet", network_id=Ref("network")),
        create("router", "router", "router"),
        create("security_group", "sg", "security_group"),
        create("port", "port", "port:0", network_id=Ref("network"),
               security_groups=[Ref("security_group")]),
        create("server", "server", "server:0", port_id=Ref("port:0")),
    ]
    result = run(plan, rec)
    s = rec.spans
    assert overlaps(s, "net", "router") and overlaps(s, "net", "sg")
    assert s["subnet"][0] >= s["net"][1]
    assert s["port"][0] >= max(s["net"][1], s["sg"][1])
    assert s["server"][0] >= s["port"][1]
    assert [a.name for a in result.done] == [a.name for a in plan]  # reported in plan order
    assert result.created["server:0"].id == "id-server"


def test_barriers_and_the_load_balancer_lane_keep_their_order():
    rec = Recorder()
    plan = [
        create("load_balancer", "lb", "load_balancer"),
        create("listener", "l80", "listener:80", loadbalancer_id=Ref("load_balancer")),
        create("pool", "p80", "pool:80", listener_id=Ref("listener:80")),
        create("health_monitor", "hm80", "hm:80", pool_id="p-old"),  # no ref: still the lane
        create("security_group", "sg", "security_group"),
        PlannedAction("delete", "server", "old-server", "scale down", None, "s1"),
        create("server", "new-server", "server:1"),
    ]
    run(plan, rec)
    s = rec.spans
    assert s["l80"][0] >= s["lb"][1] and s["p80"][0] >= s["l80"][1]
    assert s["hm80"][0] >= s["p80"][1]  # one LB change at a time
    assert overlaps(s, "lb", "sg")
    # the delete waits for everything before it, everything after waits for the delete
    assert s["old-server"][0] >= max(end for name, (_, end) in s.items()
                                     if name not in ("old-server", "new-server"))
    assert s["new-server"][0] >= s["old-server"][1]


def test_a_failure_is_raised_after_the_others_settle_and_dependents_do_not_run():
    rec = Recorder(fail={"net"})
    plan = [
        create("network", "net", "network"),
        create("subnet", "subnet", "subnet", network_id=Ref("network")),
        create("security_group", "sg", "security_group"),
    ]
    ex = executor(rec)
    with pytest.raises(CloudError, match="net refused"):
        ex.run(plan)
    assert "subnet" not in rec.spans and "sg" in rec.spans
    # what did happen is still there to be reported
    assert [m for _, m in ex.result.events] == ["security group sg: missing"]


def test_a_busy_load_balancer_skips_its_lane_only():
    rec = Recorder()
    plan = [
        create("listener", "l80", "listener:80", loadbalancer_id="lb-1"),
        create("pool", "p80", "pool:80", listener_id=Ref("listener:80")),
        create("floating_ip", "fip", "floating_ip"),
    ]
    result = run(plan, rec, lb_active=False)
    assert result.lb_busy and [a.name for a in result.skipped] == ["l80", "p80"]
    assert [a.name for a in result.done] == ["fip"]


def test_after_a_load_balancer_step_the_network_side_is_not_listed_again():
    from flexinfra.cloud.adapters import ADAPTERS
    from flexinfra.cloud.gateway import Gateway
    from flexinfra.reconcile.driver import relist_after as kinds_to_relist

    assert kinds_to_relist([]) == Gateway.WAITING_KINDS  # only waiting
    after_listener = kinds_to_relist([create("listener", "l80")])
    assert {"load_balancer", "listener", "pool"} <= after_listener
    assert not after_listener & {"network", "subnet", "port", "security_group", "router"}
    assert "port" in kinds_to_relist([create("router_interface", "r")])
    # an unknown kind used to make the next pass list everything; now it cannot be planned
    # at all (every Kind has an adapter, and the adapter says what it touches)
    with pytest.raises(ValueError):
        create("mystery", "x")
    listed = {kind for kind, *_ in Gateway.LISTS}
    assert all(a.touches <= listed for a in ADAPTERS.values())
