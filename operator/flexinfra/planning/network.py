"""The network a kind's servers and load balancer live on: its own (network, subnet, router
with a gateway on the external network) or an existing one it only joins."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from flexinfra.core.kinds import Kind, Verb
from flexinfra.core.objects import CloudObject, Ref
from flexinfra.planning.builder import PlanBuilder

Id = str | Ref


@dataclass(frozen=True)
class NetworkIntent:
    prefix: str
    cidr: str | None
    existing_network: str | None
    external_network: str
    dns_nameservers: tuple[str, ...] = ()
    #: the owner's kind, as messages name it
    owner_kind: str = "object"

    @property
    def network_name(self) -> str:
        return f"{self.prefix}-net"

    @property
    def attached_network_name(self) -> str:
        """The network the owner's servers are on: the one named in the spec, else its own."""
        return self.existing_network or self.network_name

    @property
    def subnet_name(self) -> str:
        return f"{self.prefix}-subnet"

    @property
    def router_name(self) -> str:
        return f"{self.prefix}-router"


@dataclass
class NetworkObserved:
    network: CloudObject | None = None
    subnet: CloudObject | None = None
    router: CloudObject | None = None
    router_interface: CloudObject | None = None  # the router's port on our subnet
    external_network_id: str | None = None
    shared_network: CloudObject | None = None  # network.existingNetwork, resolved
    shared_subnet: CloudObject | None = None
    overlapping_subnets: list[str] = field(default_factory=list)
    #: networks the owner's ports and load balancer VIP are on (where it is built)
    attached_to: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Attachment:
    """Where servers and the load balancer VIP go; None parts: not known (spec invalid)."""

    network_id: Id | None
    subnet_id: Id | None
    cidr: str | None


def norm_cidr(cidr: str) -> str:
    return str(ipaddress.ip_network(cidr, strict=False))


def switched(i: NetworkIntent, o: NetworkObserved) -> str | None:
    """A switch between network.cidr and network.existingNetwork (or to another existing
    network) on an owner already built: its servers and load balancer would stay on the old
    network while it says Ready. Refused, like a CIDR change."""
    redo = (f"put the old value back, or delete and re-create the {i.owner_kind} (a network "
            "cannot be swapped under built servers)")
    if i.existing_network and o.network is not None:
        cidr = o.subnet.get("cidr") if o.subnet is not None else "?"
        return (f"network.existingNetwork {i.existing_network!r} set, but this {i.owner_kind} "
                f"is built on its own network {o.network.name} (network.cidr {cidr}); {redo}")
    if i.existing_network and o.shared_network is not None and (
            o.attached_to - {o.shared_network.id}):
        return (f"network.existingNetwork changed to {i.existing_network!r}, but this "
                f"{i.owner_kind} is built on another network; {redo}")
    if not i.existing_network and o.network is None and o.attached_to:
        return (f"network.cidr {i.cidr} set, but this {i.owner_kind} is built on an existing "
                f"network; {redo}")
    return None


def plan_network(b: PlanBuilder, i: NetworkIntent, o: NetworkObserved) -> Attachment:
    b.know("network", o.network or o.shared_network)
    b.know("subnet", o.subnet or o.shared_subnet)
    moved = switched(i, o)
    if moved:
        b.invalid.append(moved)
        return Attachment(None, None, None)
    if i.existing_network:
        if o.shared_network is None:
            b.invalid.append(
                f"network.existingNetwork {i.existing_network!r} was not found in the project; "
                "create it or fix the name"
            )
            return Attachment(None, None, None)
        if o.shared_subnet is None:
            b.invalid.append(f"network.existingNetwork {i.existing_network!r} has no IPv4 subnet")
            return Attachment(o.shared_network.id, None, None)
        return Attachment(o.shared_network.id, o.shared_subnet.id, o.shared_subnet.get("cidr"))
    if not i.cidr:
        b.invalid.append("set network.cidr (e.g. 10.20.1.0/24) or network.existingNetwork")
        return Attachment(None, None, None)
    if o.network is None:
        network_id: Id = b.adopt_or_create(
            Kind.NETWORK, i.network_name, "network", "missing", tags=b.tags("network")
        )
    else:
        network_id = o.network.id
    if o.subnet is None:
        if o.overlapping_subnets:
            b.invalid.append(
                f"network.cidr {i.cidr} overlaps existing subnet(s) "
                f"{', '.join(o.overlapping_subnets)}; choose a free range"
            )
        subnet_id: Id = b.adopt_or_create(
            Kind.SUBNET, i.subnet_name, "subnet", "missing", network_id=network_id,
            cidr=i.cidr, ip_version=4, dns_nameservers=list(i.dns_nameservers),
            tags=b.tags("subnet"),
        )
    else:
        subnet_id = o.subnet.id
        if norm_cidr(o.subnet.get("cidr")) != norm_cidr(i.cidr):
            b.invalid.append(
                f"network.cidr changed from {o.subnet.get('cidr')} to {i.cidr}: a built subnet "
                "cannot change range; put the old value back, or delete and re-create the "
                f"{i.owner_kind}"
            )
        elif sorted(o.subnet.get("dns_nameservers") or []) != sorted(i.dns_nameservers):
            b.add(Verb.UPDATE, Kind.SUBNET, i.subnet_name, "DNS servers differ", "subnet",
                  o.subnet.id, dns_nameservers=list(i.dns_nameservers))
    return Attachment(network_id, subnet_id, i.cidr)


def plan_router(b: PlanBuilder, i: NetworkIntent, o: NetworkObserved, subnet_id: Id | None) -> None:
    """Our own router, gateway on the external network; a shared network brings its own."""
    b.know("router", o.router)
    if i.existing_network:
        return
    if o.external_network_id is None:
        b.invalid.append(
            f"external network {i.external_network!r} not found; set network.externalNetwork "
            "to one of the cloud's external networks"
        )
        return
    gateway = {"network_id": o.external_network_id}
    if o.router is None:
        router_id: Id = b.adopt_or_create(
            Kind.ROUTER, i.router_name, "router", "missing", external_gateway_info=gateway,
            tags=b.tags("router"),
        )
    else:
        router_id = o.router.id
        current = (o.router.get("external_gateway_info") or {}).get("network_id")
        if current != o.external_network_id:
            b.add(Verb.UPDATE, Kind.ROUTER, i.router_name, "external gateway missing or changed",
                  "router", o.router.id, external_gateway_info=gateway)
    if subnet_id is not None and o.router_interface is None:
        b.add(Verb.CREATE, Kind.ROUTER_INTERFACE, i.router_name, "subnet not attached to router",
              "router_interface", router_id=router_id, subnet_id=subnet_id)
