"""Two copies of one object: a create that ran twice (a lost answer retried, two operator
instances, a crash in the create -> tag window of an older version). Kind-independent.

The projection takes the first object of a kind it finds; a second copy was never seen, never
used, never deleted (until the teardown) and, for a floating IP, made every later pass fail.
Each pass now looks for objects of one owner that share an identity (the adapter's
``identity``: the name; a floating IP's description) and deletes all but one, with an Event.

Which one is kept: the one in use (a floating IP on a port), then one not in ERROR, then the
oldest (the one the status and the other objects most likely already point at), then the
smaller ID (stable).
Servers being deleted, servers in ERROR (the fleet keeps those for inspection and replaces
them itself) and load balancers in PENDING_* (Octavia refuses the delete; once settled, ERROR
included, the copy goes) are left for a later pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flexinfra.cloud.adapters import adapter
from flexinfra.cloud.gateway import Gateway
from flexinfra.core.errors import FlexinfraError
from flexinfra.core.kinds import Kind
from flexinfra.core.objects import CloudObject

#: kinds never deduplicated: rules and interfaces have no identity of their own; snapshots
#: are the user's
SKIPPED = frozenset({Kind.SECURITY_GROUP_RULE, Kind.ROUTER_INTERFACE, Kind.SNAPSHOT,
                     Kind.MEMBER})
#: per kind, the states in which a copy is left for a later pass: a server in ERROR is the
#: fleet's (kept for inspection, replaced by it); a load balancer PENDING_* refuses a delete
#: (one in ERROR is deleted: the campaign found a copy in ERROR kept, and its debris, for good)
LEAVE_ALONE = {
    Kind.SERVER: frozenset({"DELETED", "ERROR", "SOFT_DELETED"}),
    Kind.LOAD_BALANCER: frozenset({"DELETED", "PENDING_CREATE", "PENDING_UPDATE",
                                   "PENDING_DELETE"}),
}
GONE = frozenset({"DELETED", "deleting"})


@dataclass(frozen=True)
class Duplicate:
    extra: CloudObject
    kept: CloudObject


def _created(obj: CloudObject) -> str:
    return str(obj.get("created_at") or obj.get("created") or "")


def _keep_order(obj: CloudObject) -> tuple:
    in_use = obj.kind is Kind.FLOATING_IP and bool(obj.get("port_id"))
    return (not in_use, obj.status == "ERROR", _created(obj) or "~", obj.id)


def _settled(obj: CloudObject) -> bool:
    leave = LEAVE_ALONE.get(obj.kind, GONE)
    return obj.status not in leave and obj.get("task_state") != "deleting"


def find_duplicates(owned: Mapping[Kind, list[CloudObject]]) -> list[Duplicate]:
    """Every extra copy among an owner's objects, with the copy kept. Pure."""
    out: list[Duplicate] = []
    for kind, objects in owned.items():
        if kind in SKIPPED:
            continue
        identity = adapter(kind).identity
        groups: dict[str, list[CloudObject]] = {}
        for obj in objects:
            key = identity(obj)
            if key and _settled(obj):
                groups.setdefault(key, []).append(obj)
        for group in groups.values():
            if len(group) > 1:
                kept, *extras = sorted(group, key=_keep_order)
                out += [Duplicate(extra, kept) for extra in extras]
    return out


def remove(gateway: Gateway, found: list[Duplicate]) -> list[tuple[str, str]]:
    """Delete the extra copies; the Events that say so. A delete that fails is left for the
    next pass (the copy stays out of this pass's view all the same)."""
    events = []
    for dup in found:
        x = dup.extra
        try:
            adapter(x.kind).delete(gateway, x.id)
        except FlexinfraError as err:
            events.append(("DuplicateFound", f"{x.kind.label} {adapter(x.kind).identity(x)} "
                           f"({x.id}) is a second copy; deleting it failed ({err.message}), "
                           "will retry"))
            continue
        events.append(("DuplicateRemoved", f"{x.kind.label} {adapter(x.kind).identity(x)} "
                       f"({x.id}): a second copy (a create that ran twice); kept {dup.kept.id}"))
    return events
