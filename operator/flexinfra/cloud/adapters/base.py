"""What an adapter is: everything the operator knows about one OpenStack kind, in one class.

The idea of k-orc's actuators and CAPO's per-API services. The executor, the teardown, the
quota pre-check, the inventory and the projections read these attributes and call these
methods instead of keeping tables per kind; adding a kind (say a Designate zone) is one
adapter here, registered in ``cloud.adapters``.

Every method that calls the cloud takes the ``Gateway`` and goes through ``gateway.call``
(throttled, counted, retried when safe); openstacksdk is reached only through
``gateway.sdk(proxy, method)``, inside ``cloud/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flexinfra.core import tags as T
from flexinfra.core.errors import ErrorCode, FlexinfraError
from flexinfra.core.kinds import Kind, Verb
from flexinfra.core.objects import CloudObject
from flexinfra.core.plan import PlannedAction
from flexinfra.core.tags import Owner

if TYPE_CHECKING:
    from flexinfra.cloud.gateway import Gateway

Params = dict[str, Any]
Event = tuple[str, str]
Owned = Mapping[Kind, list[CloudObject]]


@dataclass
class TeardownStep:
    """What tearing down one kind did: Events, and what must be gone before going on."""

    events: list[Event] = field(default_factory=list)
    wait_for: str | None = None  # e.g. "server(s) a, b": come back, do not go further yet


class Adapter:
    """One OpenStack kind. Subclasses set the class attributes and override what differs."""

    kind: Kind
    #: the service as metrics and the per-service in-flight cap name it ("network", ...)
    service: str
    #: the openstacksdk proxy ("network", "compute", "block_storage", "load_balancer")
    proxy: str
    #: proxy method listing the kind tenant-wide, with its query; None: not listed
    lister: str | None = None
    list_query: Mapping[str, Any] = {}
    #: listed by every inventory (False: only by the teardown's, e.g. snapshots)
    always_listed: bool = True
    #: the field holding the status (Octavia: provisioning_status)
    status_field: str = "status"
    #: changes by itself (BUILD, PENDING_*): listed again while an owner waits on the cloud
    waiting: bool = False
    #: what a write to this kind makes stale (directly or as a side effect), to list again
    touches: frozenset[Kind] = frozenset()
    #: place in teardown (lower first); None: goes with something else (listener: its LB)
    teardown_rank: int | None = None
    #: Octavia refuses a change while the load balancer is PENDING_*: such actions run one
    #: at a time, each once the load balancer is ACTIVE again
    needs_active_lb: bool = False
    #: the name of the kind in its service's quota set (None: not counted)
    quota: str | None = None
    #: an object of ours found without our tags (a create whose tagging failed) is adopted
    adoptable: bool = False

    # --- observation -------------------------------------------------------------------------
    def to_object(self, res: Any) -> CloudObject:
        attrs = res.to_dict(computed=False) if hasattr(res, "to_dict") else dict(res)
        attrs.pop("location", None)
        return CloudObject(
            self.kind,
            attrs.get("id"),
            attrs.get("name") or "",
            attrs.get(self.status_field),
            self.tags_of(attrs),
            attrs,
        )

    def tags_of(self, attrs: Mapping[str, Any]) -> frozenset[str]:
        return frozenset(attrs.get("tags") or [])

    def owned_by(self, obj: CloudObject, owner_uid: str) -> bool:
        return T.OWNER_PREFIX + owner_uid in obj.tags

    def is_orphan(self, obj: CloudObject, name: str) -> bool:
        """``obj`` is ours by name but carries no owner tag: adopt it, do not duplicate it."""
        return obj.name == name and not T.has_owner(obj.tags)

    # --- writes ------------------------------------------------------------------------------
    def apply(self, gw: Gateway, action: PlannedAction, params: Params) -> CloudObject | None:
        """Do one planned action; return the object it made or changed (for ``Ref``s)."""
        handler = {
            Verb.CREATE: self.create,
            Verb.UPDATE: self.update,
            Verb.DELETE: self.delete_action,
            Verb.ADOPT: self.adopt,
            Verb.TAG: self.adopt,
            Verb.ATTACH: self.attach,
            Verb.ASSOCIATE: self.update,
        }[action.verb]
        return handler(gw, action, params)

    def create(self, gw: Gateway, a: PlannedAction, p: Params) -> CloudObject | None:
        return self.to_object(
            gw.call(self.service, self.kind, "create", self.sdk(gw, "create"), name=a.name,
                    found=self.finder(gw, a, p), **p)
        )

    # --- did a create happen? ----------------------------------------------------------------
    def identity(self, obj: CloudObject) -> str:
        """What names one object of this kind among an owner's (two with the same identity
        are a duplicate: a create that ran twice)."""
        return obj.name

    def made_by(self, obj: CloudObject, a: PlannedAction, p: Params) -> bool:
        """Whether ``obj`` is what the create ``a`` makes: its name, and every tag it asks for
        (``tags``, or Cinder's ``metadata``)."""
        wanted = set(p.get("tags") or []) | {f"{k}:{v}" for k, v in
                                             (p.get("metadata") or {}).items()
                                             if str(k).startswith("flexinfra-")}
        return obj.name == a.name and bool(wanted) and wanted <= obj.tags

    def finder(self, gw: Gateway, a: PlannedAction, p: Params) -> Callable[[], Any] | None:
        """For ``Gateway.call``: after an ambiguous failure, the object the create made, from
        a listing started after it was sent (None: not made). Only for what is listed."""
        if not self.lister:
            return None
        sent = time.monotonic()
        params = dict(p)

        def found() -> Any:
            for obj in gw.fresh(self.kind, sent):
                if self.made_by(obj, a, params):
                    return obj.attrs
            return None

        return found

    def update(self, gw: Gateway, a: PlannedAction, p: Params) -> CloudObject | None:
        return self.to_object(
            gw.call(self.service, self.kind, "update", self.sdk(gw, "update"), a.target_id, **p)
        )

    def delete_action(self, gw: Gateway, a: PlannedAction, p: Params) -> None:
        self.delete(gw, a.target_id, p)
        return None

    def delete(self, gw: Gateway, target_id: str, p: Params | None = None) -> None:
        gw.call(self.service, self.kind, "delete", self.sdk(gw, "delete"), target_id,
                missing_ok=True)

    def adopt(self, gw: Gateway, a: PlannedAction, p: Params) -> CloudObject | None:
        """Set the object's tags (adopt an orphan, or re-tag, e.g. a failure count)."""
        raise self.unsupported(a.verb)

    def attach(self, gw: Gateway, a: PlannedAction, p: Params) -> CloudObject | None:
        raise self.unsupported(a.verb)

    def sdk(self, gw: Gateway, verb: str) -> Callable[..., Any]:
        """openstacksdk's ``<verb>_<kind>`` on this adapter's proxy, e.g. ``create_pool``."""
        return gw.sdk(self.proxy, f"{verb}_{self.kind}")

    def unsupported(self, verb: Verb | str) -> FlexinfraError:
        return FlexinfraError(f"internal: cannot {verb} a {self.kind.label}",
                              code=ErrorCode.INTERNAL)

    # --- teardown ----------------------------------------------------------------------------
    def teardown(
        self, gw: Gateway, owner: Owner, owned: Owned, snap: Any
    ) -> TeardownStep:
        """Delete every object of this kind the owner has; ``owned`` is all the owner has, by
        kind, and ``snap`` the tenant view, for what is the owner's without its tag (a
        router's interface ports)."""
        step = TeardownStep()
        for obj in owned.get(self.kind, []):
            self.delete(gw, obj.id)
            step.events.append(("Deleted", f"{self.kind.label} {obj.name or obj.id}"))
        return step
