"""Ordered teardown of everything one owner UID holds, then a tag sweep.

Order (dependencies first): floating IPs -> load balancers (cascade; wait out PENDING_DELETE)
-> servers (wait until gone) -> ports -> router interfaces -> routers -> subnets -> networks
-> security groups -> server groups -> snapshots -> volumes. Each call goes as far as it can
without waiting; ``done`` is True only when a fresh listing finds nothing owned by the UID.
A floating IP tagged ``flexinfra-retain`` is released to a retained tag instead of deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flexinfra.cloud import tags as T
from flexinfra.cloud.gateway import Gateway
from flexinfra.cloud.tags import Owner
from flexinfra.planning.model import CloudObject

#: kinds the sweep must find empty, in teardown order
ORDER = (
    "floating_ip",
    "load_balancer",
    "server",
    "port",
    "router_interface",
    "router",
    "subnet",
    "network",
    "security_group",
    "server_group",
    "snapshot",
    "volume",
)


@dataclass
class TeardownOutcome:
    done: bool
    remaining: list[str] = field(default_factory=list)
    requeue_after: float | None = None
    events: list[tuple[str, str]] = field(default_factory=list)


def teardown_website(owner: Owner, gateway: Gateway) -> TeardownOutcome:
    snap = gateway.inventory(with_snapshots=True, owner_uid=owner.uid)
    owned = snap.owned(owner.uid)
    out = TeardownOutcome(done=False)
    c = gateway.conn

    def gone(kind: str, obj: CloudObject, service: str, fn, **kw) -> None:
        gateway.call(service, kind, "delete", fn, obj.id, missing_ok=True, **kw)
        out.events.append(("Deleted", f"{kind.replace('_', ' ')} {obj.name or obj.id}"))

    # 1. floating IPs
    for fip in owned.get("floating_ip", []):
        if T.RETAIN_TAG in fip.tags:
            gateway.call(
                "network", "floating_ip", "update", c.network.update_ip, fip.id, port_id=None
            )
            gateway.call(
                "network",
                "floating_ip",
                "tag",
                c.network.set_tags,
                c.network.get_ip(fip.id),
                [owner.retained_tag],
            )
            out.events.append(
                (
                    "Retained",
                    f"floating IP {fip.get('floating_ip_address')} kept "
                    "for a re-created site (publicIP.retain)",
                )
            )
        else:
            gone("floating_ip", fip, "network", c.network.delete_ip)
    # 2. load balancers: cascade deletes listeners, pools, members, monitors
    lbs = owned.get("load_balancer", [])
    for lb in lbs:
        if lb.status not in ("PENDING_DELETE", "PENDING_CREATE", "PENDING_UPDATE", "DELETED"):
            gateway.call(
                "load-balancer",
                "load_balancer",
                "delete",
                c.load_balancer.delete_load_balancer,
                lb.id,
                cascade=True,
                missing_ok=True,
            )
            out.events.append(("Deleted", f"load balancer {lb.name}"))
    if [lb for lb in lbs if lb.status != "DELETED"]:
        return _wait(gateway, owner, out, "load balancer(s) " + ", ".join(lb.name for lb in lbs))
    # 3. servers (Nova deletes asynchronously: wait until they are gone)
    servers = owned.get("server", [])
    for server in servers:
        if server.get("task_state") != "deleting" and server.status != "DELETED":
            gone("server", server, "compute", c.compute.delete_server)
    if servers:
        return _wait(gateway, owner, out, "server(s) " + ", ".join(s.name for s in servers))
    # 4. ports we created (router interface ports are removed through the router)
    for port in owned.get("port", []):
        gone("port", port, "network", c.network.delete_port)
    # 5-6. router interfaces, then routers
    for router in owned.get("router", []):
        for port in snap.of("port"):
            if port.get("device_id") == router.id and "router_interface" in (
                port.get("device_owner") or ""
            ):
                gateway.call(
                    "network",
                    "router_interface",
                    "delete",
                    c.network.remove_interface_from_router,
                    router.id,
                    port_id=port.id,
                    missing_ok=True,
                )
                out.events.append(("Deleted", f"router interface {port.id} of {router.name}"))
        gone("router", router, "network", c.network.delete_router)
    # 7-9. subnets, networks, security groups (a 409 here means a port lingers: retried)
    for kind in ("subnet", "network", "security_group"):
        for obj in owned.get(kind, []):
            fn = getattr(c.network, f"delete_{kind}")
            gone(kind, obj, "network", fn)
    # 10. server groups (name carries the UID)
    for group in owned.get("server_group", []):
        gone("server_group", group, "compute", c.compute.delete_server_group)
    # 11-12. snapshots, then volumes once detached
    for snapshot in owned.get("snapshot", []):
        gone("snapshot", snapshot, "block-storage", c.block_storage.delete_snapshot)
    for volume in owned.get("volume", []):
        if volume.status in ("available", "error", "error_restoring", "error_extending"):
            gone("volume", volume, "block-storage", c.block_storage.delete_volume)
    # the sweep: nothing may be left with our tag
    sweep = gateway.inventory(max_age=0, with_snapshots=True).owned(owner.uid)
    left = [f"{kind} {obj.name or obj.id}" for kind in ORDER for obj in sweep.get(kind, [])]
    left += [
        f"{kind} {obj.name or obj.id}"
        for kind, objs in sweep.items()
        if kind not in ORDER
        for obj in objs
    ]
    if left:
        out.remaining = left
        out.requeue_after = 3.0
        gateway.invalidate(owner.uid)
        return out
    out.done = True
    gateway.invalidate(owner.uid)
    return out


def _wait(gateway: Gateway, owner: Owner, out: TeardownOutcome, what: str) -> TeardownOutcome:
    out.remaining = [what]
    out.requeue_after = 3.0
    gateway.invalidate(owner.uid)
    return out
