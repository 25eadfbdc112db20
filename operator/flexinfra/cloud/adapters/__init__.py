"""One adapter per OpenStack kind; this module is their registry and the views derived from
it (what the inventory lists, what moves by itself, the teardown order)."""

from __future__ import annotations

from flexinfra.cloud.adapters import cinder, neutron, nova, octavia
from flexinfra.cloud.adapters.base import Adapter, TeardownStep
from flexinfra.core.kinds import Kind

#: in the order the inventory lists them (cheap Neutron lists first, Octavia last)
_ORDER = (
    Kind.NETWORK, Kind.SUBNET, Kind.ROUTER, Kind.ROUTER_INTERFACE, Kind.PORT,
    Kind.SECURITY_GROUP, Kind.SECURITY_GROUP_RULE, Kind.FLOATING_IP, Kind.SERVER,
    Kind.SERVER_GROUP, Kind.VOLUME, Kind.SNAPSHOT, Kind.LOAD_BALANCER, Kind.LISTENER,
    Kind.POOL, Kind.HEALTH_MONITOR, Kind.MEMBER,
)
_ALL = {a.kind: a for a in (*neutron.ADAPTERS, *nova.ADAPTERS, *cinder.ADAPTERS,
                            *octavia.ADAPTERS)}
ADAPTERS: dict[Kind, Adapter] = {kind: _ALL[kind] for kind in _ORDER}


def adapter(kind: Kind | str) -> Adapter:
    return ADAPTERS[Kind(kind)]


#: listed by every inventory, in this order
LISTED: tuple[Adapter, ...] = tuple(
    a for a in ADAPTERS.values() if a.lister and a.always_listed
)
#: listed too when an owner is torn down (snapshots)
LISTED_FOR_TEARDOWN: tuple[Adapter, ...] = LISTED + tuple(
    a for a in ADAPTERS.values() if a.lister and not a.always_listed
)
#: what moves by itself while an owner waits on the cloud (BUILD, PENDING_*)
WAITING_KINDS: frozenset[Kind] = frozenset(a.kind for a in LISTED if a.waiting)
#: the teardown order (dependents first)
TEARDOWN: tuple[Adapter, ...] = tuple(
    sorted((a for a in ADAPTERS.values() if a.teardown_rank is not None),
           key=lambda a: a.teardown_rank)
)

__all__ = ["ADAPTERS", "LISTED", "LISTED_FOR_TEARDOWN", "TEARDOWN", "WAITING_KINDS", "Adapter",
           "TeardownStep", "adapter"]
