"""Apply planned actions through the gateway, in order, without long waits.

Octavia refuses changes to a load balancer's children while it is PENDING_*: before such an
action the executor polls the LB for at most ``lb_wait`` seconds; if it is still busy, every
remaining LB action is left for the next pass (the plan is recomputed then) and the caller
requeues.
"""

from __future__ import annotations

import base64
import time
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


class Executor:
    def __init__(self, gateway: Gateway, known: dict[str, Any], *, lb_wait: float = 3.0) -> None:
        self.gw = gateway
        self.conn = gateway.conn
        self.known = dict(known)  # key -> CloudObject of what already exists
        self.lb_wait = lb_wait
        self.result = Execution()

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
        for action in actions:
            if action.needs_active_lb and (self.result.lb_busy or not self._lb_active()):
                self.result.lb_busy = True
                self.result.skipped.append(action)
                continue
            params = {k: self.resolve(v) for k, v in action.params.items()}
            try:
                obj = self._apply(action, params)
            except FlexinfraError as err:
                if "could not be found" in err.message or "not found" in err.message.lower():
                    self.gw.forget_lookups()  # e.g. a flavor re-created: look it up again
                    self.gw.invalidate()
                raise
            if obj is not None and action.key:
                self.result.created[action.key] = obj
            self.result.done.append(action)
            self.result.events.append(
                (
                    PAST.get(action.verb, action.verb.title()),
                    f"{action.kind.replace('_', ' ')} {action.name}: {action.reason}",
                )
            )
        return self.result

    def _lb_active(self) -> bool:
        lb = self.result.created.get("load_balancer") or self.known.get("load_balancer")
        if lb is None:
            return False
        deadline = time.monotonic() + self.lb_wait
        while True:
            fresh = self.gw.call(
                "load-balancer",
                "load_balancer",
                "get",
                self.conn.load_balancer.get_load_balancer,
                lb.id,
                missing_ok=True,
            )
            if fresh is None:
                return False
            if fresh.provisioning_status == "ACTIVE":
                return True
            if fresh.provisioning_status == "ERROR" or time.monotonic() > deadline:
                return False
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
