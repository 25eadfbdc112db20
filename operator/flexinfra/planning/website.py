"""The WebSite planner: the concern planners composed in dependency order. Pure.

One pass plans everything that can be done now; objects created in the same pass are
referenced with ``Ref``. Whatever must wait for the cloud (a server in BUILD, a load balancer
in PENDING_*) is reported in ``Plan.waiting`` and planned on a later pass, so a pass never
blocks. The rules for servers are in ``planning.fleet``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from flexinfra.core.kinds import Kind
from flexinfra.core.objects import CloudObject
from flexinfra.core.plan import Plan, Problem
from flexinfra.core.reasons import Reason
from flexinfra.planning.builder import PlanBuilder
from flexinfra.planning.fleet import plan_fleet, plan_server_group
from flexinfra.planning.floating_ip import FloatingIPIntent, FloatingIPObserved, plan_floating_ip
from flexinfra.planning.load_balancer import (
    HealthCheckIntent,
    LoadBalancerIntent,
    LoadBalancerObserved,
    MemberIntent,
    plan_listeners_and_pools,
    plan_load_balancer,
    plan_members,
)
from flexinfra.planning.network import NetworkIntent, NetworkObserved, plan_network, plan_router
from flexinfra.planning.security_group import SecurityGroupIntent, plan_security_group
from flexinfra.planning.servers import FleetIntent, FleetObserved


@dataclass(frozen=True)
class SiteIntent:
    """The desired site, as plain data. Built by ``kinds.website`` from the API models."""

    prefix: str
    owner_uid: str
    replicas: int
    availability_zones: tuple[str, ...]
    cidr: str | None
    existing_network: str | None
    external_network: str
    dns_nameservers: tuple[str, ...]
    image: str
    flavor: str
    user_data: str | None
    key_name: str | None
    server_metadata: Mapping[str, str]
    template_ports: tuple[tuple[int, str], ...]
    ingress: tuple[tuple[int, str, str], ...]  # (port, protocol, from CIDR)
    lb_ports: tuple[int, ...]
    lb_protocol: str
    lb_algorithm: str
    health_check: HealthCheckIntent
    public_ip: bool
    retain_ip: bool
    volume_size_gb: int | None
    volume_type: str | None
    anti_affinity: str  # 'soft' | 'hard'
    template_hash: str
    domains: tuple[str, ...] = ()
    retained_tag: str = ""  # on a floating IP released with publicIP.retain
    #: Ready waits for the LB members to be ONLINE (FLEXINFRA_MEMBER_HEALTH=required)
    require_member_health: bool = True

    @property
    def server_group_policy(self) -> str:
        return self.fleet.server_group_policy

    @property
    def network(self) -> NetworkIntent:
        return NetworkIntent(self.prefix, self.cidr, self.existing_network,
                             self.external_network, self.dns_nameservers, "WebSite")

    @property
    def security_group(self) -> SecurityGroupIntent:
        return SecurityGroupIntent(self.prefix, self.ingress, self.template_ports)

    @property
    def fleet(self) -> FleetIntent:
        return FleetIntent(
            prefix=self.prefix, replicas=self.replicas,
            availability_zones=self.availability_zones, image=self.image, flavor=self.flavor,
            user_data=self.user_data, key_name=self.key_name,
            server_metadata=self.server_metadata, template_hash=self.template_hash,
            volume_size_gb=self.volume_size_gb, volume_type=self.volume_type,
            anti_affinity=self.anti_affinity, pool_ports=self.lb_ports, recipe="SiteTemplate",
        )

    @property
    def load_balancer(self) -> LoadBalancerIntent:
        return LoadBalancerIntent(self.prefix, self.lb_ports, self.lb_protocol,
                                  self.lb_algorithm, self.health_check)

    @property
    def adoptable_names(self) -> dict[Kind, str]:
        """The site's one-of-a-kind objects by the name an orphan of them would carry."""
        n = self.network
        return {
            Kind.NETWORK: n.network_name,
            Kind.SUBNET: n.subnet_name,
            Kind.ROUTER: n.router_name,
            Kind.SECURITY_GROUP: self.security_group.name,
            Kind.LOAD_BALANCER: self.load_balancer.name,
            Kind.FLOATING_IP: self.floating_ip.name,
        }

    @property
    def floating_ip(self) -> FloatingIPIntent:
        return FloatingIPIntent(self.prefix, self.public_ip, self.retain_ip,
                                self.external_network)


