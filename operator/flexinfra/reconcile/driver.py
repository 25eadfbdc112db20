"""The generic driver: one bounded reconcile pass for any kind built on OpenStack.

A kind (``kinds/<kind>.py``) supplies a ``CloudKind``: its intent, a pure projection of the
tenant snapshot for its owner, the reads that are not in the snapshot (lookups), its planner,
its status and, optionally, steps that are not OpenStack objects. The driver does the rest,
the same way for every kind::

    intent(spec) -> inventory (shared per tenant) -> project (pure) -> lookups (cached reads)
      -> plan (pure) -> InvalidSpec? -> quota pre-check -> execute -> blocked? -> busy?
      -> after-cloud steps (once the cloud part converged) -> Outcome

Nothing is created until the whole plan validated: spec problems raise ``InvalidSpec`` and a
quota shortfall raises ``CloudError`` before the first write. A pass never waits on the cloud
beyond the executor's bounded load balancer wait; it says when to come back instead.

**Steps that are not OpenStack objects** (``CloudKind.steps``): a GaleraCluster calls an
HTTPS agent on its servers and writes Kubernetes Secrets once its servers and load balancer
are built. Each step is a function ``step(Converged) -> StepResult`` run in order, on every
pass whose cloud plan converged (nothing to do, nothing to wait for); the first that is not
done makes the pass "progressing" with its message and requeue, and the later steps wait.
Steps must be idempotent (they run again on every drift check). What such a step learns
that the *cloud* plan depends on (e.g. which node is the writer, hence which load balancer
member is not ``backup``) belongs in ``lookups`` instead, which run before planning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from flexinfra.api.conditions import Reason
from flexinfra.cloud.adapters import WAITING_KINDS, adapter
from flexinfra.cloud.gateway import Gateway, Snapshot
from flexinfra.core.errors import CloudError, ErrorCode, FlexinfraError, InvalidSpec
from flexinfra.core.kinds import Kind
from flexinfra.core.plan import Plan, PlannedAction, Problem
from flexinfra.core.tags import Owner
from flexinfra.metrics import RECONCILE_PHASE_SECONDS as PHASE
from flexinfra.reconcile import duplicates, guard
from flexinfra.reconcile.executor import Execution, Executor
from flexinfra.reconcile.outcome import Outcome
from flexinfra.reconcile.quota import check_quota

log = logging.getLogger(__name__)

#: come back this soon while the cloud works (BUILD, PENDING_*): a pass that only waits
#: costs a few list calls shared by every waiting owner of the tenant
BUSY_REQUEUE = 1.0
#: OpenStack's limit on names (Nova, Neutron, Octavia, Cinder)
MAX_NAME = 255

I = TypeVar("I")  # noqa: E741 - the kind's intent
O = TypeVar("O")  # noqa: E741 - the kind's observation


@dataclass
class KindStatus:
    """What a kind reports about its cloud part after a pass."""

    resources: Any = None
    url: str | None = None
    ready_replicas: int | None = None
    #: the Ready condition's message when converged, e.g. "2/2 servers serving at ..."
    ready_message: str = "reconciled"


@dataclass
class Converged(Generic[I, O]):
    """What an after-cloud step sees: the cloud part is built and idle this pass."""

    owner: Owner
    intent: I
    observed: O
    status: KindStatus
    #: for a step's own cloud reads (a server's state, a reboot); its agents are its own
    gateway: Gateway | None = None


@dataclass
class StepResult:
    done: bool
    message: str = ""
    reason: Reason | str | None = None  # while not done; default Progressing
    requeue_after: float | None = None  # while not done; default BUSY_REQUEUE
    events: list[tuple[str, str]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # the Degraded condition
    status: dict[str, Any] = field(default_factory=dict)  # more status fields (camelCase)
    #: overrides of the cloud part's figures once this step has looked (e.g. only servers
    #: whose load balancer members are ONLINE count as serving)
    ready_replicas: int | None = None
    ready_message: str | None = None


Step = Callable[[Converged], StepResult]


class CloudKind(Generic[I, O]):
    """What a kind supplies to the driver. Override ``intent``, ``project``, ``plan`` and
    ``status``; ``lookups`` and ``steps`` are optional."""

    #: the Kubernetes kind, for metrics and logs
    name: str = ""
    #: steps after the cloud part converged (see the module docstring)
    steps: Sequence[Step] = ()

    def intent(self, owner: Owner, spec: Any, **inputs: Any) -> I:
        """The desired state from the spec (and whatever the handler passes, e.g. a
        template). Pure; raise ``InvalidSpec`` for what no cloud could build."""
        raise NotImplementedError

    def project(self, snap: Snapshot, intent: I) -> O:
        """The owner's objects in the tenant snapshot, keyed for planning. Pure."""
        raise NotImplementedError

    def lookups(self, gateway: Gateway, intent: I, observed: O) -> None:
        """Fill in what the snapshot does not hold (images, flavors, zones, pool members,
        an agent's view): cached reads, the only I/O before planning."""

    def plan(self, intent: I, observed: O) -> Plan:
        """One pass's plan. Pure; ``plan.invalid`` non-empty means InvalidSpec."""
        raise NotImplementedError

    def status(self, intent: I, observed: O, plan: Plan, execution: Execution) -> KindStatus:
        raise NotImplementedError


