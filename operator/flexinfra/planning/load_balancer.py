"""The load balancer: one listener per port, each with a pool, a health monitor and members.

Members carry options beyond address and port (``MemberOptions``): a kind such as a Galera
cluster keeps one normal member and the others ``backup`` in a TCP pool, health-checked by
HTTP on an agent port (``monitor_port``). Options left ``None`` are Octavia's defaults and
never compared, so a kind that sets none (WebSite) plans exactly what it did before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from flexinfra.core.kinds import Kind, Verb
from flexinfra.core.objects import CloudObject, Ref
from flexinfra.planning.builder import PlanBuilder

LB_PENDING = {"PENDING_CREATE", "PENDING_UPDATE", "PENDING_DELETE"}
#: a listener's protocol -> its pool's (TLS is terminated at the listener)
POOL_PROTOCOL = {
    "HTTP": "HTTP",
    "HTTPS": "HTTPS",
    "TCP": "TCP",
    "UDP": "UDP",
    "TERMINATED_HTTPS": "HTTP",
}

Id = str | Ref


@dataclass(frozen=True)
class HealthCheckIntent:
    type: str = "HTTP"
    path: str = "/"
    delay: int = 5
    timeout: int = 3
    max_retries: int = 3
    expected_codes: str = "200"
    #: failed checks before a member is marked down (Octavia's ``max_retries_down``, haproxy's
    #: ``fall``; Octavia's default 3); None: not set
    max_retries_down: int | None = None

    def monitor(self) -> dict[str, Any]:
        """The health monitor's attributes, as Octavia names them."""
        want: dict[str, Any] = {
            "type": self.type,
            "delay": self.delay,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
        }
        if self.type.upper() in ("HTTP", "HTTPS"):
            want |= {"url_path": self.path, "expected_codes": self.expected_codes}
        if self.max_retries_down is not None:
            want["max_retries_down"] = self.max_retries_down
        return want


@dataclass(frozen=True)
class LoadBalancerIntent:
    prefix: str
    ports: tuple[int, ...]  # one listener each; members serve the same port
    protocol: str
    algorithm: str
    health_check: HealthCheckIntent
    #: who may connect to the listeners (Octavia's ``allowed_cidrs``); empty: anyone
    allowed_cidrs: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.prefix}-lb"

    def listener_name(self, port: int) -> str:
        return f"{self.prefix}-lis-{port}"

    def pool_name(self, port: int) -> str:
        return f"{self.prefix}-pool-{port}"

    def monitor_name(self, port: int) -> str:
        return f"{self.prefix}-hm-{port}"


@dataclass
class LoadBalancerObserved:
    load_balancer: CloudObject | None = None
    listeners: dict[int, CloudObject] = field(default_factory=dict)  # by port
    pools: dict[int, CloudObject] = field(default_factory=dict)
    health_monitors: dict[int, CloudObject] = field(default_factory=dict)
    members: dict[int, list[CloudObject]] = field(default_factory=dict)


@dataclass(frozen=True)
class MemberOptions:
    """How a member takes part; None: Octavia's default, and not compared."""

    backup: bool | None = None
    weight: int | None = None
    monitor_port: int | None = None
    monitor_address: str | None = None
    admin_state_up: bool | None = None

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}

    def differences(self, member: CloudObject) -> dict[str, Any]:
        return {k: v for k, v in self.params().items() if member.get(k) != v}


@dataclass(frozen=True)
class MemberIntent:
    """One server in the pool of one listener port."""

    port: int
    name: str  # the server's
    index: int
    address: str
    options: MemberOptions = MemberOptions()
    #: the port the server serves on, when not the listener's (a read endpoint on 3307 in
    #: front of MariaDB's 3306)
    member_port: int | None = None


