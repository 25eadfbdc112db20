"""Apply planned actions through the adapters, as parallel as their dependencies allow.

The plan is a sequence; the executor keeps its meaning while overlapping what is
independent (``schedule``):
* creates and adoptions start at once, each after the actions whose objects it refers to
  (``Ref``): the router, the security group and the servers are asked for together;
* actions on kinds that need an ACTIVE load balancer form one lane, in plan order: Octavia
  refuses a change while the LB is PENDING_*, so before each the executor waits (at most
  ``lb_wait`` seconds, on a tenant-wide LB listing shared by every owner) for it to be
  ACTIVE; if it stays busy, the rest of the lane is left for the next pass (the plan is
  recomputed then) and the caller requeues;
* any other verb (delete, update, attach, ...) is a barrier: it starts when everything before
  it has finished, and everything after it waits for it.
A failure stops nothing already started; once all have settled, the first failure in plan
order is raised.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from flexinfra.cloud.adapters import adapter
from flexinfra.cloud.gateway import Gateway
from flexinfra.core.errors import ErrorCode, FlexinfraError, TransientError
from flexinfra.core.kinds import Kind, Verb
from flexinfra.core.objects import CloudObject, Ref
from flexinfra.core.plan import PlannedAction

PARALLEL_VERBS = frozenset({Verb.CREATE, Verb.ADOPT})
#: a create that failed so may have happened (timed out, answered 5xx, connection lost)
UNCERTAIN_CODES = frozenset({ErrorCode.TIMEOUT, ErrorCode.UNREACHABLE, ErrorCode.SERVER_ERROR,
                             ErrorCode.UNEXPECTED})
#: how long a possibly-made object may take to show in a listing (the API timeout)
UNCERTAIN_FOR = 60.0


@dataclass
class Execution:
    done: list[PlannedAction] = field(default_factory=list)
    skipped: list[PlannedAction] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)
    created: dict[str, CloudObject] = field(default_factory=dict)  # key -> what it made
    lb_busy: bool = False


class Skipped(Exception):
    """An action not run because one it depends on was skipped or failed."""


def ref_keys(value: Any) -> set[str]:
    """The keys of the objects a parameter value refers to (``Ref``), however nested."""
    if isinstance(value, Ref):
        return {value.key}
    if isinstance(value, (list, tuple)):
        return set().union(*map(ref_keys, value)) if value else set()
    if isinstance(value, dict):
        return ref_keys(list(value.values()))
    return set()


def in_lb_lane(action: PlannedAction) -> bool:
    return adapter(action.kind).needs_active_lb


def schedule(actions: list[PlannedAction]) -> list[list[int]]:
    """For each action, the indexes of the earlier actions it must wait for. Pure: the
    golden tests read it to show the order is kept."""
    waits: list[list[int]] = []
    by_key: dict[str, int] = {}
    barrier: int | None = None
    lb_lane: int | None = None
    for n, action in enumerate(actions):
        deps = [by_key[k] for k in ref_keys(dict(action.params)) if k in by_key]
        if barrier is not None:
            deps.append(barrier)
        lane = in_lb_lane(action)
        if lane:
            deps += [lb_lane] if lb_lane is not None else []
        elif action.verb not in PARALLEL_VERBS:
            deps = list(range(n))
        waits.append(sorted(set(deps)))
        if action.key:
            by_key[action.key] = n
        if lane:
            lb_lane = n
        elif action.verb not in PARALLEL_VERBS:
            barrier = n
    return waits


class Executor:
    def __init__(
        self,
        gateway: Gateway,
        known: Mapping[str, CloudObject],
        *,
        lb_wait: float = 20.0,
        parallel: int = 6,
    ) -> None:
        self.gw = gateway
        self.known = dict(known)  # key -> CloudObject of what already exists
        self.lb_wait = lb_wait
        self.parallel = parallel
        self.result = Execution()
        self._lock = threading.Lock()
        #: a listing of the load balancer must have started after this to be believed
        self._lb_changed_at = time.monotonic()

    # --- refs ----------------------------------------------------------------------------------
    def resolve(self, value: Any) -> Any:
        if isinstance(value, Ref):
            obj = self.result.created.get(value.key) or self.known.get(value.key)
            if obj is None:
                raise TransientError(f"internal: {value.key} not created yet; will retry",
                                     code=ErrorCode.INTERNAL)
            return obj.id if value.field == "id" else obj.get(value.field)
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        return value

    def run(self, actions: list[PlannedAction]) -> Execution:
        if not actions:
            return self.result
        waits = schedule(actions)
        futures: list[Future] = []
        with ThreadPoolExecutor(
            max_workers=min(self.parallel, len(actions)), thread_name_prefix="executor"
        ) as pool:
            # FIFO start order: an action starts only after every earlier one has started, so
            # waiting on earlier futures from inside the pool cannot deadlock
            for action, deps in zip(actions, waits, strict=True):
                futures.append(pool.submit(self._run_one, action, [futures[d] for d in deps]))
        errors = [f.exception() for f in futures]
        first = next((e for e in errors if e is not None and not isinstance(e, Skipped)), None)
        if first is not None:
            raise first
        # keep what was done in plan order (events read as the plan does)
        order = {id(a): n for n, a in enumerate(actions)}
        self.result.done.sort(key=lambda a: order[id(a)])
        self.result.skipped.sort(key=lambda a: order[id(a)])
        return self.result

    def _run_one(self, action: PlannedAction, deps: list[Future]) -> None:
        for dep in deps:
            if dep.exception() is not None:  # waits for it; a failed or skipped one stops us
                with self._lock:
                    self.result.skipped.append(action)
                raise Skipped(action.describe())
        lane = in_lb_lane(action)
        if lane and (self.result.lb_busy or not self._lb_active()):
            with self._lock:
                self.result.lb_busy = True
                self.result.skipped.append(action)
            raise Skipped(action.describe())
        params = {k: self.resolve(v) for k, v in action.params.items()}
        try:
            obj = self._apply(action, params)
        except FlexinfraError as err:
            if err.code is ErrorCode.NOT_FOUND:
                self.gw.forget_lookups()  # e.g. a flavor re-created: look it up again
                self.gw.invalidate()
            raise
        finally:
            if Kind.LOAD_BALANCER in adapter(action.kind).touches:
                self._lb_changed_at = time.monotonic()  # it goes PENDING_UPDATE now
        with self._lock:
            if obj is not None and action.key:
                self.result.created[action.key] = obj
            self.result.done.append(action)
            self.result.events.append(
                (action.verb.past, f"{action.kind.label} {action.name}: {action.reason}")
            )

    def _apply(self, action: PlannedAction, params: dict[str, Any]) -> CloudObject | None:
        if action.verb is not Verb.CREATE:
            return adapter(action.kind).apply(self.gw, action, params)
        return self._create_once(action, params)

    def _create_once(self, action: PlannedAction, params: dict[str, Any]) -> CloudObject | None:
        """A create whose previous attempt may have happened is not sent again blindly.

        A create that timed out, or failed with 5xx, may still be running in the service
        (Octavia answers a load balancer create once its VIP port exists, which took tens of
        seconds under load): the next pass, listing before it commits, made a second one (the
        campaign made copies in every fault mode with a 5 s API timeout). Such a create is
        remembered by the gateway; the next attempt first looks for the object by its tags,
        uses it if it is there, and waits (up to ``UNCERTAIN_FOR``) instead of creating
        again while it may still appear. Across a restart the memory is lost: the
        duplicate check (``reconcile.duplicates``) is the net under it.
        """
        a = adapter(action.kind)
        key = (str(action.kind), action.name)
        since = self.gw.uncertain_creates.get(key)
        find = a.finder(self.gw, action, params) if since is not None else None
        if since is not None and find is not None:
            made = find()
            if made is not None:
                self.gw.uncertain_creates.pop(key, None)
                return a.to_object(made)
            if time.monotonic() - since < UNCERTAIN_FOR:
                raise TransientError(
                    f"create {action.kind.label} {action.name}: the last attempt may still be "
                    "completing in the cloud; looking for it again before creating",
                    code=ErrorCode.TIMEOUT)
        try:
            obj = a.apply(self.gw, action, params)
        except FlexinfraError as err:
            if err.code in UNCERTAIN_CODES:
                self.gw.uncertain_creates.setdefault(key, time.monotonic())
            raise
        self.gw.uncertain_creates.pop(key, None)
        return obj

    def _lb_active(self) -> bool:
        lb = self.result.created.get("load_balancer") or self.known.get("load_balancer")
        if lb is None:
            return False
        deadline = time.monotonic() + self.lb_wait
        after = self._lb_changed_at
        while True:
            fresh = next((x for x in self.gw.fresh(Kind.LOAD_BALANCER, after) if x.id == lb.id),
                         None)
            if fresh is None:
                return False
            if fresh.status == "ACTIVE":
                return True
            if fresh.status == "ERROR" or time.monotonic() > deadline:
                return False
            after = time.monotonic()
            time.sleep(0.5)