@dataclass
class ObservedSite:
    """Everything the tenant inventory knows about one site's objects, keyed for planning.

    Objects are found by owner tag (Neutron, Nova servers, Octavia), metadata (Cinder) or name
    with the UID in it (server groups), never by status IDs: that is what makes adoption of
    tagged orphans automatic. ``untagged`` holds objects with our exact name but no owner tag
    (a create whose tagging call failed), by ``"<kind>:<name>"``, so they are adopted rather
    than duplicated.
    """

    network: CloudObject | None = None
    subnet: CloudObject | None = None
    router: CloudObject | None = None
    router_interface: CloudObject | None = None  # the router's port on our subnet
    security_group: CloudObject | None = None
    server_groups: list[CloudObject] = field(default_factory=list)
    ports: dict[int, CloudObject] = field(default_factory=dict)
    servers: list[CloudObject] = field(default_factory=list)
    volumes: dict[int, CloudObject] = field(default_factory=dict)
    load_balancer: CloudObject | None = None
    listeners: dict[int, CloudObject] = field(default_factory=dict)
    pools: dict[int, CloudObject] = field(default_factory=dict)
    health_monitors: dict[int, CloudObject] = field(default_factory=dict)
    members: dict[int, list[CloudObject]] = field(default_factory=dict)
    floating_ip: CloudObject | None = None
    retained_ip: CloudObject | None = None
    vip_floating_ip: CloudObject | None = None  # not ours, already on the VIP
    untagged: dict[str, CloudObject] = field(default_factory=dict)
    # resolved references (not owned)
    external_network_id: str | None = None
    shared_network: CloudObject | None = None
    shared_subnet: CloudObject | None = None
    image_id: str | None = None
    flavor_id: str | None = None
    available_zones: frozenset[str] | None = None
    overlapping_subnets: list[str] = field(default_factory=list)

    @property
    def network_view(self) -> NetworkObserved:
        return NetworkObserved(self.network, self.subnet, self.router, self.router_interface,
                               self.external_network_id, self.shared_network,
                               self.shared_subnet, self.overlapping_subnets)

    @property
    def fleet_view(self) -> FleetObserved:
        return FleetObserved(self.servers, self.ports, self.volumes, self.server_groups,
                             self.pools, self.members, self.image_id, self.flavor_id,
                             self.available_zones)

    @property
    def load_balancer_view(self) -> LoadBalancerObserved:
        return LoadBalancerObserved(self.load_balancer, self.listeners, self.pools,
                                    self.health_monitors, self.members)

    @property
    def floating_ip_view(self) -> FloatingIPObserved:
        return FloatingIPObserved(self.floating_ip, self.retained_ip, self.external_network_id,
                                  self.vip_floating_ip)

    def is_empty(self) -> bool:
        return not any([self.network, self.subnet, self.router, self.security_group,
                        self.server_groups, self.ports, self.servers, self.volumes,
                        self.load_balancer, self.floating_ip])


def plan_site(intent: SiteIntent, observed: ObservedSite) -> tuple[Plan, list[str]]:
    """Return the plan and the list of spec problems (InvalidSpec when non-empty)."""
    i, o = intent, observed
    b = PlanBuilder(i.owner_uid, o.untagged)
    net, fleet_intent, lb_intent = o.network_view, i.fleet, i.load_balancer
    at = plan_network(b, i.network, net)
    # the load balancer is the long pole (tens of seconds to ACTIVE): ask for it first so
    # its PENDING_CREATE overlaps the router, security group and servers
    lb_view = o.load_balancer_view
    lb_ref = plan_load_balancer(b, lb_intent, lb_view, at.subnet_id)
    plan_router(b, i.network, net, at.subnet_id)
    sg_id = plan_security_group(b, i.security_group, o.security_group, at.cidr)
    group_id = plan_server_group(b, fleet_intent, o.fleet_view)
    fleet = plan_fleet(b, fleet_intent, o.fleet_view, at, sg_id, group_id)
    if lb_ref is not None:
        plan_listeners_and_pools(b, lb_intent, lb_view, lb_ref)
        plan_members(b, lb_view, [MemberIntent(port, v.obj.name, v.index, v.address)
                                  for port, v in fleet.joining])
        plan_floating_ip(b, i.floating_ip, o.floating_ip_view, o.load_balancer)
    plan = b.plan
    degraded(plan, i, o)
    if not plan.invalid:
        address = None
        if i.public_ip and o.floating_ip is not None:
            address = o.floating_ip.get("floating_ip_address")
        elif not i.public_ip and o.load_balancer is not None:
            address = o.load_balancer.get("vip_address")
        plan.url = site_url(i, address)
    return plan, plan.invalid


def degraded(plan: Plan, i: SiteIntent, o: ObservedSite) -> None:
    """The Degraded condition's cause the fleet does not report itself: a site that serves,
    with nothing left to do, but with fewer servers than asked. (A member failing its health
    check is the ``serving`` step's to report, from the members' fresh health.)"""
    if (not plan.invalid and not plan.blocked and plan.converged and i.replicas
            and plan.ready_replicas < i.replicas):
        plan.problems.append(Problem(
            Reason.REPLICAS_UNAVAILABLE,
            f"serving with {plan.ready_replicas} of {i.replicas} servers",
        ))


def site_url(intent: SiteIntent, address: str | None) -> str | None:
    if not address:
        return None
    if 80 in intent.lb_ports:
        return f"http://{address}"
    if 443 in intent.lb_ports:
        return f"https://{address}"
    return f"http://{address}:{intent.lb_ports[0]}" if intent.lb_ports else f"http://{address}"
