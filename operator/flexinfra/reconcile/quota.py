"""Quota pre-checks: refuse a plan the project cannot hold before its first write, so a
shortfall never leaves a half-built site behind."""

from __future__ import annotations

from flexinfra.cloud.errors import CloudError
from flexinfra.cloud.gateway import Gateway
from flexinfra.planning.model import ObservedSite, Plan


def check_quota(gateway: Gateway, plan: Plan, observed: ObservedSite) -> None:
    """Refuse before the first write when the project's quota cannot hold what we create."""
    creates: dict[str, int] = {}
    for action in plan.actions:
        if action.verb == "create":
            creates[action.kind] = creates.get(action.kind, 0) + 1
    shortfalls = []
    servers = creates.get("server", 0)
    if servers:
        limits = gateway.compute_limits().absolute
        flavor = gateway.find_flavor(observed.flavor_id) if observed.flavor_id else None

        def free(total, used):
            return None if total is None or total < 0 else total - (used or 0)

        checks = [("instances", servers, free(limits.instances, limits.instances_used))]
        if flavor is not None:
            checks += [
                (
                    "cores",
                    servers * flavor.vcpus,
                    free(limits.total_cores, limits.total_cores_used),
                ),
                ("RAM (MB)", servers * flavor.ram, free(limits.total_ram, limits.total_ram_used)),
            ]
        for what, need, left in checks:
            if left is not None and need > left:
                shortfalls.append(f"{what}: need {need}, {left} left")
    neutron = {
        k: creates.get(k, 0)
        for k in ("network", "subnet", "router", "port", "security_group", "floating_ip")
    }
    if any(neutron.values()):
        try:
            quota = gateway.network_quota()
        except CloudError:
            quota = None  # a member may not read quotas; the create itself will tell
        if quota is not None:
            names = {
                "floating_ip": "floating_ips",
                "security_group": "security_groups",
                "network": "networks",
                "subnet": "subnets",
                "router": "routers",
                "port": "ports",
            }
            for kind, need in neutron.items():
                detail = getattr(quota, names[kind], None)
                if need and isinstance(detail, dict) and detail.get("limit", -1) >= 0:
                    left = detail["limit"] - detail.get("used", 0) - detail.get("reserved", 0)
                    if need > left:
                        shortfalls.append(f"{kind.replace('_', ' ')}s: need {need}, {left} left")
    if shortfalls:
        raise CloudError(
            "quota exceeded, nothing was created: "
            + "; ".join(shortfalls)
            + ". Ask the cloud admin to raise the project's quota, or lower spec.replicas"
        )