def plan_load_balancer(
    b: PlanBuilder, i: LoadBalancerIntent, o: LoadBalancerObserved, subnet_id: Id | None
) -> Id | None:
    """The load balancer itself; None when its children must not be planned this pass."""
    lb = o.load_balancer
    b.know("load_balancer", lb)
    for port, obj in o.listeners.items():
        b.know(f"listener:{port}", obj)
    for port, obj in o.pools.items():
        b.know(f"pool:{port}", obj)
    if subnet_id is None:
        return None
    if lb is None:
        return b.adopt_or_create(Kind.LOAD_BALANCER, i.name, "load_balancer", "missing",
                                 vip_subnet_id=subnet_id, tags=b.tags("load_balancer"))
    if lb.status == "ERROR":
        b.add(Verb.DELETE, Kind.LOAD_BALANCER, lb.name, "in ERROR; re-creating it", None, lb.id)
        b.plan.waiting.append(f"load balancer {lb.name} being re-created")
        return None
    if lb.status in LB_PENDING:
        b.plan.waiting.append(f"load balancer {lb.name} {lb.status}")
    return lb.id


def plan_listeners_and_pools(
    b: PlanBuilder, i: LoadBalancerIntent, o: LoadBalancerObserved, lb_ref: Id
) -> None:
    protocol = i.protocol.upper()
    pool_protocol = POOL_PROTOCOL.get(protocol, protocol)
    hc = i.health_check
    for port in sorted(set(o.listeners) - set(i.ports)):
        b.add(Verb.DELETE, Kind.LISTENER, o.listeners[port].name,
              f"port {port} no longer in loadBalancer.ports", None, o.listeners[port].id)
    for port in sorted(set(o.pools) - set(i.ports)):
        b.add(Verb.DELETE, Kind.POOL, o.pools[port].name,
              f"port {port} no longer in loadBalancer.ports", None, o.pools[port].id)
    for port in i.ports:
        listener = o.listeners.get(port)
        pool = o.pools.get(port)
        if listener is not None and listener.get("protocol") != protocol:
            b.add(Verb.DELETE, Kind.LISTENER, listener.name, f"protocol changes to {protocol}",
                  None, listener.id)
            if pool is not None:
                b.add(Verb.DELETE, Kind.POOL, pool.name, f"protocol changes to {protocol}", None,
                      pool.id)
            b.plan.waiting.append(f"listener {port} being re-created")
            continue
        allowed = {"allowed_cidrs": sorted(i.allowed_cidrs)} if i.allowed_cidrs else {}
        if listener is None:
            b.add(Verb.CREATE, Kind.LISTENER, i.listener_name(port), "missing", f"listener:{port}",
                  loadbalancer_id=lb_ref, protocol=protocol, protocol_port=port,
                  tags=b.tags("listener", port=port), **allowed)
            listener_ref: Id = Ref(f"listener:{port}")
        else:
            listener_ref = listener.id
            have = sorted(listener.get("allowed_cidrs") or [])
            if have != sorted(i.allowed_cidrs):
                b.add(Verb.UPDATE, Kind.LISTENER, listener.name, "allowed CIDRs changed",
                      f"listener:{port}", listener.id,
                      allowed_cidrs=sorted(i.allowed_cidrs) or None)
        if pool is None:
            b.add(Verb.CREATE, Kind.POOL, i.pool_name(port), "missing", f"pool:{port}",
                  listener_id=listener_ref, protocol=pool_protocol, lb_algorithm=i.algorithm,
                  tags=b.tags("pool", port=port))
            pool_ref: Id = Ref(f"pool:{port}")
        else:
            pool_ref = pool.id
            if pool.get("lb_algorithm") != i.algorithm:
                b.add(Verb.UPDATE, Kind.POOL, pool.name, f"algorithm -> {i.algorithm}",
                      f"pool:{port}", pool.id, lb_algorithm=i.algorithm)
            if listener is not None and listener.get("default_pool_id") != pool.id:
                b.add(Verb.UPDATE, Kind.LISTENER, listener.name, "default pool not set",
                      f"listener:{port}", listener.id, default_pool_id=pool.id)
        want_hm = hc.monitor()
        hm = o.health_monitors.get(port)
        if hm is None:
            b.add(Verb.CREATE, Kind.HEALTH_MONITOR, i.monitor_name(port), "missing", f"hm:{port}",
                  pool_id=pool_ref, tags=b.tags("health_monitor", port=port), **want_hm)
        elif hm.get("type") != hc.type:
            b.add(Verb.DELETE, Kind.HEALTH_MONITOR, hm.name, f"type changes to {hc.type}", None,
                  hm.id)
        else:
            diff = {k: v for k, v in want_hm.items() if k != "type" and hm.get(k) != v}
            if diff:
                b.add(Verb.UPDATE, Kind.HEALTH_MONITOR, hm.name,
                      "health check changed: " + ", ".join(sorted(diff)), f"hm:{port}", hm.id,
                      **diff)


