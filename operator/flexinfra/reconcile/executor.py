"""Apply planned actions through the gateway, as parallel as their dependencies allow.

The plan is a sequence; the executor keeps its meaning while overlapping what is
independent:
* creates and adoptions start at once, each after the actions whose objects it refers to
  (``Ref``): the router, the security group and the servers are asked for together;
* load balancer children form one lane, in plan order: Octavia refuses a change while the LB
  is PENDING_*, so before each the executor waits (at most ``lb_wait`` seconds, on a
  tenant-wide LB listing shared by every site) for it to be ACTIVE; if it stays busy, the rest
  of the lane is left for the next pass (the plan is recomputed then) and the caller requeues;
* any other verb (delete, update, attach, ...) is a barrier: it starts when everything before
  it has finished, and everything after it waits for it.
A failure stops nothing already started; once all have settled, the first failure in plan
order is raised.
"""

from __future__ import annotations

import base64
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from flexinfra.cloud.errors import FlexinfraError, TransientError
from flexinfra.cloud.gateway import Gateway, to_object
from flexinfra.planning.model import PlannedAction, Ref

PAST = {
    "create": "Created",
    "update": "Updated",
    "delete": "Deleted",
    "adopt": "Adopted",
    "attach": "Attached",
    "associate": "Associated",
    "tag": "Tagged",
}


@dataclass
class Execution:
    done: list[PlannedAction] = field(default_factory=list)
    skipped: list[PlannedAction] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)
    created: dict[str, Any] = field(default_factory=dict)  # key -> CloudObject
    lb_busy: bool = False


PARALLEL_VERBS = frozenset({"create", "adopt"})


class Skipped(Exception):
    """An action not run because one it depends on was skipped or failed."""


def ref_keys(value: Any) -> set[str]:
    """The keys of the objects a parameter value refers to (``Ref``), however nested."""
    if isinstance(value, Ref):
        return {value.key}
    if isinstance(value, (list, tuple)):
        return set().union(*map(ref_keys, value)) if value else set()
    if isinstance(value, dict):
        return ref_keys(list(value.values()))
    return set()


