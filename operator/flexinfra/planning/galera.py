"""The GaleraCluster planner: the concern planners composed for a Galera cluster. Pure.

What differs from a web site, and where it lives:

* **three security groups, one per role** (``security_group`` with ``role``): ``db`` opens
  3306 to ``allowedFrom`` and to the cluster's subnet (the writer endpoint's amphora connects
  from there); ``peers`` opens Galera's replication ports (4567 tcp+udp, 4568 IST, 4444 SST)
  to the members of the ``peers`` group only, a remote-group rule, so no address is written
  into it; ``agent`` opens the agent's API (8443) to the operator's CIDRs and to the nodes
  (agents read their peers' status before rejoining) and the health port (9200) to the
  subnet (Octavia's health monitor);
* **ports first** (``FleetIntent.ports_first``): each node's ``my.cnf`` lists every node's
  address, so all ports (and data volumes) exist before the first server; a port outlives
  its servers, so a node keeps its address across replacement;
* **per-node boot scripts** (``FleetIntent.user_data_for``): ``GaleraIntent.boot(index,
  addresses)`` renders the node's cloud-config (``galera.userdata``);
* **the writer endpoint**: a TCP listener on ``writer.port`` whose pool holds every node, the
  writer a normal member and the others ``backup``, all checked by HTTP ``GET /health`` on
  the agent's health port (200 only when Synced + Primary). Which node is the writer is an
  input (``ObservedGalera.writer``, from the Galera step's last decision): moving it is member
  option updates. Optional: a floating IP on it, a read listener over every node.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from flexinfra.core import tags as T
from flexinfra.core.kinds import Kind, Verb
from flexinfra.core.objects import CloudObject
from flexinfra.core.plan import Plan
from flexinfra.planning.builder import PlanBuilder
from flexinfra.planning.fleet import plan_fleet, plan_server_group
from flexinfra.planning.floating_ip import FloatingIPIntent, FloatingIPObserved, plan_floating_ip
from flexinfra.planning.load_balancer import (
    HealthCheckIntent,
    LoadBalancerIntent,
    LoadBalancerObserved,
    MemberIntent,
    MemberOptions,
    plan_listeners_and_pools,
    plan_load_balancer,
    plan_member_options,
    plan_members,
)
from flexinfra.planning.network import NetworkIntent, NetworkObserved, plan_network, plan_router
from flexinfra.planning.security_group import SecurityGroupIntent, plan_security_group
from flexinfra.planning.servers import FleetIntent, FleetObserved, port_address

MYSQL_PORT = 3306
AGENT_PORT = 8443
HEALTH_PORT = 9200
#: Galera replication (tcp+udp), IST, SST: between nodes only
PEER_PORTS: tuple[tuple[int, str], ...] = ((4567, "tcp"), (4567, "udp"), (4568, "tcp"),
                                           (4444, "tcp"))
#: the writer endpoint's monitor: haproxy takes a node out after 2 failed checks 2 s apart
#: (``max_retries_down``; Octavia's default of 3 made the writer failover 2 s slower) and
#: back after 2 good ones
HEALTH_CHECK = HealthCheckIntent(type="HTTP", path="/health", delay=2, timeout=1,
                                 max_retries=2, expected_codes="200", max_retries_down=2)
ROLES = ("db", "peers", "agent")

#: (index, every node's address, its data volume's id) -> that node's boot script
Boot = Callable[[int, tuple[str, ...], str | None], str]


@dataclass(frozen=True)
class GaleraIntent:
    """The desired cluster, as plain data (built by ``kinds.galera`` from the spec)."""

    prefix: str
    owner_uid: str
    replicas: int
    availability_zones: tuple[str, ...]
    cidr: str | None
    existing_network: str | None
    external_network: str
    image: str
    flavor: str
    anti_affinity: str
    volume_size_gb: int
    volume_type: str | None
    template_hash: str
    allowed_from: tuple[str, ...] = ()
    #: who may call the agents' API; empty: the cluster's subnet (where the operator's host
    #: port lives in the sandbox; see FLEXINFRA_OPERATOR_CIDRS)
    operator_cidrs: tuple[str, ...] = ()
    writer_port: int = MYSQL_PORT
    public_ip: bool = False
    read_enabled: bool = False
    read_port: int = 3307
    boot: Boot | None = field(default=None, compare=False)

    @property
    def network(self) -> NetworkIntent:
        return NetworkIntent(self.prefix, self.cidr, self.existing_network,
                             self.external_network, (), "GaleraCluster")

    def security_groups(self) -> tuple[SecurityGroupIntent, ...]:
        agent_ingress = tuple((AGENT_PORT, "tcp", c) for c in self.operator_cidrs)
        agent_subnet = ((HEALTH_PORT, "tcp"),) + (
            () if self.operator_cidrs else ((AGENT_PORT, "tcp"),))
        return (
            SecurityGroupIntent(self.prefix, tuple((MYSQL_PORT, "tcp", c)
                                                   for c in self.allowed_from),
                                ((MYSQL_PORT, "tcp"),), role="db"),
            SecurityGroupIntent(self.prefix, (), (), role="peers", peer_ports=PEER_PORTS),
            SecurityGroupIntent(self.prefix, agent_ingress, agent_subnet, role="agent",
                                peer_ports=((AGENT_PORT, "tcp"),)),
        )

    @property
    def pool_ports(self) -> tuple[int, ...]:
        return (self.writer_port,) + ((self.read_port,) if self.read_enabled else ())

    @property
    def fleet(self) -> FleetIntent:
        return FleetIntent(
            prefix=self.prefix, replicas=self.replicas,
            availability_zones=self.availability_zones, image=self.image, flavor=self.flavor,
            user_data=None, key_name=None, server_metadata={},
            template_hash=self.template_hash, volume_size_gb=self.volume_size_gb,
            volume_type=self.volume_type, anti_affinity=self.anti_affinity,
            pool_ports=self.pool_ports, role="db", recipe="GaleraCluster spec",
            ports_first=True,
        )

    def load_balancer(self, subnet_cidr: str | None) -> LoadBalancerIntent:
        allowed = tuple(sorted({*self.allowed_from, *([subnet_cidr] if subnet_cidr else [])}))
        return LoadBalancerIntent(self.prefix, self.pool_ports, "TCP", "ROUND_ROBIN",
                                  HEALTH_CHECK, allowed_cidrs=allowed if self.public_ip else ())

    @property
    def floating_ip(self) -> FloatingIPIntent:
        return FloatingIPIntent(self.prefix, self.public_ip, False, self.external_network)

    def node_name(self, index: int) -> str:
        """A node is named after its server (``<prefix>-db-<index>``) everywhere: wsrep node
        name, agent certificate, status, Events, ``forceBootstrapNode``."""
        return self.fleet.server_name(index)

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(self.node_name(n) for n in range(self.replicas))

    @property
    def adoptable_names(self) -> dict[Kind, str]:
        n = self.network
        return {Kind.NETWORK: n.network_name, Kind.SUBNET: n.subnet_name,
                Kind.ROUTER: n.router_name, Kind.LOAD_BALANCER: f"{self.prefix}-lb",
                Kind.FLOATING_IP: self.floating_ip.name}


@dataclass
class ObservedGalera:
    """The cluster's objects in the tenant snapshot, plus the lookups (image, flavor, zones,
    pool members) and the writer chosen by the Galera step."""

    network: NetworkObserved = field(default_factory=NetworkObserved)
    security_groups: dict[str, CloudObject] = field(default_factory=dict)  # by role
    fleet: FleetObserved = field(default_factory=FleetObserved)
    lb: LoadBalancerObserved = field(default_factory=LoadBalancerObserved)
    floating_ip: CloudObject | None = None
    untagged: dict[str, CloudObject] = field(default_factory=dict)
    #: the node the writer endpoint sends writes to (None: the first node)
    writer: str | None = None
    #: every node was Synced in one Primary component at the Galera step's last look (a
    #: rolling replacement takes a node down only then)
    all_synced: bool = True

    @property
    def floating_ip_view(self) -> FloatingIPObserved:
        return FloatingIPObserved(self.floating_ip, None, self.network.external_network_id)

    def addresses(self, replicas: int) -> tuple[str, ...] | None:
        """Every node's address in index order, once every port has one."""
        out = []
        for n in range(replicas):
            port = self.fleet.ports.get(n)
            address = port_address(port) if port is not None else None
            if not address:
                return None
            out.append(address)
        return tuple(out)


