"""Octavia kinds: load balancers, listeners, pools, health monitors, members.

Their status is ``provisioning_status``; a load balancer refuses changes to its children
while PENDING_*, so children's actions need it ACTIVE (``needs_active_lb``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flexinfra.cloud.adapters.base import Adapter, Owned, Params, TeardownStep
from flexinfra.core.kinds import Kind as K
from flexinfra.core.objects import CloudObject
from flexinfra.core.plan import PlannedAction
from flexinfra.core.tags import Owner

if TYPE_CHECKING:
    from flexinfra.cloud.gateway import Gateway

PENDING = frozenset({"PENDING_CREATE", "PENDING_UPDATE", "PENDING_DELETE"})


class OctaviaAdapter(Adapter):
    service = "load-balancer"
    proxy = "load_balancer"
    status_field = "provisioning_status"
    waiting = True


class LoadBalancer(OctaviaAdapter):
    kind = K.LOAD_BALANCER
    lister = "load_balancers"
    touches = frozenset({K.LOAD_BALANCER, K.LISTENER, K.POOL, K.HEALTH_MONITOR, K.PORT,
                         K.FLOATING_IP})
    teardown_rank = 1
    quota = "load_balancers"
    adoptable = True

    def adopt(self, gw: Gateway, a: PlannedAction, p: Params) -> CloudObject | None:
        return self.to_object(gw.call(self.service, self.kind, "update", self.sdk(gw, "update"),
                                      a.target_id, tags=p.get("tags") or []))

    def delete(self, gw: Gateway, target_id: str, p: Params | None = None) -> None:
        """Cascade: listeners, pools, monitors and members go with it."""
        gw.call(self.service, self.kind, "delete", self.sdk(gw, "delete"), target_id,
                cascade=True, missing_ok=True)

    def teardown(self, gw: Gateway, owner: Owner, owned: Owned, snap: Any) -> TeardownStep:
        """Wait out PENDING_*: a second delete while one runs is refused."""
        step = TeardownStep()
        lbs = owned.get(self.kind, [])
        for lb in lbs:
            if lb.status not in PENDING | {"DELETED"}:
                self.delete(gw, lb.id)
                step.events.append(("Deleted", f"load balancer {lb.name}"))
        if [lb for lb in lbs if lb.status != "DELETED"]:
            step.wait_for = "load balancer(s) " + ", ".join(lb.name for lb in lbs)
        return step


class Listener(OctaviaAdapter):
    kind = K.LISTENER
    lister = "listeners"
    touches = frozenset({K.LOAD_BALANCER, K.LISTENER, K.POOL})
    needs_active_lb = True
    quota = "listeners"


class Pool(OctaviaAdapter):
    kind = K.POOL
    lister = "pools"
    touches = frozenset({K.LOAD_BALANCER, K.LISTENER, K.POOL, K.HEALTH_MONITOR})
    needs_active_lb = True
    quota = "pools"


class HealthMonitor(OctaviaAdapter):
    kind = K.HEALTH_MONITOR
    lister = "health_monitors"
    touches = frozenset({K.LOAD_BALANCER, K.POOL, K.HEALTH_MONITOR})
    needs_active_lb = True
    quota = "health_monitors"


class Member(OctaviaAdapter):
    """Octavia lists members per pool only: ``Gateway.members`` lists a pool's members when
    its member IDs changed. Every call names the pool."""

    kind = K.MEMBER
    waiting = False
    touches = frozenset({K.LOAD_BALANCER, K.POOL})
    needs_active_lb = True
    quota = "members"

    def create(self, gw: Gateway, a: PlannedAction, p: Params) -> CloudObject | None:
        pool_id = p.pop("pool_id")
        return self.to_object(gw.call(self.service, self.kind, "create",
                                      self.sdk(gw, "create"), pool_id, name=a.name,
                                      found=self.member_finder(gw, a, p, pool_id), **p))

    def member_finder(self, gw: Gateway, a: PlannedAction, p: Params, pool_id: str) -> Any:
        """Members are listed per pool: look in the pool for one with our name and address."""
        def found() -> Any:
            items = gw.call(self.service, self.kind, "list", gw.sdk(self.proxy, "members"),
                            pool_id)
            for obj in map(self.to_object, items):
                if obj.name == a.name and obj.get("address") == p.get("address"):
                    return obj.attrs
            return None

        return found

    def update(self, gw: Gateway, a: PlannedAction, p: Params) -> CloudObject | None:
        """In place (a Galera writer change: ``backup`` flips): the pool's member IDs do not
        change, so its cached listing is dropped."""
        pool_id = p.pop("pool_id")
        try:
            return self.to_object(gw.call(self.service, self.kind, "update",
                                          self.sdk(gw, "update"), a.target_id, pool_id, **p))
        finally:
            gw.forget_members(pool_id)

    def delete(self, gw: Gateway, target_id: str, p: Params | None = None) -> None:
        gw.call(self.service, self.kind, "delete", self.sdk(gw, "delete"), target_id,
                (p or {})["pool_id"], missing_ok=True)


ADAPTERS = (LoadBalancer(), Listener(), Pool(), HealthMonitor(), Member())
