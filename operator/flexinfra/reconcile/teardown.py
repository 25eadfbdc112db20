"""Ordered teardown of everything one owner UID holds, then a tag sweep. Kind-independent.

The order is the adapters' ``teardown_rank`` (dependents first): floating IPs -> load
balancers (cascade; wait out PENDING_DELETE) -> servers (wait until gone) -> ports -> router
interfaces -> routers -> subnets -> networks -> security groups -> server groups -> snapshots
-> volumes. Each call goes as far as it can without waiting; ``done`` is True only when a
fresh listing finds nothing owned by the UID. A floating IP tagged ``flexinfra-retain`` is
released to a retained tag instead of deleted (``adapters.neutron.FloatingIP``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flexinfra.cloud.adapters import ADAPTERS, TEARDOWN
from flexinfra.cloud.gateway import Gateway, Snapshot
from flexinfra.core.kinds import Kind
from flexinfra.core.objects import CloudObject
from flexinfra.core.tags import Owner

#: come back this soon while something is being deleted
REQUEUE = 3.0


@dataclass
class TeardownOutcome:
    done: bool
    remaining: list[str] = field(default_factory=list)
    requeue_after: float | None = None
    events: list[tuple[str, str]] = field(default_factory=list)


def with_orphans(snap: Snapshot, owned: dict[Kind, list[CloudObject]],
                 prefix: str) -> dict[Kind, list[CloudObject]]:
    """What the owner has, plus what it made without getting to tag it (killed between a
    create and its tags, the owner deleted before a pass adopted it): objects of an adoptable
    kind, untagged, named with the owner's prefix (unique: ``Owner.prefix``). Left behind,
    such a port kept its subnet, and so the finalizer, forever. Pure."""
    out = {kind: list(objs) for kind, objs in owned.items()}
    for a in ADAPTERS.values():
        if not a.adoptable:
            continue
        for obj in snap.of(a.kind):
            name = a.identity(obj)
            marked = any(t.startswith("flexinfra-") for t in obj.tags)  # e.g. a retained IP
            if name.startswith(prefix + "-") and not marked and a.is_orphan(obj, name):
                out.setdefault(a.kind, []).append(obj)
    return out


def teardown(owner: Owner, gateway: Gateway) -> TeardownOutcome:
    snap = gateway.inventory(with_snapshots=True, owner_uid=owner.uid)
    owned = with_orphans(snap, snap.owned(owner.uid), owner.prefix)
    out = TeardownOutcome(done=False)
    for a in TEARDOWN:
        step = a.teardown(gateway, owner, owned, snap)
        out.events += step.events
        if step.wait_for:
            return _come_back(gateway, owner, out, [step.wait_for])
    # the sweep: nothing may be left with our tag
    fresh = gateway.inventory(max_age=0, with_snapshots=True)
    sweep = with_orphans(fresh, fresh.owned(owner.uid), owner.prefix)
    ranked = [a.kind for a in TEARDOWN]
    left = [f"{kind} {obj.name or obj.id}" for kind in ranked for obj in sweep.get(kind, [])]
    left += [f"{kind} {obj.name or obj.id}" for kind, objs in sweep.items()
             if kind not in ranked for obj in objs]
    if left:
        return _come_back(gateway, owner, out, left)
    out.done = True
    gateway.invalidate(owner.uid)
    gateway.forget_owner(owner.uid)
    return out


def _come_back(gateway: Gateway, owner: Owner, out: TeardownOutcome,
               remaining: list[str]) -> TeardownOutcome:
    out.remaining = remaining
    out.requeue_after = REQUEUE
    gateway.invalidate(owner.uid)
    return out
