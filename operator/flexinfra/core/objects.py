"""Observed objects and references to objects not created yet."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flexinfra.core.kinds import Kind


@dataclass(frozen=True)
class CloudObject:
    """One OpenStack object as observed: the few fields every kind has, plus raw ``attrs``."""

    kind: Kind
    id: str
    name: str = ""
    status: str | None = None
    tags: frozenset[str] = frozenset()
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, Kind):
            object.__setattr__(self, "kind", Kind(self.kind))

    def get(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)


@dataclass(frozen=True)
class Ref:
    """A value known only at execution time: the id (or another field) of an object that this
    same plan creates, e.g. ``Ref("network")`` for a subnet created right after its network."""

    key: str
    field: str = "id"