def member_options(intent: GaleraIntent, listener_port: int, node: str,
                   writer: str) -> MemberOptions:
    """The writer pool: one normal member, the others backup; the read pool: all normal.
    Every member is checked on its agent's health port."""
    backup = listener_port == intent.writer_port and node != writer
    return MemberOptions(backup=backup, monitor_port=HEALTH_PORT)


def plan_galera(intent: GaleraIntent, observed: ObservedGalera) -> Plan:
    i, o = intent, observed
    b = PlanBuilder(i.owner_uid, o.untagged)
    at = plan_network(b, i.network, o.network)
    lbi = i.load_balancer(at.cidr)
    lb_ref = plan_load_balancer(b, lbi, o.lb, at.subnet_id)
    plan_router(b, i.network, o.network, at.subnet_id)
    sg_ids = [plan_security_group(b, g, o.security_groups.get(g.role), at.cidr)
              for g in i.security_groups()]
    fleet_intent = i.fleet
    addresses = o.addresses(i.replicas)
    if addresses is not None and i.boot is not None:
        boot, volumes = i.boot, o.fleet.volumes

        def user_data(n: int) -> str:
            volume = volumes.get(n)
            return boot(n, addresses, volume.id if volume is not None else None)

        fleet_intent = replace(fleet_intent, user_data_for=user_data)
    group_id = plan_server_group(b, fleet_intent, o.fleet)
    fleet = plan_fleet(b, fleet_intent, o.fleet, at, sg_ids, group_id)
    if not o.all_synced:
        hold_rolling_replacement(b, i, o)
    writer = o.writer or i.node_name(0)
    if lb_ref is not None:
        plan_listeners_and_pools(b, lbi, o.lb, lb_ref)
        plan_members(b, o.lb, [
            MemberIntent(port, v.obj.name, v.index, v.address,
                         member_options(i, port, v.obj.name, writer), member_port=MYSQL_PORT)
            for port, v in fleet.joining])
        names = {port_address(p): i.node_name(n) for n, p in o.fleet.ports.items()}
        wanted = {(port, address): member_options(i, port, name, writer)
                  for address, name in names.items() if address for port in i.pool_ports}
        plan_member_options(b, o.lb, wanted)
        plan_floating_ip(b, i.floating_ip, o.floating_ip_view, o.lb.load_balancer)
    return b.plan


