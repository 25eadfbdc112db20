"""What every concern planner writes into: one pass's plan, built in dependency order.

A planner is a function ``plan_<concern>(builder, intent, observed, ...)`` that adds actions
and returns the ids (or ``Ref``s) that later concerns need, e.g. the subnet the servers
join. A kind's planner calls them in order; the executor overlaps what is independent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flexinfra.core import tags as T
from flexinfra.core.kinds import Kind, Verb
from flexinfra.core.objects import CloudObject, Ref
from flexinfra.core.plan import Plan, PlannedAction


class PlanBuilder:
    def __init__(self, owner_uid: str, untagged: Mapping[str, CloudObject] | None = None) -> None:
        self.owner_uid = owner_uid
        #: ``"<kind>:<name>"`` -> an object with our name but no owner tag (to adopt)
        self.untagged = untagged or {}
        self.plan = Plan()

    @property
    def invalid(self) -> list[str]:
        return self.plan.invalid

    def add(
        self,
        verb: Verb | str,
        kind: Kind | str,
        name: str,
        reason: str,
        key: str | None = None,
        target_id: str | None = None,
        **params: Any,
    ) -> None:
        self.plan.actions.append(PlannedAction(verb, kind, name, reason, key, target_id, params))

    def tags(self, role: str, **extra: str | int) -> list[str]:
        return T.object_tags(T.Owner(self.owner_uid, "", ""), role, **extra)

    def orphan(self, kind: Kind | str, name: str) -> CloudObject | None:
        return self.untagged.get(f"{kind}:{name}")

    def adopt_or_create(
        self, kind: Kind, name: str, key: str, reason: str, **params: Any
    ) -> str | Ref:
        """Create ``name`` unless an untagged object of that name exists: then tag (adopt) it."""
        orphan = self.orphan(kind, name)
        if orphan is not None:
            self.add(Verb.ADOPT, kind, name, "found untagged with our name; tagging it", key,
                     orphan.id, tags=params.get("tags"))
            return orphan.id
        self.add(Verb.CREATE, kind, name, reason, key, **params)
        return Ref(key)

    def know(self, key: str, obj: CloudObject | None) -> None:
        """``obj`` exists: a ``Ref(key)`` resolves to it, and the executor watches it (the
        load balancer)."""
        if obj is not None:
            self.plan.known[key] = obj
