"""The server fleet: ``replicas`` servers spread over zones in an anti-affinity group, each
with its port (and volume), replaced when their template changes, backed off when they fail.

Rules, all of them about never serving less than asked for longer than needed:

* a server leaves only after its pool members are gone (members are deleted in one pass, the
  server in a later pass, once no member points at it);
* a template change is a rolling replacement with surge 1: one new server is created, joins
  the pools, and only then one old server is drained and deleted; the number of serving
  servers never drops below ``replicas`` (so the pool is never empty);
* with per-server volumes the replacement is in place instead: the old server is drained and
  deleted first and its successor takes the same index, hence the same volume (never a fresh
  one). At least ``replicas - 1`` servers serve meanwhile, so with ``replicas: 1`` the kind
  is down until the successor serves: a short outage is preferred to losing the data. A
  server that goes for good (scale down, volumes turned off) takes its volume with it;
* a server that keeps going to ERROR is not re-created forever: the failures in a row at one
  index are counted on that index's port (it outlives its servers), and after
  ``MAX_SERVER_FAILURES`` the ERROR server is kept for inspection and the plan is blocked
  with Nova's fault message. A server of that index reaching ACTIVE clears the count.

Who joins the pools is returned (``Fleet.joining``): the load balancer planner adds the
members once its listeners and pools are planned.

With ``FleetIntent.ports_first`` every replica's port is created before any server (the pass
that creates ports creates no server), so a boot script may list every node's address.
A server may sit in several security groups (``sg_id`` a list: one group per role).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from flexinfra.core import tags as T
from flexinfra.core.faults import ServerFault, fault_message
from flexinfra.core.kinds import Kind, Verb
from flexinfra.core.objects import CloudObject, Ref
from flexinfra.core.plan import Problem
from flexinfra.core.reasons import Reason
from flexinfra.planning.builder import PlanBuilder
from flexinfra.planning.network import Attachment
from flexinfra.planning.servers import (
    ACTIVE,
    BUILDING,
    FAILED,
    FAILED_PREFIX,
    FAILURES_PREFIX,
    MAX_SERVER_FAILURES,
    FleetIntent,
    FleetObserved,
    ServerView,
    choose_zone,
    failure_record,
    failures_in_a_row,
    is_current,
    members_by_address,
    server_views,
)

Id = str | Ref

DOWN_IN_PLACE = "; in place to keep the volume, so the site is down until the new server serves"


@dataclass
class Fleet:
    """What the rest of the plan needs from the fleet."""

    #: (listener port, server) memberships to add, after the pools are planned
    joining: list[tuple[int, ServerView]] = field(default_factory=list)
    #: servers ACTIVE and in every pool
    ready: int = 0


def plan_server_group(b: PlanBuilder, i: FleetIntent, o: FleetObserved) -> Id:
    """The anti-affinity group of the current policy; groups of another policy go once no
    server is in them."""
    wanted = T.server_group_name(i.prefix, i.server_group_policy, b.owner_uid)
    group_id: Id | None = None
    for group in o.server_groups:
        if group.name == wanted:
            group_id = group.id
        elif not group.get("member_ids"):
            b.add(Verb.DELETE, Kind.SERVER_GROUP, group.name,
                  "policy changed and no server uses it", None, group.id)
    if group_id is None:
        b.add(Verb.CREATE, Kind.SERVER_GROUP, wanted, "missing", "server_group",
              policy=i.server_group_policy)
        group_id = Ref("server_group")
    return group_id


def plan_fleet(
    b: PlanBuilder, i: FleetIntent, o: FleetObserved, at: Attachment,
    sg_id: Id | Sequence[Id], group_id: Id,
) -> Fleet:
    return _FleetPlanner(b, i, o).run(at, sg_id, group_id)


class _FleetPlanner:
    """One pass over the fleet; a class only to share the builder, intent and observation."""

    def __init__(self, b: PlanBuilder, i: FleetIntent, o: FleetObserved) -> None:
        self.b, self.i, self.o = b, i, o
        self.fleet = Fleet()
        for index, port in o.ports.items():
            b.know(f"port:{index}", port)
            if not T.has_owner(port.tags):
                self.tag_port(port, index, [], "ours by name and attached to our server, "
                              "untagged (its tagging call was lost): adopted")

    def run(self, at: Attachment, sg_id: Id | Sequence[Id], group_id: Id) -> Fleet:
        i, o, b = self.i, self.o, self.b
        views = server_views(o.servers, o.ports)
        members = members_by_address(o.members)
        pools_wanted = set(i.pool_ports)

        def in_pools(v: ServerView) -> bool:
            return v.address is not None and pools_wanted <= members.get(v.address, set())

        def has_members(v: ServerView) -> bool:
            return v.address is not None and bool(members.get(v.address))

        current = [v for v in views if is_current(v, i)]
        stale = [v for v in views if not is_current(v, i)]
        # Nova could not place a server of the *current* spec: re-creating it would fail the
        # same way every pass. Keep it (visible, no churn) and tell the user what to change.
        unplaceable = [
            v for v in stale
            if v.status == "ERROR" and v.template_hash == i.template_hash
            and v.fault is ServerFault.NO_VALID_HOST
        ]
        if unplaceable:
            names = ", ".join(v.obj.name for v in unplaceable)
            b.plan.blocked.append(
                f"Nova found no valid host for {names} "
                f"({i.server_group_policy} over zones {list(i.availability_zones) or 'any'}); "
                "use antiAffinity: soft, fewer replicas, or ask for more hosts. Delete the "
                "failed server to retry as is"
            )
            b.plan.problems.append(
                Problem(Reason.NO_VALID_HOST, f"no host for server(s) {names}: kept in ERROR")
            )
            stale = [v for v in stale if v not in unplaceable]
        exhausted = self.count_failures(views, stale)
        stale = [v for v in stale if v not in exhausted]
        serving = [v for v in views if v.status == ACTIVE and in_pools(v)]
        leaving: list[ServerView] = []

        # 1. failed servers serve nothing: drain (if needed) and delete right away
        # 2. stale ones (old template/zone): at most one drained per pass, only when the others
        #    still serving are at least `replicas` (surge 1), or `replicas - 1` in place
        for v in stale:
            if v.status in FAILED or not in_pools(v) or v.status != ACTIVE:
                leaving.append(v)
        draining_stale = [v for v in stale if v not in leaving]
        if draining_stale:
            candidate = draining_stale[0]
            others = [s for s in serving if s is not candidate]
            if len(others) >= (i.replicas - 1 if i.in_place else i.replicas):
                leaving.append(candidate)
        # 3. scale down: too many current servers; drop the not-yet-serving, then highest index
        excess = len(current) - i.replicas
        if excess > 0:
            victims = sorted(current, key=lambda v: (v.status == ACTIVE and in_pools(v),
                                                     -v.index))[:excess]
            leaving.extend(victims)
            current = [v for v in current if v not in victims]

        for v in leaving:
            self.remove_server(v, drained_not_yet=has_members(v))

        # 4. create: all missing at once, except during a rolling replacement (surge 1)
        missing = 0 if unplaceable or exhausted else i.replicas - len(current)
        rolling = bool(stale)
        if any(v.status in BUILDING for v in current):
            b.plan.waiting.append(
                "servers building: " + ", ".join(v.obj.name for v in current
                                                 if v.status in BUILDING)
            )
            if rolling:
                missing = 0
        if missing > 0 and rolling:
            # surge 1: the next new server only once the previous old one is gone
            # and once every new one already serves
            settled = all(v.status == ACTIVE and in_pools(v) for v in current)
            missing = 1 if settled and not any(v in leaving for v in stale) else 0
        if missing > 0:
            self.check_references()
        used = {v.index for v in views}
        zones = [v.az for v in current]
        # a port that counts failures goes to the next server first, so the count goes on
        retry = sorted(n for n, p in o.ports.items() if n not in used and failure_record(p)[1])
        indexes = []
        for _ in range(max(missing, 0)):
            free = next(n for n in range(len(used) + 1) if n not in used)
            index = retry.pop(0) if retry else free
            used.add(index)
            indexes.append(index)
        if i.ports_first and self.unprepared():
            # every replica's address (and data volume) before any boot script: no server
            # this pass, only what the boot scripts name
            for n in self.unprepared():
                if n not in o.ports:
                    self.ensure_port(n, at, sg_id)
                if i.volume_size_gb and n not in o.volumes:
                    self.create_volume(n)
            b.plan.waiting.append("ports and volumes of every node first (a node's "
                                  "configuration names them)")
            indexes = []
        for index in indexes:
            zone = choose_zone(i, zones)
            zones.append(zone)
            self.create_server(index, zone, at, sg_id, group_id)

        # 5. members for current ACTIVE servers not in every pool
        for v in current:
            if v.status == ACTIVE and not in_pools(v) and v.address:
                for port in i.pool_ports:
                    if port not in members.get(v.address, set()):
                        self.fleet.joining.append((port, v))
        # 6. ports and volumes nobody uses any more
        planned = {
            int(a.key.split(":")[1])
            for a in b.plan.actions
            if a.kind is Kind.SERVER and a.verb is Verb.CREATE
        }
        live = {v.index for v in views} | planned
        short = len(current) + len(planned) < i.replicas
        for index, port in o.ports.items():
            if short and failure_record(port)[1]:
                continue  # its failure count must reach the next server of that index
            if index not in live and not port.get("device_id"):
                b.add(Verb.DELETE, Kind.PORT, port.name, "its server is gone", None, port.id)
        for index, volume in o.volumes.items():
            if (index not in live or i.volume_size_gb is None) and volume.status in (
                "available", "error",
            ):
                b.add(Verb.DELETE, Kind.VOLUME, volume.name,
                      "its server is gone or volumes are off", None, volume.id)
        # 7. volumes for current servers
        if i.volume_size_gb:
            for v in current:
                self.want_volume(v)
        ready = [v for v in current if v.status == ACTIVE and in_pools(v)]
        self.fleet.ready = b.plan.ready_replicas = len(ready)
        if stale:
            b.plan.rolling = True
            b.plan.waiting.append(
                f"replacing {len(stale)} server(s) one at a time: "
                + ", ".join(v.obj.name for v in stale)
                + (DOWN_IN_PLACE if i.in_place and i.replicas == 1 else "")
            )
        elif i.volume_size_gb and not ready and not i.ports_first:
            # (with ports_first the volumes are made before the servers: taking one is
            # the normal first creation, not a replacement)
            # the old server is gone: its successor is being created with the kept volume
            taking_over = sorted(n for n in planned if n in o.volumes)
            if taking_over:
                b.plan.rolling = True
                b.plan.waiting.append(
                    "replacing " + ", ".join(i.server_name(n) for n in taking_over)
                    + DOWN_IN_PLACE
                )
        return self.fleet

    def check_references(self) -> None:
        """What a new server needs from the cloud: its image, flavor and zones exist."""
        i, o, invalid = self.i, self.o, self.b.invalid
        if o.image_id is None:
            invalid.append(f"image {i.image!r} of the {i.recipe} is not in the cloud; "
                           f"upload it or fix {i.recipe}.image")
        if o.flavor_id is None:
            invalid.append(f"flavor {i.flavor!r} of the {i.recipe} is not in the cloud; "
                           f"fix {i.recipe}.flavor")
        unknown = sorted(
            set(i.availability_zones) - (o.available_zones or set(i.availability_zones))
        )
        if unknown:
            invalid.append(f"availability zone(s) {', '.join(unknown)} do not exist; "
                           f"available: {', '.join(sorted(o.available_zones or []))}")

    def count_failures(self, views: list[ServerView], stale: list[ServerView]) -> list[ServerView]:
        """Count ERROR servers per index on its port; return those not to re-create any more.

        The planner keeps no state: the count lives on the index's port, which outlives its
        servers (see ``failure_record``). It only stops servers of the current template: after
        a template change the old ERROR server is replaced like any stale one."""
        i, o, b = self.i, self.o, self.b
        exhausted = []
        for v in views:
            port = o.ports.get(v.index)
            if port is None:
                continue
            if v.status == ACTIVE and failure_record(port)[1]:
                self.tag_port(port, v.index, [], f"{v.obj.name} is ACTIVE: failure count cleared")
            if v.status != "ERROR" or v not in stale:
                continue
            n = failures_in_a_row(v, port)
            if failure_record(port) != (v.template_hash, n, v.obj.id):
                self.tag_port(
                    port, v.index,
                    [f"{FAILURES_PREFIX}{v.template_hash}:{n}", f"{FAILED_PREFIX}{v.obj.id}"],
                    f"{v.obj.name} in ERROR: failure {n} of {MAX_SERVER_FAILURES} in a row",
                )
            if n >= MAX_SERVER_FAILURES and v.template_hash == i.template_hash:
                exhausted.append(v)
                fault = fault_message(v.obj.get("fault")) or "no fault message"
                b.plan.blocked.append(
                    f"{v.obj.name} went to ERROR {n} times in a row (Nova: {fault}); it is kept "
                    "for inspection and not re-created. Fix the cause (image, flavor, boot "
                    f"script, quota, or the cloud: ask its admin) or change the {i.recipe}; "
                    f"then delete server {v.obj.name} to retry"
                )
                b.plan.problems.append(Problem(
                    Reason.SERVER_FAILED,
                    f"server {v.obj.name} kept in ERROR after {n} failures in a row",
                ))
        return exhausted

    def tag_port(self, port: CloudObject, index: int, extra: list[str], reason: str) -> None:
        tags = self.b.tags("port", index=index) + [T.check_tag(t) for t in extra]
        self.b.add(Verb.TAG, Kind.PORT, port.name, reason, None, port.id, tags=tags)

    def remove_server(self, v: ServerView, drained_not_yet: bool) -> None:
        o, b = self.o, self.b
        if drained_not_yet:
            for port, members in o.members.items():
                for m in members:
                    if m.get("address") == v.address:
                        pool_id = o.pools[port].id if port in o.pools else m.get("pool_id")
                        b.add(Verb.DELETE, Kind.MEMBER, m.name or v.obj.name,
                              f"drain {v.obj.name} before it goes", None, m.id, pool_id=pool_id)
            b.plan.waiting.append(f"{v.obj.name} draining from the pools")
            return
        if v.status in FAILED:
            why = f"failed ({v.status})"
        elif is_current(v, self.i):
            why = f"scale down to {self.i.replicas}"
        else:
            why = "replaced (template or zone changed)"
        b.add(Verb.DELETE, Kind.SERVER, v.obj.name, why, None, v.obj.id)

    def unprepared(self) -> list[int]:
        """Indexes below ``replicas`` whose port (or volume) does not exist yet."""
        i, o = self.i, self.o
        return [n for n in range(i.replicas)
                if n not in o.ports or (i.volume_size_gb and n not in o.volumes)]

    def ensure_port(self, index: int, at: Attachment, sg_id: Id | Sequence[Id]) -> Id:
        """The index's port: created (or adopted), or its security groups put back."""
        i, o, b = self.i, self.o, self.b
        name = i.server_name(index)
        sg_ids = list(sg_id) if isinstance(sg_id, list | tuple) else [sg_id]
        port = o.ports.get(index)
        if port is None:
            return b.adopt_or_create(
                Kind.PORT, name, f"port:{index}", "for a new server", network_id=at.network_id,
                fixed_ips=[{"subnet_id": at.subnet_id}], security_group_ids=sg_ids,
                tags=b.tags("port", index=index),
            )
        have = port.get("security_group_ids") or []
        if any(s not in have for s in sg_ids):
            b.add(Verb.UPDATE, Kind.PORT, name, "security group missing", f"port:{index}",
                  port.id, security_group_ids=sg_ids)
        return port.id

    def create_server(self, index: int, zone: str | None, at: Attachment,
                      sg_id: Id | Sequence[Id], group_id: Id) -> None:
        i, o, b = self.i, self.o, self.b
        name = i.server_name(index)
        port_id = self.ensure_port(index, at, sg_id)
        b.add(
            Verb.CREATE, Kind.SERVER, name,
            "replica missing" if zone is None else f"replica missing (zone {zone})",
            f"server:{index}",
            image_id=o.image_id,
            flavor_id=o.flavor_id,
            port_id=port_id,
            availability_zone=zone,
            group_id=group_id,
            user_data=i.boot_script(index),
            key_name=i.key_name,
            metadata=dict(i.server_metadata),
            tags=b.tags("server", index=index, tmpl=i.template_hash),
        )
        if i.volume_size_gb and index not in o.volumes:
            self.create_volume(index)

    def create_volume(self, index: int) -> None:
        i = self.i
        self.b.add(Verb.CREATE, Kind.VOLUME, i.volume_name(index), "data volume for its server",
                   f"volume:{index}", size=i.volume_size_gb, volume_type=i.volume_type,
                   availability_zone=None,
                   metadata=T.metadata_tags(self.b.owner_uid, "volume", index))

    def want_volume(self, v: ServerView) -> None:
        volume = self.o.volumes.get(v.index)
        if volume is None:
            self.create_volume(v.index)
            return
        attached = {a.get("server_id") for a in volume.get("attachments") or []}
        if v.obj.id in attached:
            return
        if volume.status == "available" and v.status == ACTIVE:
            self.b.add(Verb.ATTACH, Kind.VOLUME, volume.name, f"attach to {v.obj.name}", None,
                       volume.id, server_id=v.obj.id)
        elif volume.status in ("creating", "attaching", "detaching"):
            self.b.plan.waiting.append(f"volume {volume.name} {volume.status}")