def hold_rolling_replacement(b: PlanBuilder, i: GaleraIntent, o: ObservedGalera) -> None:
    """The fleet replaces servers of an old template one at a time while the others serve;
    for Galera "serve" means Synced: a second node must not go down while the first one's
    successor is still joining (SST or IST), or the cluster could lose its quorum. Failed
    servers are not held (they serve nothing)."""
    stale = {s.id: s.name for s in o.fleet.servers if s.status == "ACTIVE"
             and T.tag_value(s.tags, T.TEMPLATE_PREFIX) != i.template_hash}
    held = [a for a in b.plan.actions if a.verb is Verb.DELETE and (
        (a.kind is Kind.SERVER and a.target_id in stale)
        or (a.kind is Kind.MEMBER and a.name in stale.values()))]  # its drain first
    if held:
        b.plan.actions = [a for a in b.plan.actions if a not in held]
        b.plan.waiting.append("replacing " + ", ".join(sorted({a.name for a in held}))
                              + " once every node is Synced")


def endpoints(intent: GaleraIntent, observed: ObservedGalera) -> dict[str, str | None]:
    """Where clients connect: VIP:port for writes (and reads), floating IP:port."""
    lb = observed.lb.load_balancer
    vip = lb.get("vip_address") if lb is not None else None
    fip = observed.floating_ip.get("floating_ip_address") if observed.floating_ip else None
    return {
        "endpoint": f"{vip}:{intent.writer_port}" if vip else None,
        "public": f"{fip}:{intent.writer_port}" if (fip and intent.public_ip) else None,
        "read": f"{vip}:{intent.read_port}" if (vip and intent.read_enabled) else None,
    }


def volumes_intact(observed: ObservedGalera, replicas: int) -> Mapping[int, bool | None]:
    """Per index: the data volume exists and is usable (True), is known lost (False: the
    cluster created it and it is gone or in error), or unknown (None)."""
    out: dict[int, bool | None] = {}
    for n in range(replicas):
        volume = observed.fleet.volumes.get(n)
        if volume is None:
            out[n] = False if n in observed.fleet.ports else None
        else:
            out[n] = volume.status not in ("error", "deleting", "error_deleting")
    return out
