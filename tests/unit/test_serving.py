"""Ready means serving: the load balancer's health monitors decide, not the API objects."""

from __future__ import annotations

from types import SimpleNamespace

from flexinfra.core.objects import CloudObject
from flexinfra.core.reasons import Reason
from flexinfra.kinds.website import serving
from flexinfra.planning.load_balancer import HealthCheckIntent, member_health
from flexinfra.reconcile.driver import KindStatus


def pool(port: int, status: str | None) -> CloudObject:
    return CloudObject("pool", f"pool-{port}", f"pool-{port}", "ACTIVE", frozenset(),
                       {"operating_status": status})


def member(address: str, status: str | None) -> CloudObject:
    return CloudObject("member", f"m-{address}", "", "ACTIVE", frozenset(),
                       {"address": address, "operating_status": status})


def test_an_online_pool_vouches_for_members_listed_earlier():
    health = member_health({80: pool(80, "ONLINE")}, {80: [member("10.0.0.5", "OFFLINE")]})
    assert health.serving("10.0.0.5") and health.every_pool_serves


def test_a_member_must_be_online_in_every_pool_to_count():
    health = member_health(
        {80: pool(80, "DEGRADED"), 443: pool(443, "ONLINE")},
        {80: [member("a", "ERROR"), member("b", "ONLINE")],
         443: [member("a", "ONLINE"), member("b", "ONLINE")]},
    )
    assert health.serving("b") and not health.serving("a")
    assert health.failing == {"a": frozenset({80})}
    assert health.every_pool_serves


def server(name: str, address: str, index: int) -> tuple[CloudObject, CloudObject]:
    srv = CloudObject("server", f"id-{name}", name, "ACTIVE",
                      frozenset({f"flexinfra-index:{index}"}), {})
    port = CloudObject("port", f"p-{name}", name, "ACTIVE", frozenset(),
                       {"fixed_ips": [{"ip_address": address}], "device_id": f"id-{name}"})
    return srv, port


def ctx(member_statuses: dict[str, str | None], pool_status: str | None = "DEGRADED",
        require: bool = True):
    servers, ports, members = [], {}, []
    for i, (address, status) in enumerate(member_statuses.items()):
        srv, port = server(f"web-{i}", address, i)
        servers.append(srv)
        ports[i] = port
        members.append(member(address, status))
    intent = SimpleNamespace(require_member_health=require, replicas=len(member_statuses),
                             health_check=HealthCheckIntent(path="/healthz"))
    observed = SimpleNamespace(pools={80: pool(80, pool_status)}, members={80: members},
                               servers=servers, ports=ports)
    status = KindStatus(url="http://203.0.113.20")
    return SimpleNamespace(intent=intent, observed=observed, status=status)


def test_ready_only_once_members_are_online():
    waiting = serving(ctx({"10.0.0.5": "ONLINE", "10.0.0.6": "OFFLINE"}))
    assert not waiting.done and waiting.reason == Reason.WAITING_FOR_HEALTH
    assert "web-1 (10.0.0.6)" in waiting.message and "FLEXINFRA_MEMBER_HEALTH" in waiting.message
    done = serving(ctx({"10.0.0.5": "ONLINE", "10.0.0.6": "ONLINE"}, pool_status="ONLINE"))
    assert done.done and done.ready_replicas == 2
    assert done.ready_message == "2/2 servers serving at http://203.0.113.20"


def test_a_member_in_error_degrades_a_site_that_still_serves():
    result = serving(ctx({"10.0.0.5": "ONLINE", "10.0.0.6": "ERROR"}))
    assert result.done and result.ready_replicas == 1
    assert [p.reason for p in result.problems] == [Reason.MEMBER_ERROR]
    assert "web-1 (10.0.0.6) fails the load balancer's health check" in result.problems[0].message
    assert "/healthz" in result.problems[0].message


def test_no_member_passing_is_not_ready():
    result = serving(ctx({"10.0.0.5": "ERROR", "10.0.0.6": "ERROR"}, pool_status="ERROR"))
    assert not result.done and result.reason == Reason.NOT_SERVING
    assert len(result.problems) == 2


def test_member_health_can_be_ignored_for_clouds_without_it():
    assert serving(ctx({"10.0.0.5": None}, pool_status="OFFLINE", require=False)).done
