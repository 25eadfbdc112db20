"""Assemble one site's ``ObservedSite`` from the tenant snapshot (plus a few cached lookups)."""

from __future__ import annotations

import ipaddress

from flexinfra.cloud import tags as T
from flexinfra.cloud.gateway import Gateway, Snapshot
from flexinfra.planning import website as P
from flexinfra.planning.model import CloudObject, ObservedSite, SiteIntent


def _index(obj: CloudObject) -> int | None:
    value = T.tag_value(obj.tags, T.INDEX_PREFIX)
    return int(value) if value and value.isdigit() else None


def _port_of(obj: CloudObject) -> int | None:
    value = T.tag_value(obj.tags, "flexinfra-port:")
    if value and value.isdigit():
        return int(value)
    port = obj.get("protocol_port")
    return int(port) if port else None


def observe_site(
    gateway: Gateway, snap: Snapshot, intent: SiteIntent, *, lookups: bool = True
) -> ObservedSite:
    uid = intent.owner_uid
    owned = snap.owned(uid)
    obs = ObservedSite()
    names = P.names(intent.prefix)

    def one(kind: str) -> CloudObject | None:
        return next(iter(owned.get(kind, [])), None)

    obs.network = one("network")
    obs.subnet = one("subnet")
    obs.router = one("router")
    obs.security_group = one("security_group")
    obs.load_balancer = next(
        (lb for lb in owned.get("load_balancer", []) if lb.status != "DELETED"), None
    )
    obs.server_groups = owned.get("server_group", [])
    obs.servers = [s for s in owned.get("server", []) if s.status != "DELETED"]
    for port in owned.get("port", []):
        index = _index(port)
        if index is not None:
            obs.ports[index] = port
    for volume in owned.get("volume", []):
        index = _index(volume)
        if index is not None:
            obs.volumes[index] = volume
    lb_id = obs.load_balancer.id if obs.load_balancer else None
    for listener in owned.get("listener", []):
        if any(lb.get("id") == lb_id for lb in listener.get("load_balancers") or []):
            obs.listeners[int(listener.get("protocol_port"))] = listener
    for pool in owned.get("pool", []):
        port = _port_of(pool)
        if (
            port is not None
            and pool.get("loadbalancers")
            and any(lb.get("id") == lb_id for lb in pool.get("loadbalancers"))
        ):
            obs.pools[port] = pool
            obs.members[port] = gateway.members(pool)
    pool_ids = {p.id: port for port, p in obs.pools.items()}
    for hm in owned.get("health_monitor", []):
        for pool in hm.get("pools") or []:
            if pool.get("id") in pool_ids:
                obs.health_monitors[pool_ids[pool["id"]]] = hm
    obs.floating_ip = one("floating_ip")
    if obs.floating_ip is None:
        obs.retained_ip = next(
            (
                f
                for f in snap.of("floating_ip")
                if intent.retained_tag and intent.retained_tag in f.tags
            ),
            None,
        )
    if obs.subnet is not None and obs.router is not None:
        obs.router_interface = next(
            (
                p
                for p in snap.of("port")
                if p.get("device_id") == obs.router.id
                and any(ip.get("subnet_id") == obs.subnet.id for ip in p.get("fixed_ips") or [])
            ),
            None,
        )
    # untagged objects with our names: a create whose tagging failed, adopt rather than duplicate
    for kind in ("network", "subnet", "router", "security_group", "load_balancer"):
        if one(kind) is None:
            for obj in snap.of(kind):
                if obj.name == names[kind] and not any(
                    t.startswith(T.OWNER_PREFIX) for t in obj.tags
                ):
                    obs.untagged[f"{kind}:{obj.name}"] = obj
    if obs.floating_ip is None:  # floating IPs have no name: ours carry it as description
        for obj in snap.of("floating_ip"):
            if obj.get("description") == names["floating_ip"] and not any(
                t.startswith(T.OWNER_PREFIX) for t in obj.tags
            ):
                obs.untagged[f"floating_ip:{names['floating_ip']}"] = obj
    for obj in snap.of("port"):
        if (
            obj.name.startswith(intent.prefix + "-web-")
            and not obj.tags
            and not obj.get("device_owner")
        ):
            obs.untagged[f"port:{obj.name}"] = obj
    # references
    ext = _find_network(snap, intent.external_network, external=True)
    obs.external_network_id = ext.id if ext else None
    if intent.existing_network:
        obs.shared_network = _find_network(snap, intent.existing_network)
        if obs.shared_network is not None:
            obs.shared_subnet = next(
                (
                    s
                    for s in snap.of("subnet")
                    if s.get("network_id") == obs.shared_network.id and s.get("ip_version") == 4
                ),
                None,
            )
    if intent.cidr and obs.subnet is None:
        mine = ipaddress.ip_network(intent.cidr, strict=False)
        obs.overlapping_subnets = sorted(
            f"{s.name or s.id} ({s.get('cidr')})"
            for s in snap.of("subnet")
            if f"subnet:{s.name}" not in obs.untagged  # ours, tags not visible yet: adopted
            and s.get("cidr")
            and ipaddress.ip_network(s.get("cidr"), strict=False).version == 4
            and ipaddress.ip_network(s.get("cidr"), strict=False).overlaps(mine)
        )
    if lookups:
        obs.image_id = gateway.find_image_id(intent.image)
        flavor = gateway.find_flavor(intent.flavor)
        obs.flavor_id = flavor.id if flavor is not None else None
        if intent.availability_zones:
            obs.available_zones = gateway.availability_zones()
    return obs


def _find_network(snap: Snapshot, name_or_id: str, external: bool = False) -> CloudObject | None:
    for net in snap.of("network"):
        if name_or_id in (net.id, net.name) and (not external or net.get("is_router_external")):
            return net
    return None
