"""The WebSite reconcile core: observe -> plan (pure) -> execute. No kopf in here.

``reconcile_website`` does one bounded pass and says when to come back (``requeue_after``)
while the cloud is busy (servers in BUILD, a load balancer PENDING_*). Nothing is created
until the whole plan validated: spec problems raise ``InvalidSpec`` and a quota shortfall
raises ``CloudError`` before the first write.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flexinfra.api.conditions import Reason
from flexinfra.api.website import FloatingIPStatus, ServerStatus, WebSiteResources
from flexinfra.cloud import tags as T
from flexinfra.cloud.errors import CloudError, FlexinfraError, InvalidSpec
from flexinfra.cloud.gateway import Gateway
from flexinfra.cloud.tags import Owner
from flexinfra.metrics import RECONCILE_PHASE_SECONDS as PHASE
from flexinfra.planning import website as P
from flexinfra.planning.intent import site_intent, spec_problems
from flexinfra.planning.model import ObservedSite, Plan, PlannedAction, SiteIntent
from flexinfra.reconcile.executor import Executor
from flexinfra.reconcile.observe import observe_site
from flexinfra.reconcile.quota import check_quota
from flexinfra.reconcile.teardown import TeardownOutcome, teardown_website

__all__ = [
    "Outcome",
    "Owner",
    "TeardownOutcome",
    "plan_website",
    "reconcile_website",
    "teardown_website",
]
log = logging.getLogger(__name__)

#: come back this soon while the cloud works (BUILD, PENDING_*): a pass that only waits
#: costs a few list calls shared by every waiting site of the tenant
BUSY_REQUEUE = 1.0


@dataclass
class Outcome:
    ready: bool
    reason: Reason
    message: str
    resources: WebSiteResources
    url: str | None = None
    ready_replicas: int = 0
    requeue_after: float | None = None
    events: list[tuple[str, str]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)


def _observe_and_plan(
    owner: Owner, spec, template, gateway: Gateway, max_age: float | None
) -> tuple[SiteIntent, ObservedSite, Plan]:
    if template is None:
        raise InvalidSpec(
            f"SiteTemplate {spec.template!r} not found: create it or fix spec.template"
        )
    intent = site_intent(owner, spec, template)
    problems = spec_problems(intent)
    if problems:
        raise InvalidSpec("; ".join(problems))
    snap = gateway.inventory(max_age=max_age, owner_uid=owner.uid)
    observed = observe_site(gateway, snap, intent)
    plan, invalid = P.plan_site(intent, observed)
    if invalid:
        raise InvalidSpec("; ".join(invalid))
    return intent, observed, plan


def plan_website(owner: Owner, spec, template, gateway: Gateway) -> list[PlannedAction]:
    """What one pass would do now, without changing anything (``flexinfra plan``)."""
    _, _, plan = _observe_and_plan(owner, spec, template, gateway, max_age=0)
    return plan.actions


def reconcile_website(owner: Owner, spec, template, gateway: Gateway) -> Outcome:
    with PHASE.labels("WebSite", "observe").time():
        intent, observed, plan = _observe_and_plan(owner, spec, template, gateway, max_age=None)
    if plan.actions:
        with PHASE.labels("WebSite", "quota").time():
            check_quota(gateway, plan, observed)
    executor = Executor(gateway, _known(observed))
    try:
        with PHASE.labels("WebSite", "execute").time():
            execution = executor.run(plan.actions)
    except Exception as err:
        # some writes may have happened (or a lost response may hide one): never plan the
        # next pass from the old snapshot, or the same objects would be created twice
        gateway.invalidate(owner.uid)
        _log_steps(owner, executor.result.events)
        if isinstance(err, FlexinfraError):
            err.events = list(executor.result.events)
        raise
    _log_steps(owner, execution.events)
    if plan.blocked:
        gateway.invalidate(owner.uid)
        raise CloudError("; ".join(plan.blocked))
    busy = bool(plan.actions or plan.waiting or execution.lb_busy)
    if busy:
        # what we changed, and what moves by itself while we wait (servers building, the
        # LB PENDING_*), must be listed again before the next pass; the rest need not be
        gateway.invalidate(owner.uid, kinds_to_relist(execution.done))
    resources = _resources(observed, execution.created)
    if not busy:
        message = f"{plan.ready_replicas}/{intent.replicas} servers serving"
        message += f" at {plan.url}" if plan.url else ""
        return Outcome(True, Reason.RECONCILED, message, resources, plan.url, plan.ready_replicas)
    doing = [a.describe() for a in execution.done]
    parts = []
    if doing:
        parts.append(
            f"{len(doing)} change(s) made: "
            + "; ".join(doing[:4])
            + ("; ..." if len(doing) > 4 else "")
        )
    if plan.waiting:
        parts.append("waiting for " + "; ".join(plan.waiting[:4]))
    if execution.skipped:
        parts.append(f"{len(execution.skipped)} load balancer change(s) wait for it to be ACTIVE")
    reason = (
        Reason.ROLLING_UPDATE if any("replacing" in w for w in plan.waiting) else Reason.PROGRESSING
    )
    return Outcome(
        ready=False,
        reason=reason,
        message=". ".join(parts) or "converging",
        resources=resources,
        url=plan.url,
        ready_replicas=plan.ready_replicas,
        requeue_after=BUSY_REQUEUE,
        events=execution.events,
        actions=doing,
    )


#: what an action changes, directly or as a side effect, by the kind of object it acts on
TOUCHES: dict[str, frozenset[str]] = {
    "network": frozenset({"network", "subnet", "port"}),
    "subnet": frozenset({"subnet", "network", "port"}),  # a DHCP port may come with it
    "router": frozenset({"router", "port"}),
    "router_interface": frozenset({"router", "port", "subnet"}),
    "security_group": frozenset({"security_group"}),
    "security_group_rule": frozenset({"security_group"}),
    "port": frozenset({"port"}),
    "floating_ip": frozenset({"floating_ip", "port"}),
    "server_group": frozenset({"server_group"}),
    "server": frozenset({"server", "port", "server_group", "volume"}),
    "volume": frozenset({"volume", "server"}),
    "load_balancer": frozenset(
        {"load_balancer", "listener", "pool", "health_monitor", "port", "floating_ip"}
    ),
    "listener": frozenset({"load_balancer", "listener", "pool"}),
    "pool": frozenset({"load_balancer", "listener", "pool", "health_monitor"}),
    "health_monitor": frozenset({"load_balancer", "pool", "health_monitor"}),
    "member": frozenset({"load_balancer", "pool"}),
}


def kinds_to_relist(done: list[PlannedAction]) -> frozenset[str] | None:
    """The kinds the next pass must see listed anew: what moves by itself while we wait,
    plus what this pass's actions changed. None (everything) for an action not mapped.

    After a listener is created, say, the networks, ports and security groups of the tenant
    need not be listed again: on a 50-site tenant that is most of the listing cost.
    """
    kinds = set(Gateway.WAITING_KINDS)
    for action in done:
        touched = TOUCHES.get(action.kind)
        if touched is None:
            return None
        kinds |= touched
    return frozenset(kinds)


def _log_steps(owner: Owner, events: list[tuple[str, str]]) -> None:
    for reason, message in events:
        log.info("%s/%s: %s %s", owner.namespace, owner.name, reason, message)


def _known(o: ObservedSite) -> dict:
    known: dict = {}
    for key, obj in (
        ("network", o.network or o.shared_network),
        ("subnet", o.subnet or o.shared_subnet),
        ("router", o.router),
        ("security_group", o.security_group),
        ("load_balancer", o.load_balancer),
        ("floating_ip", o.floating_ip),
    ):
        if obj is not None:
            known[key] = obj
    for index, port in o.ports.items():
        known[f"port:{index}"] = port
    for port, obj in o.listeners.items():
        known[f"listener:{port}"] = obj
    for port, obj in o.pools.items():
        known[f"pool:{port}"] = obj
    return known


def _resources(o: ObservedSite, created: dict) -> WebSiteResources:
    def pick(key, obj):
        new = created.get(key)
        return new.id if new is not None else (obj.id if obj is not None else None)

    group = created.get("server_group") or next(iter(o.server_groups), None)
    servers = []
    for view in P.server_views(o):
        volume = o.volumes.get(view.index)
        servers.append(
            ServerStatus(
                name=view.obj.name,
                id=view.obj.id,
                availability_zone=view.az,
                address=view.address,
                status=view.status,
                template_hash=view.template_hash,
                volume=volume.id if volume else None,
            )
        )
    for key, obj in created.items():
        if key.startswith("server:"):
            servers.append(
                ServerStatus(
                    name=obj.name,
                    id=obj.id,
                    status=obj.status or "BUILD",
                    template_hash=T.tag_value(obj.tags, T.TEMPLATE_PREFIX),
                )
            )
    fip = created.get("floating_ip") or o.floating_ip
    return WebSiteResources(
        network=pick("network", o.network or o.shared_network),
        subnet=pick("subnet", o.subnet or o.shared_subnet),
        router=pick("router", o.router),
        security_group=pick("security_group", o.security_group),
        server_group=group.id if group is not None else None,
        servers=servers,
        load_balancer=pick("load_balancer", o.load_balancer),
        listeners={str(p): obj.id for p, obj in o.listeners.items()},
        pools={str(p): obj.id for p, obj in o.pools.items()},
        floating_ip=FloatingIPStatus(id=fip.id, address=fip.get("floating_ip_address"))
        if fip is not None
        else None,
    )
