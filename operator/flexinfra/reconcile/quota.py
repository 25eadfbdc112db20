"""Quota pre-checks: refuse a plan the project cannot hold before its first write, so a
shortfall never leaves a half-built site behind.

Nova, Neutron and Cinder say what is used; Octavia only gives limits, so what the project
already has is counted from the tenant inventory (members from the pools' member lists).
Which kind counts against which quota is the adapters' ``quota``; a server asks for its
flavor's cores and RAM too, a volume for its gigabytes.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from flexinfra.cloud.adapters import ADAPTERS
from flexinfra.cloud.gateway import Gateway
from flexinfra.core.errors import CloudError, ErrorCode
from flexinfra.core.kinds import Kind, Verb
from flexinfra.core.plan import Plan

#: kind -> its name in Neutron's quota set / in Octavia's (openstacksdk's attribute names)
NEUTRON = {a.kind: a.quota for a in ADAPTERS.values() if a.service == "network" and a.quota}
OCTAVIA = {
    a.kind: a.quota for a in ADAPTERS.values() if a.service == "load-balancer" and a.quota
}


def check_quota(gateway: Gateway, plan: Plan, observed: object | None = None) -> None:
    """Refuse before the first write when the project's quota cannot hold what we create.

    The four services are asked at once: a first pass waits on this before its first write,
    and a busy cloud answers each in a second or more. A server's flavor is its create's
    ``flavor_id`` (else ``observed.flavor_id``, for callers that plan servers without one).
    """
    creates = Counter(a.kind for a in plan.actions if a.verb is Verb.CREATE)
    flavor_id = next((a.params.get("flavor_id") for a in plan.actions
                      if a.verb is Verb.CREATE and a.kind is Kind.SERVER
                      and a.params.get("flavor_id")), getattr(observed, "flavor_id", None))
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="quota") as pool:
        asked = [
            pool.submit(_nova, gateway, creates, flavor_id),
            pool.submit(_neutron, gateway, creates),
            pool.submit(_octavia, gateway, creates),
            pool.submit(_cinder, gateway, plan, creates),
        ]
        checks = [check for future in asked for check in future.result()]
    short = [
        (what, need, left)
        for what, need, left in checks
        if need and left is not None and need > left
    ]
    if short:
        per_replica = {
            "instances",
            "cores",
            "RAM (MB)",
            "ports",
            "members",
            "volumes",
            "volume gigabytes",
        }
        raise CloudError(
            code=ErrorCode.QUOTA_EXCEEDED,
            message="quota exceeded, nothing was created: "
            + "; ".join(f"{what}: need {need}, {left} left" for what, need, left in short)
            + ". Ask the cloud admin to raise the project's quota"
            + (", or lower spec.replicas" if any(s[0] in per_replica for s in short) else "")
        )


Check = tuple[str, int, int | None]  # (what, needed, left; None: unlimited)


def _free(total: int | None, used: int | None) -> int | None:
    return None if total is None or total < 0 else total - (used or 0)


def _label(kind: Kind) -> str:
    return kind.label + "s"


def _nova(gateway: Gateway, creates: Counter, flavor_id: str | None) -> list[Check]:
    servers = creates[Kind.SERVER]
    if not servers:
        return []
    limits = gateway.compute_limits().absolute
    flavor = gateway.find_flavor(flavor_id) if flavor_id else None
    checks = [("instances", servers, _free(limits.instances, limits.instances_used))]
    if flavor is not None:
        checks += [
            ("cores", servers * flavor.vcpus, _free(limits.total_cores, limits.total_cores_used)),
            ("RAM (MB)", servers * flavor.ram, _free(limits.total_ram, limits.total_ram_used)),
        ]
    return checks


def _neutron(gateway: Gateway, creates: Counter) -> list[Check]:
    if not any(creates[kind] for kind in NEUTRON):
        return []
    try:
        quota = gateway.network_quota()
    except CloudError:
        return []  # a member may not read quotas; the create itself will tell
    checks = []
    for kind, name in NEUTRON.items():
        detail = getattr(quota, name, None)
        if creates[kind] and isinstance(detail, dict) and detail.get("limit", -1) >= 0:
            left = detail["limit"] - detail.get("used", 0) - detail.get("reserved", 0)
            checks.append((_label(kind), creates[kind], left))
    return checks


def _octavia(gateway: Gateway, creates: Counter, max_age: float = 60) -> list[Check]:
    """Limits may come from a read up to a minute old, but only to let a plan through: a
    refusal is always checked against a fresh read (an admin may just have raised them)."""
    if not any(creates[kind] for kind in OCTAVIA):
        return []
    try:
        quota = gateway.load_balancer_quota(max_age=max_age)
    except CloudError:
        return []
    project = getattr(quota, "project_id", None)
    snap = gateway.inventory()  # the listing this pass planned from, unless it aged meanwhile
    used = {
        kind: [
            o for o in snap.of(kind) if project is None or o.get("project_id") in (None, project)
        ]
        for kind in OCTAVIA if kind is not Kind.MEMBER
    }
    used[Kind.MEMBER] = [m for pool in used[Kind.POOL] for m in pool.get("members") or []]
    checks = [
        (_label(kind), creates[kind], _free(getattr(quota, name, None), len(used[kind])))
        for kind, name in OCTAVIA.items()
    ]
    if max_age and any(need and left is not None and need > left for _, need, left in checks):
        return _octavia(gateway, creates, max_age=0)
    return checks


def _cinder(gateway: Gateway, plan: Plan, creates: Counter) -> list[Check]:
    if not creates[Kind.VOLUME]:
        return []
    try:
        quota = gateway.volume_quota()
    except CloudError:
        return []
    usage = getattr(quota, "usage", None) or {}
    reserved = getattr(quota, "reservation", None) or {}
    size = sum(
        int(a.params.get("size") or 0)
        for a in plan.actions
        if a.verb is Verb.CREATE and a.kind is Kind.VOLUME
    )
    return [
        (what, need, _free(getattr(quota, name, None), usage.get(name, 0) + reserved.get(name, 0)))
        for what, name, need in (
            ("volumes", "volumes", creates[Kind.VOLUME]),
            ("volume gigabytes", "gigabytes", size),
        )
    ]
