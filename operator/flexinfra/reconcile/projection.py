"""Pure helpers to project a tenant snapshot onto one owner, by concern, for any kind.

A kind's ``project`` picks what it needs from here and assembles its own observation. They
read only the snapshot; reads that are not in it (pool members, images, flavors) are the
kind's ``lookups``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from flexinfra.cloud.adapters import adapter
from flexinfra.cloud.gateway import Snapshot
from flexinfra.core import tags as T
from flexinfra.core.kinds import Kind
from flexinfra.core.objects import CloudObject
from flexinfra.planning.load_balancer import LoadBalancerObserved
from flexinfra.planning.network import NetworkIntent, NetworkObserved

Owned = Mapping[Kind, list[CloudObject]]


def one(owned: Owned, kind: Kind) -> CloudObject | None:
    return next(iter(owned.get(kind, [])), None)


def index_of(obj: CloudObject) -> int | None:
    value = T.tag_value(obj.tags, T.INDEX_PREFIX)
    return int(value) if value and value.isdigit() else None


def by_index(objects: list[CloudObject]) -> dict[int, CloudObject]:
    """Ports and volumes by the index of the server they serve."""
    found = {}
    for obj in objects:
        index = index_of(obj)
        if index is not None:
            found[index] = obj
    return found


def listener_port(obj: CloudObject) -> int | None:
    value = T.tag_value(obj.tags, T.PORT_PREFIX)
    if value and value.isdigit():
        return int(value)
    port = obj.get("protocol_port")
    return int(port) if port else None


def orphans(snap: Snapshot, owned: Owned, names: Mapping[Kind, str]) -> dict[str, CloudObject]:
    """Objects with our names and no owner tag (a create whose tagging failed), for each
    ``kind: name`` the owner has none of, by ``"<kind>:<name>"``: adopted, not duplicated."""
    found: dict[str, CloudObject] = {}
    for kind, name in names.items():
        if one(owned, kind) is not None:
            continue
        is_orphan = adapter(kind).is_orphan
        candidates = [obj for obj in snap.of(kind) if is_orphan(obj, name)]
        if len(candidates) == 1:  # two: whose? neither is taken (a new one is made)
            found[f"{kind}:{name}"] = candidates[0]
    return found


def port_orphans(snap: Snapshot, name_prefix: str) -> dict[str, CloudObject]:
    """Untagged ports named like the fleet's servers (``<prefix>-<role>-``), any index."""
    is_orphan = adapter(Kind.PORT).is_orphan
    ports = [p for p in snap.of(Kind.PORT)
             if p.name.startswith(name_prefix) and is_orphan(p, p.name)]
    names = [p.name for p in ports]
    return {f"port:{p.name}": p for p in ports if names.count(p.name) == 1}


def attached_port_orphans(snap: Snapshot, owned: Owned, name_prefix: str) -> dict[int, CloudObject]:
    """Untagged ports named after one of the owner's servers and attached to it, by the
    server's index: a create whose tagging call was lost (a crash between the two), whose
    port a server then took before a pass saw it. No longer free, so not an orphan to adopt
    for a new server; still ours, to tag (and to delete at teardown)."""
    servers = {s.id: s for s in owned.get(Kind.SERVER, [])}
    found = {}
    for port in snap.of(Kind.PORT):
        server = servers.get(port.get("device_id") or "")
        if (server is None or T.has_owner(port.tags) or port.name != server.name
                or not port.name.startswith(name_prefix)):
            continue
        index = index_of(server)
        if index is not None:
            found[index] = port
    return found


def find_network(snap: Snapshot, name_or_id: str, external: bool = False) -> CloudObject | None:
    for net in snap.of(Kind.NETWORK):
        if name_or_id in (net.id, net.name) and (not external or net.get("is_router_external")):
            return net
    return None


def project_network(
    snap: Snapshot, owned: Owned, i: NetworkIntent, untagged: Mapping[str, CloudObject]
) -> NetworkObserved:
    """The owner's network, subnet, router and its interface, and the references the spec
    names (external network, an existing network, subnets the CIDR would overlap)."""
    o = NetworkObserved(one(owned, Kind.NETWORK), one(owned, Kind.SUBNET),
                        one(owned, Kind.ROUTER))
    o.attached_to = frozenset(
        [p.get("network_id") for p in owned.get(Kind.PORT, []) if p.get("network_id")]
        + [lb.get("vip_network_id") for lb in owned.get(Kind.LOAD_BALANCER, [])
           if lb.get("vip_network_id")])
    if o.subnet is not None and o.router is not None:
        o.router_interface = next(
            (p for p in snap.of(Kind.PORT)
             if p.get("device_id") == o.router.id
             and any(ip.get("subnet_id") == o.subnet.id for ip in p.get("fixed_ips") or [])),
            None,
        )
    ext = find_network(snap, i.external_network, external=True)
    o.external_network_id = ext.id if ext else None
    if i.existing_network:
        o.shared_network = find_network(snap, i.existing_network)
        if o.shared_network is not None:
            o.shared_subnet = next(
                (s for s in snap.of(Kind.SUBNET)
                 if s.get("network_id") == o.shared_network.id and s.get("ip_version") == 4),
                None,
            )
    if i.cidr and o.subnet is None:
        mine = ipaddress.ip_network(i.cidr, strict=False)
        o.overlapping_subnets = sorted(
            f"{s.name or s.id} ({s.get('cidr')})"
            for s in snap.of(Kind.SUBNET)
            if f"subnet:{s.name}" not in untagged  # ours, tags not visible yet: adopted
            and s.get("cidr")
            and ipaddress.ip_network(s.get("cidr"), strict=False).version == 4
            and ipaddress.ip_network(s.get("cidr"), strict=False).overlaps(mine)
        )
    return o


def project_load_balancer(owned: Owned) -> LoadBalancerObserved:
    """The owner's load balancer and, by listener port, the children attached to it
    (members: a lookup, see ``Gateway.members``)."""
    o = LoadBalancerObserved(next(
        (lb for lb in owned.get(Kind.LOAD_BALANCER, []) if lb.status != "DELETED"), None
    ))
    lb_id = o.load_balancer.id if o.load_balancer else None
    for listener in owned.get(Kind.LISTENER, []):
        if any(lb.get("id") == lb_id for lb in listener.get("load_balancers") or []):
            o.listeners[int(listener.get("protocol_port"))] = listener
    for pool in owned.get(Kind.POOL, []):
        port = listener_port(pool)
        if (port is not None and pool.get("loadbalancers")
                and any(lb.get("id") == lb_id for lb in pool.get("loadbalancers"))):
            o.pools[port] = pool
    pool_ports = {p.id: port for port, p in o.pools.items()}
    for hm in owned.get(Kind.HEALTH_MONITOR, []):
        for pool in hm.get("pools") or []:
            if pool.get("id") in pool_ports:
                o.health_monitors[pool_ports[pool["id"]]] = hm
    return o


def retained_ip(snap: Snapshot, retained_tag: str) -> CloudObject | None:
    """A floating IP released by a deleted owner of the same namespace and name."""
    return next((f for f in snap.of(Kind.FLOATING_IP)
                 if retained_tag and retained_tag in f.tags), None)


def floating_ip_on(snap: Snapshot, port_id: str | None, owned_ids: set[str]) -> CloudObject | None:
    """A floating IP that is not the owner's already on ``port_id`` (the VIP)."""
    if not port_id:
        return None
    return next((f for f in snap.of(Kind.FLOATING_IP)
                 if f.get("port_id") == port_id and f.id not in owned_ids), None)
