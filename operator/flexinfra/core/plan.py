"""A plan: the typed actions of one pass, and what the pass waits for or cannot do."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flexinfra.core.kinds import Kind, Verb
from flexinfra.core.objects import CloudObject
from flexinfra.core.reasons import Reason


@dataclass(frozen=True)
class PlannedAction:
    """One step. ``key`` names the object for ``Ref`` resolution (``server:2``, ``pool:80``).

    Strings are accepted for ``verb`` and ``kind`` and turned into their enums, so a typo is
    an error where the action is made, not a silent no-op where it is executed."""

    verb: Verb
    kind: Kind
    name: str
    reason: str
    key: str | None = None
    target_id: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.verb, Verb):
            object.__setattr__(self, "verb", Verb(self.verb))
        if not isinstance(self.kind, Kind):
            object.__setattr__(self, "kind", Kind(self.kind))

    def describe(self) -> str:
        return f"{self.verb} {self.kind} {self.name}: {self.reason}"


@dataclass(frozen=True)
class Problem:
    """Something degraded that does not stop the rest (the Degraded condition)."""

    reason: Reason
    message: str


@dataclass
class Plan:
    actions: list[PlannedAction] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # what we wait for (BUILD, PENDING_*)
    ready_replicas: int = 0
    url: str | None = None
    #: degraded but still serving (the Degraded condition); e.g. a server kept in ERROR
    problems: list[Problem] = field(default_factory=list)
    #: the cloud refuses what the spec asks; the user must act (Ready=False, CloudError)
    blocked: list[str] = field(default_factory=list)
    #: the spec cannot be built whatever the cloud holds (InvalidSpec; nothing is executed)
    invalid: list[str] = field(default_factory=list)
    #: servers are being replaced one at a time (the RollingUpdate reason)
    rolling: bool = False
    #: objects that exist already, by plan key (``load_balancer``, ``pool:80``): the executor
    #: resolves ``Ref``s to them and watches the load balancer they name
    known: dict[str, CloudObject] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return not self.actions and not self.waiting