def plan_members(b: PlanBuilder, o: LoadBalancerObserved, joining: list[MemberIntent]) -> None:
    """Add the servers that are ready to their pools (drained ones the fleet removes)."""
    for m in joining:
        pool = o.pools.get(m.port)
        b.add(Verb.CREATE, Kind.MEMBER, m.name, f"{m.name} ready, joins pool {m.port}", None,
              pool_id=pool.id if pool else Ref(f"pool:{m.port}"), address=m.address,
              protocol_port=m.member_port or m.port, tags=b.tags("member", index=m.index),
              **m.options.params())


def plan_member_options(
    b: PlanBuilder, o: LoadBalancerObserved, wanted: Mapping[tuple[int, str], MemberOptions]
) -> None:
    """Members whose options differ from ``wanted[(port, address)]`` are updated in place
    (e.g. which Galera node is the writer and which are ``backup``)."""
    for port, members in sorted(o.members.items()):
        pool = o.pools.get(port)
        for member in members:
            options = wanted.get((port, member.get("address")))
            diff = options.differences(member) if options is not None else {}
            if diff and pool is not None:
                b.add(Verb.UPDATE, Kind.MEMBER, member.name,
                      "member options changed: " + ", ".join(sorted(diff)), None, member.id,
                      pool_id=pool.id, **diff)


# --- member health: does the load balancer serve? ------------------------------------------
#: Octavia's member/pool operating statuses, as the health manager reports them
ONLINE, ERROR, DEGRADED = "ONLINE", "ERROR", "DEGRADED"


@dataclass(frozen=True)
class MemberHealth:
    """What the health monitors say, per member address, over every pool of one LB.

    Octavia reports a member ONLINE (its checks pass), ERROR (they fail), NO_MONITOR (no
    monitor), OFFLINE (admin down, or no health data yet: a new member, or a cloud without a
    health manager). A pool ONLINE means every member is; its members then need not be
    listed one by one.
    """

    #: address -> the ports (pools) where it is ONLINE / in ERROR / anything else
    online: Mapping[str, frozenset[int]]
    failing: Mapping[str, frozenset[int]]
    unknown: Mapping[str, frozenset[int]]
    ports: frozenset[int]

    def serving(self, address: str) -> bool:
        """Every pool of the LB sends this address traffic."""
        return bool(self.ports) and self.online.get(address, frozenset()) == self.ports

    @property
    def every_pool_serves(self) -> bool:
        """Each pool has at least one ONLINE member: the URL answers on every port."""
        served = set().union(*self.online.values()) if self.online else set()
        return served >= self.ports


def member_health(pools: Mapping[int, CloudObject],
                  members: Mapping[int, list[CloudObject]]) -> MemberHealth:
    """Pure: member statuses by address. A pool reported ONLINE vouches for its members even
    when their own listing (cached by member IDs) is older."""
    online: dict[str, set[int]] = {}
    failing: dict[str, set[int]] = {}
    unknown: dict[str, set[int]] = {}
    for port, pool in pools.items():
        pool_online = pool.get("operating_status") == ONLINE
        for m in members.get(port, []):
            status = ONLINE if pool_online else m.get("operating_status")
            bucket = online if status == ONLINE else failing if status == ERROR else unknown
            bucket.setdefault(m.get("address"), set()).add(port)
    freeze = lambda d: {a: frozenset(p) for a, p in d.items()}  # noqa: E731
    return MemberHealth(freeze(online), freeze(failing), freeze(unknown), frozenset(pools))
