"""Plain data the planner reads and writes: no openstacksdk, no pydantic, no I/O.

``CloudObject`` is how the gateway hands observed objects over; ``SiteIntent`` is the desired
site derived from a WebSite and its SiteTemplate; ``ObservedSite`` is what the tenant inventory
found for one owner; ``PlannedAction`` is one step for the executor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CloudObject:
    """One OpenStack object as observed: the few fields every kind has, plus raw ``attrs``."""

    kind: str
    id: str
    name: str = ""
    status: str | None = None
    tags: frozenset[str] = frozenset()
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)


@dataclass(frozen=True)
class Ref:
    """A value known only at execution time: the id (or another field) of an object that this
    same plan creates, e.g. ``Ref("network")`` for a subnet created right after its network."""

    key: str
    field: str = "id"


@dataclass(frozen=True)
class RuleKey:
    """A security group rule, reduced to what makes it the same rule."""

    direction: str
    ethertype: str
    protocol: str | None
    port_min: int | None
    port_max: int | None
    remote_ip_prefix: str | None

    def describe(self) -> str:
        ports = "" if self.port_min is None else f" port {self.port_min}"
        if self.port_max not in (None, self.port_min):
            ports += f"-{self.port_max}"
        return (
            f"{self.direction} {self.protocol or 'any'}{ports} "
            f"{'from' if self.direction == 'ingress' else 'to'} "
            f"{self.remote_ip_prefix or self.ethertype}"
        )


@dataclass(frozen=True)
class HealthCheckIntent:
    type: str = "HTTP"
    path: str = "/"
    delay: int = 5
    timeout: int = 3
    max_retries: int = 3
    expected_codes: str = "200"


@dataclass(frozen=True)
class SiteIntent:
    """The desired site. Built by ``planning.intent.site_intent`` from the API models."""

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

    @property
    def server_group_policy(self) -> str:
        return "anti-affinity" if self.anti_affinity == "hard" else "soft-anti-affinity"


@dataclass
class ObservedSite:
    """Everything the tenant inventory knows about one owner's objects, keyed for planning.

    Objects are found by owner tag (Neutron, Nova servers, Octavia), metadata (Cinder) or name
    with the UID in it (server groups), never by status IDs: that is what makes adoption of
    tagged orphans automatic. ``untagged_*`` holds objects with our exact name but no owner tag
    (a create whose tagging call failed) so they are adopted rather than duplicated.
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
    untagged: dict[str, CloudObject] = field(default_factory=dict)
    # resolved references (not owned)
    external_network_id: str | None = None
    shared_network: CloudObject | None = None
    shared_subnet: CloudObject | None = None
    image_id: str | None = None
    flavor_id: str | None = None
    available_zones: frozenset[str] | None = None
    overlapping_subnets: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not any(
            [
                self.network,
                self.subnet,
                self.router,
                self.security_group,
                self.server_groups,
                self.ports,
                self.servers,
                self.volumes,
                self.load_balancer,
                self.floating_ip,
            ]
        )


@dataclass(frozen=True)
class PlannedAction:
    """One step. ``key`` names the object for ``Ref`` resolution (``server:2``, ``pool:80``)."""

    verb: str  # create | update | delete | adopt | tag | attach | associate
    kind: str
    name: str
    reason: str
    key: str | None = None
    target_id: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def needs_active_lb(self) -> bool:
        """Octavia refuses child changes (409) while the LB is PENDING_*."""
        return self.kind in ("listener", "pool", "health_monitor", "member")

    def describe(self) -> str:
        return f"{self.verb} {self.kind} {self.name}: {self.reason}"


@dataclass
class Plan:
    actions: list[PlannedAction] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # what we wait for (BUILD, PENDING_*)
    ready_replicas: int = 0
    url: str | None = None
    problems: list[str] = field(default_factory=list)  # degraded, not blocking
    blocked: list[str] = field(default_factory=list)  # the cloud refuses; the user must act

    @property
    def converged(self) -> bool:
        return not self.actions and not self.waiting
