"""Nova kinds: servers and server groups."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from flexinfra.cloud.adapters.base import Adapter, Owned, Params, TeardownStep
from flexinfra.core import tags as T
from flexinfra.core.kinds import Kind as K
from flexinfra.core.objects import CloudObject
from flexinfra.core.plan import PlannedAction
from flexinfra.core.tags import Owner

if TYPE_CHECKING:
    from flexinfra.cloud.gateway import Gateway


class Server(Adapter):
    kind = K.SERVER
    service = "compute"
    proxy = "compute"
    lister = "servers"
    list_query = {"details": True}
    waiting = True
    touches = frozenset({K.SERVER, K.PORT, K.SERVER_GROUP, K.VOLUME})
    teardown_rank = 2
    quota = "instances"

    def create(self, gw: Gateway, a: PlannedAction, p: Params) -> CloudObject | None:
        attrs: dict[str, Any] = {
            "name": a.name,
            "image_id": p["image_id"],
            "flavor_id": p["flavor_id"],
            "networks": [{"port": p["port_id"]}],
            "tags": p["tags"],
            "metadata": p.get("metadata") or {},
            "scheduler_hints": {"group": p["group_id"]},
        }
        if p.get("availability_zone"):
            attrs["availability_zone"] = p["availability_zone"]
        if p.get("key_name"):
            attrs["key_name"] = p["key_name"]
        if p.get("user_data"):
            attrs["user_data"] = base64.b64encode(p["user_data"].encode()).decode()
        return self.to_object(gw.call(self.service, self.kind, "create",
                                      self.sdk(gw, "create"), found=self.finder(gw, a, p),
                                      **attrs))

    def start(self, gw: Gateway, server_id: str) -> None:
        """Power a SHUTOFF server on (a Galera node the operator repairs)."""
        gw.call(self.service, self.kind, "start", gw.sdk("compute", "start_server"), server_id)

    def reboot(self, gw: Gateway, server_id: str, hard: bool = True) -> None:
        """Reboot (hard: from ERROR, or a guest that stopped answering)."""
        gw.call(self.service, self.kind, "reboot", gw.sdk("compute", "reboot_server"),
                server_id, "HARD" if hard else "SOFT")

    def teardown(self, gw: Gateway, owner: Owner, owned: Owned, snap: Any) -> TeardownStep:
        """Nova deletes asynchronously: go on only once they are gone."""
        step = TeardownStep()
        servers = owned.get(self.kind, [])
        for server in servers:
            if server.get("task_state") != "deleting" and server.status != "DELETED":
                self.delete(gw, server.id)
                step.events.append(("Deleted", f"server {server.name or server.id}"))
        if servers:
            step.wait_for = "server(s) " + ", ".join(s.name for s in servers)
        return step


class ServerGroup(Adapter):
    """The anti-affinity group. It has neither tags nor metadata: its name carries the owner
    UID (``tags.server_group_name``), so it is never adopted, only found by name."""

    kind = K.SERVER_GROUP
    service = "compute"
    proxy = "compute"
    lister = "server_groups"
    touches = frozenset({K.SERVER_GROUP})
    teardown_rank = 9

    def owned_by(self, obj: CloudObject, owner_uid: str) -> bool:
        return super().owned_by(obj, owner_uid) or T.owns_by_name(obj.name, owner_uid)

    def create(self, gw: Gateway, a: PlannedAction, p: Params) -> CloudObject | None:
        return self.to_object(gw.call(self.service, self.kind, "create",
                                      self.sdk(gw, "create"), name=a.name, policy=p["policy"],
                                      found=self.finder(gw, a, p)))

    def made_by(self, obj: CloudObject, a: PlannedAction, p: Params) -> bool:
        return obj.name == a.name  # the name carries the owner UID


ADAPTERS = (Server(), ServerGroup())