def observe_and_plan(
    kind: CloudKind, owner: Owner, spec: Any, gateway: Gateway, *, max_age: float | None,
    events: list[tuple[str, str]] | None = None, **inputs: Any,
) -> tuple[Any, Any, Plan]:
    """``events``: given, the pass removes duplicates (a create that ran twice) and says so
    there; ``flexinfra plan`` leaves them (it changes nothing)."""
    intent = kind.intent(owner, spec, **inputs)
    snap = gateway.inventory(max_age=max_age, owner_uid=owner.uid)
    extras = duplicates.find_duplicates(snap.owned(owner.uid))
    if extras and events is not None:
        guard.before_write(gateway)
        events += duplicates.remove(gateway, extras)
        gateway.invalidate(owner.uid, {d.extra.kind for d in extras})
        snap = snap.without({d.extra.id for d in extras})
    observed = kind.project(snap, intent)
    kind.lookups(gateway, intent, observed)
    plan = kind.plan(intent, observed)
    too_long = sorted({a.name for a in plan.actions if len(a.name) > MAX_NAME})
    if too_long:  # a kind should refuse them from its intent; this is the net under it
        plan.invalid.append(f"object name(s) longer than {MAX_NAME} characters, which "
                            f"OpenStack refuses: {too_long[0][:60]}...; use a shorter name")
    if plan.invalid:
        raise InvalidSpec("; ".join(plan.invalid))
    return intent, observed, plan


def plan_only(kind: CloudKind, owner: Owner, spec: Any, gateway: Gateway,
              **inputs: Any) -> list[PlannedAction]:
    """What one pass would do now, from a fresh inventory, changing nothing."""
    return observe_and_plan(kind, owner, spec, gateway, max_age=0, **inputs)[2].actions


def reconcile(kind: CloudKind, owner: Owner, spec: Any, gateway: Gateway,
              **inputs: Any) -> Outcome:
    removed: list[tuple[str, str]] = []
    try:
        with PHASE.labels(kind.name, "observe").time():
            intent, observed, plan = observe_and_plan(kind, owner, spec, gateway, max_age=None,
                                                      events=removed, **inputs)
    except FlexinfraError as err:
        err.events = removed + err.events
        raise
    if plan.actions:
        with PHASE.labels(kind.name, "quota").time():
            check_quota(gateway, plan)
        guard.before_write(gateway)
    executor = Executor(gateway, plan.known)
    executor.result.events += removed
    try:
        with PHASE.labels(kind.name, "execute").time():
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
        raise CloudError("; ".join(plan.blocked), code=ErrorCode.BLOCKED, problems=plan.problems)
    busy = bool(plan.actions or plan.waiting or execution.lb_busy or removed)
    if busy:
        # what we changed, and what moves by itself while we wait (servers building, the
        # LB PENDING_*), must be listed again before the next pass; the rest need not be
        gateway.invalidate(owner.uid, relist_after(execution.done))
    status = kind.status(intent, observed, plan, execution)
    if busy:
        return _progress(plan, execution, status)
    out = _after_cloud(kind, Converged(owner, intent, observed, status, gateway), plan)
    if not out.ready:
        # a step waits on the cloud too (health checks, an agent's node): its next pass
        # must see what moves by itself listed anew, not a 30 s old snapshot
        gateway.invalidate(owner.uid, WAITING_KINDS)
    return out


def _progress(plan: Plan, execution: Execution, status: KindStatus) -> Outcome:
    doing = [a.describe() for a in execution.done]
    parts = []
    if doing:
        parts.append(f"{len(doing)} change(s) made: " + "; ".join(doing[:4])
                     + ("; ..." if len(doing) > 4 else ""))
    if plan.waiting:
        parts.append("waiting for " + "; ".join(plan.waiting[:4]))
    if execution.skipped:
        parts.append(f"{len(execution.skipped)} load balancer change(s) wait for it to be ACTIVE")
    return Outcome(
        ready=False,
        reason=Reason.ROLLING_UPDATE if plan.rolling else Reason.PROGRESSING,
        message=". ".join(parts) or "converging",
        resources=status.resources,
        url=status.url,
        ready_replicas=status.ready_replicas,
        requeue_after=BUSY_REQUEUE,
        events=execution.events,
        actions=doing,
        problems=list(plan.problems),
    )


def _after_cloud(kind: CloudKind, ctx: Converged, plan: Plan) -> Outcome:
    status = ctx.status
    out = Outcome(True, Reason.RECONCILED, status.ready_message, status.resources, status.url,
                  status.ready_replicas, problems=list(plan.problems))
    for step in kind.steps:
        result = step(ctx)
        out.events += result.events
        out.problems += result.problems
        out.status.update(result.status)
        if result.ready_replicas is not None:
            out.ready_replicas = result.ready_replicas
        if result.ready_message is not None:
            out.message = result.ready_message
        if not result.done:
            out.ready = False
            out.reason = result.reason or Reason.PROGRESSING
            out.message = result.message or "converging"
            out.requeue_after = result.requeue_after or BUSY_REQUEUE
            break
    return out


def relist_after(done: Iterable[PlannedAction]) -> frozenset[Kind]:
    """The kinds the next pass must see listed anew: what moves by itself while we wait,
    plus what this pass's actions changed (each adapter's ``touches``).

    After a listener is created, say, the networks, ports and security groups of the tenant
    need not be listed again: on a 50-site tenant that is most of the listing cost.
    """
    kinds = set(WAITING_KINDS)
    for action in done:
        kinds |= adapter(action.kind).touches
    return frozenset(kinds)


def _log_steps(owner: Owner, events: list[tuple[str, str]]) -> None:
    for reason, message in events:
        log.info("%s/%s: %s %s", owner.namespace, owner.name, reason, message)
