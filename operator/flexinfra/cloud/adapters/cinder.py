"""Cinder kinds: volumes and snapshots. Cinder has no tags: the tag pairs are metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flexinfra.cloud.adapters.base import Adapter, Owned, Params, TeardownStep
from flexinfra.core.kinds import Kind as K
from flexinfra.core.objects import CloudObject
from flexinfra.core.plan import PlannedAction
from flexinfra.core.tags import Owner

if TYPE_CHECKING:
    from flexinfra.cloud.gateway import Gateway


class CinderAdapter(Adapter):
    service = "block-storage"
    proxy = "block_storage"
    list_query = {"details": True}

    def tags_of(self, attrs: Mapping[str, Any]) -> frozenset[str]:
        meta = attrs.get("metadata") or {}
        return frozenset(f"{k}:{v}" for k, v in meta.items() if k.startswith("flexinfra-"))


class Volume(CinderAdapter):
    kind = K.VOLUME
    lister = "volumes"
    waiting = True
    touches = frozenset({K.VOLUME, K.SERVER})
    teardown_rank = 11
    quota = "volumes"
    #: what a volume may be deleted in (attached or busy ones wait for a later pass)
    DELETABLE = frozenset({"available", "error", "error_restoring", "error_extending"})

    def create(self, gw: Gateway, a: PlannedAction, p: Params) -> CloudObject | None:
        attrs = {"name": a.name, "size": p["size"], "metadata": p["metadata"]}
        if p.get("volume_type"):
            attrs["volume_type"] = p["volume_type"]
        return self.to_object(gw.call(self.service, self.kind, "create",
                                      self.sdk(gw, "create"), found=self.finder(gw, a, p),
                                      **attrs))

    def attach(self, gw: Gateway, a: PlannedAction, p: Params) -> CloudObject | None:
        gw.call("compute", "volume_attachment", "create",
                gw.sdk("compute", "create_volume_attachment"), p["server_id"],
                volume_id=a.target_id)
        return None

    def release(self, gw: Gateway, volume: CloudObject, retained_by: str) -> None:
        """Keep a volume but no longer own it: its owner metadata goes (so no tag sweep
        finds it), a ``flexinfra-retained: <namespace>/<name>`` mark says whose it was."""
        keys = [k for k in (volume.get("metadata") or {}) if k.startswith("flexinfra-")]
        if keys:
            gw.call(self.service, self.kind, "update",
                    gw.sdk(self.proxy, "delete_volume_metadata"), volume.id, keys=keys)
        gw.call(self.service, self.kind, "update", gw.sdk(self.proxy, "set_volume_metadata"),
                volume.id, **{"flexinfra-retained": retained_by})

    def teardown(self, gw: Gateway, owner: Owner, owned: Owned, snap: Any) -> TeardownStep:
        step = TeardownStep()
        for volume in owned.get(self.kind, []):
            if volume.status in self.DELETABLE:
                self.delete(gw, volume.id)
                step.events.append(("Deleted", f"volume {volume.name or volume.id}"))
        return step


class Snapshot(CinderAdapter):
    """Never made by the operator, but a user's snapshot of an owned volume carries its
    metadata, and the volume cannot go before it."""

    kind = K.SNAPSHOT
    lister = "snapshots"
    always_listed = False
    teardown_rank = 10


ADAPTERS = (Volume(), Snapshot())
