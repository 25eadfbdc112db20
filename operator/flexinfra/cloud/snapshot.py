"""One tenant-wide view of the cloud, as the inventory lists it."""

from __future__ import annotations

from dataclasses import dataclass, field

from flexinfra.cloud.adapters import adapter
from flexinfra.core.kinds import Kind
from flexinfra.core.objects import CloudObject

NEVER = float("-inf")  # the listing time of what was never listed


@dataclass
class Snapshot:
    """One tenant-wide view: kind -> objects, each kind with the time its listing started."""

    objects: dict[Kind, list[CloudObject]] = field(default_factory=dict)
    listed_at: dict[Kind, float] = field(default_factory=dict)
    calls: int = 0  # list calls made to build this view (0: served from what was listed)

    @property
    def taken(self) -> float:
        """When the oldest of its listings started."""
        return min(self.listed_at.values(), default=0.0)

    def of(self, kind: Kind | str) -> list[CloudObject]:
        return self.objects.get(Kind(kind), [])

    def without(self, ids: set[str]) -> Snapshot:
        """The same view less some objects (duplicates being removed)."""
        objects = {k: [o for o in objs if o.id not in ids] for k, objs in self.objects.items()}
        return Snapshot(objects, dict(self.listed_at), self.calls)

    def owned(self, uid: str) -> dict[Kind, list[CloudObject]]:
        """What carries the owner's mark, by kind (tags, Cinder metadata, or a name)."""
        found: dict[Kind, list[CloudObject]] = {}
        for kind, objects in self.objects.items():
            owns = adapter(kind).owned_by
            for obj in objects:
                if owns(obj, uid):
                    found.setdefault(kind, []).append(obj)
        return found