class Executor:
    def __init__(
        self, gateway: Gateway, known: dict[str, Any], *, lb_wait: float = 20.0, parallel: int = 6
    ) -> None:
        self.gw = gateway
        self.conn = gateway.conn
        self.known = dict(known)  # key -> CloudObject of what already exists
        self.lb_wait = lb_wait
        self.parallel = parallel
        self.result = Execution()
        self._lock = threading.Lock()
        #: a listing of the load balancer must have started after this to be believed
        self._lb_changed_at = time.monotonic()

    # --- refs ----------------------------------------------------------------------------------
    def resolve(self, value: Any) -> Any:
        if isinstance(value, Ref):
            obj = self.result.created.get(value.key) or self.known.get(value.key)
            if obj is None:
                raise TransientError(f"internal: {value.key} not created yet; will retry")
            return obj.id if value.field == "id" else obj.get(value.field)
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        return value

    def run(self, actions: list[PlannedAction]) -> Execution:
        if not actions:
            return self.result
        futures: list[Future] = []
        by_key: dict[str, Future] = {}
        barrier: Future | None = None
        lb_lane: Future | None = None
        with ThreadPoolExecutor(
            max_workers=min(self.parallel, len(actions)), thread_name_prefix="executor"
        ) as pool:
            # FIFO start order: an action starts only after every earlier one has started, so
            # waiting on earlier futures from inside the pool cannot deadlock
            for action in actions:
                deps = [by_key[k] for k in ref_keys(dict(action.params)) if k in by_key]
                if barrier is not None:
                    deps.append(barrier)
                if action.needs_active_lb:
                    deps += [lb_lane] if lb_lane is not None else []
                elif action.verb not in PARALLEL_VERBS:
                    deps = list(futures)
                future = pool.submit(self._run_one, action, deps)
                futures.append(future)
                if action.key:
                    by_key[action.key] = future
                if action.needs_active_lb:
                    lb_lane = future
                elif action.verb not in PARALLEL_VERBS:
                    barrier = future
        errors = [f.exception() for f in futures]
        first = next((e for e in errors if e is not None and not isinstance(e, Skipped)), None)
        if first is not None:
            raise first
        # keep what was done in plan order (events read as the plan does)
        order = {id(a): n for n, a in enumerate(actions)}
        self.result.done.sort(key=lambda a: order[id(a)])
        self.result.skipped.sort(key=lambda a: order[id(a)])
        return self.result

    def _run_one(self, action: PlannedAction, deps: list[Future]) -> None:
        for dep in deps:
            if dep.exception() is not None:  # waits for it; a failed or skipped one stops us
                with self._lock:
                    self.result.skipped.append(action)
                raise Skipped(action.describe())
        if action.needs_active_lb and (self.result.lb_busy or not self._lb_active()):
            with self._lock:
                self.result.lb_busy = True
                self.result.skipped.append(action)
            raise Skipped(action.describe())
        params = {k: self.resolve(v) for k, v in action.params.items()}
        try:
            obj = self._apply(action, params)
        except FlexinfraError as err:
            if "could not be found" in err.message or "not found" in err.message.lower():
                self.gw.forget_lookups()  # e.g. a flavor re-created: look it up again
                self.gw.invalidate()
            raise
        finally:
            if action.needs_active_lb or action.kind == "load_balancer":
                self._lb_changed_at = time.monotonic()  # it goes PENDING_UPDATE now
        with self._lock:
            if obj is not None and action.key:
                self.result.created[action.key] = obj
            self.result.done.append(action)
            self.result.events.append(
                (
                    PAST.get(action.verb, action.verb.title()),
                    f"{action.kind.replace('_', ' ')} {action.name}: {action.reason}",
                )
            )

    def _lb_active(self) -> bool:
        lb = self.result.created.get("load_balancer") or self.known.get("load_balancer")
        if lb is None:
            return False
        deadline = time.monotonic() + self.lb_wait
        after = self._lb_changed_at
        while True:
            fresh = next((x for x in self.gw.fresh("load_balancer", after) if x.id == lb.id), None)
            if fresh is None:
                return False
            if fresh.status == "ACTIVE":
                return True
            if fresh.status == "ERROR" or time.monotonic() > deadline:
                return False
            after = time.monotonic()
            time.sleep(0.5)

    # --- one action ----------------------------------------------------------------------------
    def _apply(self, a: PlannedAction, p: dict[str, Any]) -> Any:
        gw, net, comp, lbs, blk = (
            self.gw,
            self.conn.network,
            self.conn.compute,
            self.conn.load_balancer,
            self.conn.block_storage,
        )
        kind, verb = a.kind, a.verb
        if verb == "delete":
            return self._delete(a, p)
        if verb in ("adopt", "tag"):  # both set an object's tags (tag: e.g. a failure count)
            return self._adopt(a, p)
        if kind in ("network", "subnet", "router", "security_group", "port", "floating_ip"):
            method = {
                "network": net.create_network,
                "subnet": net.create_subnet,
                "router": net.create_router,
                "security_group": net.create_security_group,
                "port": net.create_port,
                "floating_ip": net.create_ip,
            }[kind]
            update = {
                "network": net.update_network,
                "subnet": net.update_subnet,
                "router": net.update_router,
                "security_group": net.update_security_group,
                "port": net.update_port,
                "floating_ip": net.update_ip,
            }[kind]
            if verb == "create":
                tags = p.pop("tags", None)
                name = {} if kind == "floating_ip" else {"name": a.name}
                res = gw.neutron_create(kind, method, tags, **name, **p)
                return to_object(kind, res)
            if verb in ("update", "associate"):
                return to_object(kind, gw.call("network", kind, "update", update, a.target_id, **p))
        if kind == "router_interface":
            gw.call(
                "network",
                "router_interface",
                "create",
                net.add_interface_to_router,
                p["router_id"],
                subnet=p["subnet_id"],
            )
            return None
        if kind == "security_group_rule":
            rule = p["rule"]
            try:
                gw.call(
                    "network",
                    "security_group_rule",
                    "create",
                    net.create_security_group_rule,
                    security_group_id=p["security_group_id"],
                    direction=rule.direction,
                    ethertype=rule.ethertype,
                    protocol=rule.protocol,
                    port_range_min=rule.port_min,
                    port_range_max=rule.port_max,
                    remote_ip_prefix=rule.remote_ip_prefix,
                )
            except TransientError as err:
                if "already exists" not in err.message:
                    raise
            return None
        if kind == "server_group":
            res = gw.call(
                "compute",
                "server_group",
                "create",
                comp.create_server_group,
                name=a.name,
                policy=p["policy"],
            )
            return to_object(kind, res)
        if kind == "server":
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
            return to_object(
                kind, gw.call("compute", "server", "create", comp.create_server, **attrs)
            )
        if kind == "volume":
            if verb == "attach":
                gw.call(
                    "compute",
                    "volume_attachment",
                    "create",
                    comp.create_volume_attachment,
                    p["server_id"],
                    volume_id=a.target_id,
                )
                return None
            attrs = {"name": a.name, "size": p["size"], "metadata": p["metadata"]}
            if p.get("volume_type"):
                attrs["volume_type"] = p["volume_type"]
            return to_object(
                kind, gw.call("block-storage", "volume", "create", blk.create_volume, **attrs)
            )
        if kind == "load_balancer":
            return to_object(
                kind,
                gw.call(
                    "load-balancer", kind, "create", lbs.create_load_balancer, name=a.name, **p
                ),
            )
        if kind in ("listener", "pool", "health_monitor"):
            create = {
                "listener": lbs.create_listener,
                "pool": lbs.create_pool,
                "health_monitor": lbs.create_health_monitor,
            }[kind]
            update = {
                "listener": lbs.update_listener,
                "pool": lbs.update_pool,
                "health_monitor": lbs.update_health_monitor,
            }[kind]
            if verb == "create":
                return to_object(
                    kind, gw.call("load-balancer", kind, "create", create, name=a.name, **p)
                )
            return to_object(
                kind, gw.call("load-balancer", kind, "update", update, a.target_id, **p)
            )
        if kind == "member":
            pool_id = p.pop("pool_id")
            return to_object(
                kind,
                gw.call(
                    "load-balancer",
                    "member",
                    "create",
                    lbs.create_member,
                    pool_id,
                    name=a.name,
                    **p,
                ),
            )
        raise FlexinfraError(f"internal: no executor for {verb} {kind}")

    def _adopt(self, a: PlannedAction, p: dict[str, Any]) -> Any:
        """Tag an object found by name (or a retained floating IP) so it is ours again."""
        tags = p.get("tags") or []
        if a.kind in ("network", "subnet", "router", "security_group", "port", "floating_ip"):
            finder = getattr(
                self.conn.network, {"floating_ip": "get_ip"}.get(a.kind, f"get_{a.kind}")
            )
            res = self.gw.call("network", a.kind, "get", finder, a.target_id)
            self.gw.call("network", a.kind, "tag", self.conn.network.set_tags, res, tags)
            if a.kind == "floating_ip" and "port_id" in p:
                res = self.gw.call(
                    "network",
                    a.kind,
                    "update",
                    self.conn.network.update_ip,
                    a.target_id,
                    port_id=p["port_id"],
                )
            return to_object(a.kind, res)
        if a.kind == "load_balancer":
            res = self.gw.call(
                "load-balancer",
                a.kind,
                "update",
                self.conn.load_balancer.update_load_balancer,
                a.target_id,
                tags=tags,
            )
            return to_object(a.kind, res)
        raise FlexinfraError(f"internal: cannot adopt {a.kind}")

    def _delete(self, a: PlannedAction, p: dict[str, Any]) -> None:
        gw, c = self.gw, self.conn
        deleters = {
            "security_group_rule": ("network", c.network.delete_security_group_rule),
            "port": ("network", c.network.delete_port),
            "floating_ip": ("network", c.network.delete_ip),
            "server": ("compute", c.compute.delete_server),
            "server_group": ("compute", c.compute.delete_server_group),
            "volume": ("block-storage", c.block_storage.delete_volume),
            "listener": ("load-balancer", c.load_balancer.delete_listener),
            "pool": ("load-balancer", c.load_balancer.delete_pool),
            "health_monitor": ("load-balancer", c.load_balancer.delete_health_monitor),
        }
        if a.kind == "member":
            gw.call(
                "load-balancer",
                "member",
                "delete",
                c.load_balancer.delete_member,
                a.target_id,
                p["pool_id"],
                missing_ok=True,
            )
        elif a.kind == "load_balancer":
            gw.call(
                "load-balancer",
                "load_balancer",
                "delete",
                c.load_balancer.delete_load_balancer,
                a.target_id,
                cascade=True,
                missing_ok=True,
            )
        else:
            service, fn = deleters[a.kind]
            gw.call(service, a.kind, "delete", fn, a.target_id, missing_ok=True)
        return None
