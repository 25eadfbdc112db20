"""An in-memory OpenStack behind openstacksdk's proxy interface (``conn.network``, ...).

Only what flexinfra calls exists, with the behaviour it relies on: Neutron tags, a router's
interface ports, Nova servers that BUILD until ``tick()``, volumes that detach when their
server goes, Octavia children that cascade with their load balancer, quotas. IDs and
addresses are derived from names and tags, never from call order, so that passes whose calls
run in parallel give the same cloud every time.

Every call is logged (``calls``) as ``proxy.method key=value ...``: the golden tests compare
what the operator asked of the cloud, and the unit tests count calls.

One module of ~630 lines on purpose: the four services' fakes share one tenant state (a
server's delete detaches its volumes and frees its ports, a load balancer's delete cascades),
and the call log must see them in one order.
"""

from __future__ import annotations

import copy
import threading
from collections import defaultdict
from typing import Any

from openstack import exceptions as os_exc

PROJECT = "project-1"


class Res(dict):
    """A resource as the SDK returns it: attribute access plus ``to_dict``."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def to_dict(self, computed: bool = False) -> dict:
        return copy.deepcopy(dict(self))


def _arg(value: Any) -> str:
    if isinstance(value, Res):
        return value.get("id", "?")
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_arg(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_arg(v) for v in value) + "]"
    return repr(value)


class FakeCloud:
    def __init__(self, *, neutron_tags_on_create: bool = True) -> None:
        self.lock = threading.RLock()
        self.calls: list[str] = []
        self.neutron_tags_on_create = neutron_tags_on_create
        self.store: dict[str, dict[str, Res]] = defaultdict(dict)
        self.counters: dict[str, int] = defaultdict(int)
        #: server name -> Nova fault message: servers of that name go to ERROR on tick()
        self.failing: dict[str, str] = {}
        self.quota: dict[str, int] = {}
        self.images = {"cirros": "img-cirros"}
        self.flavors = {"m1.tiny": Res(id="flv-tiny", name="m1.tiny", vcpus=1, ram=512)}
        self.zones = ["az1", "az2"]
        self.put("network", Res(id="ext-net", name="public", is_router_external=True,
                                status="ACTIVE", tags=[]))
        self.put("subnet", Res(id="ext-subnet", name="public-v4", network_id="ext-net",
                               cidr="203.0.113.0/24", ip_version=4, tags=[]))

    # --- plumbing ---------------------------------------------------------------------------
    def connection(self) -> FakeConnection:
        return FakeConnection(self)

    def log(self, proxy: str, method: str, args: tuple, kwargs: dict) -> None:
        parts = [_arg(a) for a in args] + [f"{k}={_arg(v)}" for k, v in sorted(kwargs.items())]
        self.calls.append(f"{proxy}.{method} " + " ".join(parts))

    def new_id(self, kind: str, name: str) -> str:
        base = f"{kind}:{name or 'anon'}"
        self.counters[base] += 1
        n = self.counters[base]
        return base if n == 1 else f"{base}#{n}"

    def put(self, kind: str, res: Res) -> Res:
        self.store[kind][res["id"]] = res
        return res

    def get(self, kind: str, rid: str) -> Res:
        found = self.store[kind].get(rid)
        if found is None:
            raise os_exc.NotFoundException(message=f"{kind} {rid} could not be found",
                                           http_status=404)
        return found

    def objects(self, kind: str) -> list[Res]:
        return list(self.store[kind].values())

    def tick(self) -> None:
        """Time passes: building servers are ACTIVE (or ERROR when set to fail)."""
        with self.lock:
            for server in self.objects("server"):
                if server["status"] == "BUILD":
                    fault = self.failing.get(server["name"])
                    server["status"] = "ERROR" if fault else "ACTIVE"
                    server["fault"] = {"code": 500, "message": fault} if fault else None

    def find(self, kind: str, **match: Any) -> list[Res]:
        return [r for r in self.objects(kind) if all(r.get(k) == v for k, v in match.items())]

    def remove(self, kind: str, rid: str) -> None:
        self.store[kind].pop(rid, None)


class FakeConnection:
    def __init__(self, cloud: FakeCloud) -> None:
        self.cloud = cloud
        self.current_project_id = PROJECT
        self.network = _Proxy(cloud, "network", Network(cloud))
        self.compute = _Proxy(cloud, "compute", Compute(cloud))
        self.block_storage = _Proxy(cloud, "block_storage", BlockStorage(cloud))
        self.load_balancer = _Proxy(cloud, "load_balancer", LoadBalancer(cloud))
        self.image = _Proxy(cloud, "image", Image(cloud))

    def close(self) -> None:
        pass


class _Proxy:
    """Logs every call, holds the cloud's lock, hands out copies (as the SDK would)."""

    def __init__(self, cloud: FakeCloud, name: str, impl: Any) -> None:
        self._cloud, self._name, self._impl = cloud, name, impl

    def __getattr__(self, method: str) -> Any:
        fn = getattr(self._impl, method)

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._cloud.lock:
                self._cloud.log(self._name, method, args, kwargs)
                result = fn(*args, **kwargs)
                return copy.deepcopy(result)

        return call


def _id(value: Any) -> str:
    return value["id"] if isinstance(value, dict) else value


# --- Neutron ----------------------------------------------------------------------------------
class Network:
    def __init__(self, cloud: FakeCloud) -> None:
        self.c = cloud

    def _tags(self, kwargs: dict) -> list[str]:
        if "tags" in kwargs and not self.c.neutron_tags_on_create:
            raise os_exc.BadRequestException(
                message="400", details="Unrecognized attribute(s) 'tags'", http_status=400)
        return list(kwargs.pop("tags", None) or [])

    def _quota(self, kind: str) -> None:
        limit = self.c.quota.get(kind)
        if limit is not None and len(self.c.objects(kind)) >= limit:
            raise os_exc.ConflictException(
                message="409", details=f"Quota exceeded for resources: ['{kind}'].",
                http_status=409)

    # lists
    def networks(self, **_: Any) -> list[Res]:
        return self.c.objects("network")

    def subnets(self, **_: Any) -> list[Res]:
        return self.c.objects("subnet")

    def routers(self, **_: Any) -> list[Res]:
        return self.c.objects("router")

    def ports(self, **_: Any) -> list[Res]:
        return self.c.objects("port")

    def security_groups(self, **_: Any) -> list[Res]:
        return self.c.objects("security_group")

    def ips(self, **_: Any) -> list[Res]:
        return self.c.objects("floating_ip")

    # gets
    def get_network(self, rid: str) -> Res:
        return self.c.get("network", _id(rid))

    def get_subnet(self, rid: str) -> Res:
        return self.c.get("subnet", _id(rid))

    def get_router(self, rid: str) -> Res:
        return self.c.get("router", _id(rid))

    def get_security_group(self, rid: str) -> Res:
        return self.c.get("security_group", _id(rid))

    def get_port(self, rid: str) -> Res:
        return self.c.get("port", _id(rid))

    def get_ip(self, rid: str) -> Res:
        return self.c.get("floating_ip", _id(rid))

    def set_tags(self, res: Res, tags: list[str]) -> Res:
        for kind in ("network", "subnet", "router", "security_group", "port", "floating_ip"):
            if res["id"] in self.c.store[kind]:
                found = self.c.store[kind][res["id"]]
                found["tags"] = list(tags)
                return found
        raise os_exc.NotFoundException(message="404", http_status=404)

    # creates
    def create_network(self, **kw: Any) -> Res:
        tags = self._tags(kw)
        self._quota("network")
        return self.c.put("network", Res(id=self.c.new_id("net", kw["name"]), status="ACTIVE",
                                         is_router_external=False, tags=tags, **kw))

    def create_subnet(self, **kw: Any) -> Res:
        tags = self._tags(kw)
        self.c.get("network", kw["network_id"])
        return self.c.put("subnet", Res(id=self.c.new_id("subnet", kw["name"]), tags=tags,
                                        gateway_ip=kw["cidr"].rsplit(".", 1)[0] + ".1", **kw))

    def create_router(self, **kw: Any) -> Res:
        tags = self._tags(kw)
        return self.c.put("router", Res(id=self.c.new_id("router", kw["name"]), tags=tags,
                                        status="ACTIVE", **kw))

    def create_security_group(self, **kw: Any) -> Res:
        tags = self._tags(kw)
        sid = self.c.new_id("sg", kw["name"])
        rules = [
            {"id": f"{sid}/egress-{eth}", "direction": "egress", "ethertype": eth,
             "protocol": None, "port_range_min": None, "port_range_max": None,
             "remote_ip_prefix": None, "security_group_id": sid}
            for eth in ("IPv4", "IPv6")
        ]
        return self.c.put("security_group", Res(id=sid, tags=tags, security_group_rules=rules,
                                                **kw))

    def _address(self, subnet_id: str, tags: list[str]) -> str:
        subnet = self.c.get("subnet", subnet_id)
        index = next((t.rsplit(":", 1)[1] for t in tags if t.startswith("flexinfra-index:")),
                     None)
        host = 10 + int(index) if index is not None else 100 + len(self.c.objects("port"))
        return subnet["cidr"].rsplit(".", 1)[0] + f".{host}"

    def create_port(self, **kw: Any) -> Res:
        tags = self._tags(kw)
        self._quota("port")
        fixed = [{"subnet_id": ip["subnet_id"], "ip_address": self._address(ip["subnet_id"], tags)}
                 for ip in kw.pop("fixed_ips")]
        return self.c.put("port", Res(id=self.c.new_id("port", kw.get("name", "")), tags=tags,
                                      fixed_ips=fixed, device_id="", device_owner="",
                                      status="DOWN", **kw))

    def create_ip(self, **kw: Any) -> Res:
        tags = self._tags(kw)
        n = len(self.c.store["floating_ip"]) + self.c.counters["fip"] + 10
        self.c.counters["fip"] += 1
        return self.c.put("floating_ip", Res(
            id=self.c.new_id("fip", kw.get("description", "")), tags=tags, status="DOWN",
            floating_ip_address=f"203.0.113.{n}", **kw))

    def add_interface_to_router(self, router: str, subnet: str) -> Res:
        router_id = _id(router)
        self.c.get("router", router_id)
        sub = self.c.get("subnet", subnet)
        port = Res(id=f"port:ri-{router_id}-{subnet}", name="", tags=[],
                   network_id=sub["network_id"], device_id=router_id,
                   device_owner="network:router_interface", status="ACTIVE",
                   fixed_ips=[{"subnet_id": subnet, "ip_address": sub["gateway_ip"]}])
        self.c.put("port", port)
        return Res(id=router_id, subnet_id=subnet, port_id=port["id"])

    def remove_interface_from_router(self, router: str, port_id: str) -> Res:
        self.c.get("port", port_id)
        self.c.remove("port", port_id)
        return Res(id=_id(router))

    def create_security_group_rule(self, **kw: Any) -> Res:
        sg = self.c.get("security_group", kw["security_group_id"])
        key = tuple(kw.get(k) for k in ("direction", "ethertype", "protocol", "port_range_min",
                                        "port_range_max", "remote_ip_prefix"))
        for rule in sg["security_group_rules"]:
            if tuple(rule.get(k) for k in ("direction", "ethertype", "protocol",
                                           "port_range_min", "port_range_max",
                                           "remote_ip_prefix")) == key:
                raise os_exc.ConflictException(
                    message="409", details=f"Security group rule already exists. Rule id is "
                    f"{rule['id']}.", http_status=409)
        rule = {"id": f"{sg['id']}/" + "-".join(str(k) for k in key), **kw}
        sg["security_group_rules"].append(rule)
        return Res(rule)

    # updates
    def _update(self, kind: str, rid: Any, kw: dict) -> Res:
        found = self.c.get(kind, _id(rid))
        found.update(kw)
        return found

    def update_network(self, rid: Any, **kw: Any) -> Res:
        return self._update("network", rid, kw)

    def update_subnet(self, rid: Any, **kw: Any) -> Res:
        return self._update("subnet", rid, kw)

    def update_router(self, rid: Any, **kw: Any) -> Res:
        return self._update("router", rid, kw)

    def update_security_group(self, rid: Any, **kw: Any) -> Res:
        return self._update("security_group", rid, kw)

    def update_port(self, rid: Any, **kw: Any) -> Res:
        return self._update("port", rid, kw)

    def update_ip(self, rid: Any, **kw: Any) -> Res:
        found = self._update("floating_ip", rid, kw)
        found["status"] = "ACTIVE" if found.get("port_id") else "DOWN"
        return found

    # deletes
    def _delete(self, kind: str, rid: Any) -> None:
        self.c.get(kind, _id(rid))
        self.c.remove(kind, _id(rid))

    def delete_network(self, rid: Any) -> None:
        if self.c.find("subnet", network_id=_id(rid)) or self.c.find("port", network_id=_id(rid)):
            raise os_exc.ConflictException(message="409", details="network in use",
                                           http_status=409)
        self._delete("network", rid)

    def delete_subnet(self, rid: Any) -> None:
        if any(ip.get("subnet_id") == _id(rid) for p in self.c.objects("port")
               for ip in p.get("fixed_ips") or []):
            raise os_exc.ConflictException(message="409", details="subnet in use",
                                           http_status=409)
        self._delete("subnet", rid)

    def delete_router(self, rid: Any) -> None:
        if self.c.find("port", device_id=_id(rid)):
            raise os_exc.ConflictException(message="409", details="router has interfaces",
                                           http_status=409)
        self._delete("router", rid)

    def delete_security_group(self, rid: Any) -> None:
        self._delete("security_group", rid)

    def delete_port(self, rid: Any) -> None:
        self._delete("port", rid)

    def delete_ip(self, rid: Any) -> None:
        self._delete("floating_ip", rid)

    def delete_security_group_rule(self, rid: Any) -> None:
        for sg in self.c.objects("security_group"):
            rules = sg["security_group_rules"]
            if any(r["id"] == rid for r in rules):
                sg["security_group_rules"] = [r for r in rules if r["id"] != rid]
                return
        raise os_exc.NotFoundException(message="404", http_status=404)

    def get_quota(self, project: str, details: bool = False) -> Res:
        names = {"network": "networks", "subnet": "subnets", "router": "routers",
                 "port": "ports", "security_group": "security_groups",
                 "floating_ip": "floating_ips"}
        return Res({name: {"limit": self.c.quota.get(kind, -1),
                           "used": len(self.c.objects(kind)), "reserved": 0}
                    for kind, name in names.items()})


# --- Nova ---------------------------------------------------------------------------------------
class Compute:
    def __init__(self, cloud: FakeCloud) -> None:
        self.c = cloud

    def servers(self, **_: Any) -> list[Res]:
        return self.c.objects("server")

    def server_groups(self, **_: Any) -> list[Res]:
        return self.c.objects("server_group")

    def create_server_group(self, name: str, policy: str) -> Res:
        return self.c.put("server_group", Res(id=self.c.new_id("sg", name), name=name,
                                              policy=policy, member_ids=[]))

    def create_server(self, **kw: Any) -> Res:
        limit = self.c.quota.get("server")
        if limit is not None and len(self.c.objects("server")) >= limit:
            raise os_exc.ForbiddenException(
                message="403", details="Quota exceeded for instances: Requested 1, but already "
                f"used {limit} of {limit} instances", http_status=403)
        if kw["image_id"] not in self.c.images.values():
            raise os_exc.BadRequestException(
                message="400", details=f"Image {kw['image_id']} could not be found.",
                http_status=400)
        sid = self.c.new_id("server", kw["name"])
        port = self.c.get("port", kw["networks"][0]["port"])
        zone = kw.get("availability_zone") or self.c.zones[0]
        port.update(device_id=sid, device_owner=f"compute:{zone}")
        group = (kw.get("scheduler_hints") or {}).get("group")
        if group:
            self.c.get("server_group", group)["member_ids"].append(sid)
        return self.c.put("server", Res(
            id=sid, name=kw["name"], status="BUILD", availability_zone=zone,
            tags=list(kw.get("tags") or []), metadata=dict(kw.get("metadata") or {}),
            fault=None, task_state=None, flavor={"id": kw["flavor_id"]},
            image={"id": kw["image_id"]}, user_data=kw.get("user_data"),
            key_name=kw.get("key_name")))

    def delete_server(self, rid: Any) -> None:
        sid = _id(rid)
        self.c.get("server", sid)
        self.c.remove("server", sid)
        for port in self.c.find("port", device_id=sid):
            port.update(device_id="", device_owner="")
        for volume in self.c.objects("volume"):
            if any(a["server_id"] == sid for a in volume["attachments"]):
                volume.update(attachments=[], status="available")
        for group in self.c.objects("server_group"):
            if sid in group["member_ids"]:
                group["member_ids"].remove(sid)

    def delete_server_group(self, rid: Any) -> None:
        self.c.get("server_group", _id(rid))
        self.c.remove("server_group", _id(rid))

    def create_volume_attachment(self, server: Any, volume_id: str) -> Res:
        self.c.get("server", _id(server))
        volume = self.c.get("volume", volume_id)
        volume.update(status="in-use", attachments=[{"server_id": _id(server)}])
        return Res(id=f"att-{volume_id}", volume_id=volume_id, server_id=_id(server))

    def find_flavor(self, name_or_id: str, ignore_missing: bool = True) -> Res | None:
        return next((f for f in self.c.flavors.values()
                     if name_or_id in (f["id"], f["name"])), None)

    def availability_zones(self, **_: Any) -> list[Res]:
        return [Res(name=z, state={"available": True}) for z in self.c.zones]

    def get_limits(self) -> Res:
        limit = self.c.quota.get("server", -1)
        return Res(absolute=Res(instances=limit, instances_used=len(self.c.objects("server")),
                                total_cores=-1, total_cores_used=0, total_ram=-1,
                                total_ram_used=0))


# --- Cinder -------------------------------------------------------------------------------------
class BlockStorage:
    def __init__(self, cloud: FakeCloud) -> None:
        self.c = cloud

    def volumes(self, **_: Any) -> list[Res]:
        return self.c.objects("volume")

    def snapshots(self, **_: Any) -> list[Res]:
        return self.c.objects("snapshot")

    def create_volume(self, **kw: Any) -> Res:
        return self.c.put("volume", Res(id=self.c.new_id("volume", kw["name"]),
                                        status="available", attachments=[], **kw))

    def delete_volume(self, rid: Any) -> None:
        volume = self.c.get("volume", _id(rid))
        if volume["attachments"]:
            raise os_exc.BadRequestException(message="400", details="volume is attached",
                                             http_status=400)
        self.c.remove("volume", _id(rid))

    def delete_snapshot(self, rid: Any) -> None:
        self.c.get("snapshot", _id(rid))
        self.c.remove("snapshot", _id(rid))

    def get_quota_set(self, project: str, usage: bool = False) -> Res:
        return Res(volumes=self.c.quota.get("volume", -1), gigabytes=-1,
                   usage={"volumes": len(self.c.objects("volume"))}, reservation={})


# --- Octavia ------------------------------------------------------------------------------------
class LoadBalancer:
    def __init__(self, cloud: FakeCloud) -> None:
        self.c = cloud

    def load_balancers(self, **_: Any) -> list[Res]:
        return self.c.objects("load_balancer")

    def listeners(self, **_: Any) -> list[Res]:
        return self.c.objects("listener")

    def pools(self, **_: Any) -> list[Res]:
        return self.c.objects("pool")

    def health_monitors(self, **_: Any) -> list[Res]:
        return self.c.objects("health_monitor")

    def members(self, pool: Any, **_: Any) -> list[Res]:
        return self.c.find("member", pool_id=_id(pool))

    def create_load_balancer(self, **kw: Any) -> Res:
        limit = self.c.quota.get("load_balancer")
        if limit is not None and len(self.c.objects("load_balancer")) >= limit:
            raise os_exc.ForbiddenException(message="403", details="Quota has been met",
                                            http_status=403)
        lid = self.c.new_id("lb", kw["name"])
        subnet = self.c.get("subnet", kw["vip_subnet_id"])
        address = subnet["cidr"].rsplit(".", 1)[0] + ".5"
        self.c.put("port", Res(id=f"port:vip-{lid}", name=f"octavia-lb-{lid}", tags=[],
                               network_id=subnet["network_id"], device_id=lid,
                               device_owner="Octavia", status="DOWN",
                               fixed_ips=[{"subnet_id": subnet["id"], "ip_address": address}]))
        return self.c.put("load_balancer", Res(
            id=lid, provisioning_status="ACTIVE", operating_status="ONLINE",
            vip_port_id=f"port:vip-{lid}", vip_address=address, project_id=PROJECT,
            tags=list(kw.pop("tags", None) or []), **kw))

    def update_load_balancer(self, rid: Any, **kw: Any) -> Res:
        found = self.c.get("load_balancer", _id(rid))
        found.update(kw)
        return found

    def delete_load_balancer(self, rid: Any, cascade: bool = False) -> None:
        lid = _id(rid)
        self.c.get("load_balancer", lid)
        for listener in self.c.objects("listener"):
            if listener["load_balancers"][0]["id"] == lid:
                self.c.remove("listener", listener["id"])
        for pool in self.c.objects("pool"):
            if pool["loadbalancers"][0]["id"] == lid:
                self.c.remove("pool", pool["id"])
                for member in self.c.find("member", pool_id=pool["id"]):
                    self.c.remove("member", member["id"])
                for hm in self.c.objects("health_monitor"):
                    if hm["pools"][0]["id"] == pool["id"]:
                        self.c.remove("health_monitor", hm["id"])
        self.c.remove("port", f"port:vip-{lid}")
        self.c.remove("load_balancer", lid)

    def create_listener(self, **kw: Any) -> Res:
        lb = self.c.get("load_balancer", kw.pop("loadbalancer_id"))
        return self.c.put("listener", Res(
            id=self.c.new_id("listener", kw["name"]), provisioning_status="ACTIVE",
            load_balancers=[{"id": lb["id"]}], default_pool_id=None, project_id=PROJECT,
            **kw))

    def create_pool(self, **kw: Any) -> Res:
        listener = self.c.get("listener", kw.pop("listener_id"))
        pid = self.c.new_id("pool", kw["name"])
        listener["default_pool_id"] = pid
        return self.c.put("pool", Res(
            id=pid, provisioning_status="ACTIVE", operating_status="ONLINE",
            listeners=[{"id": listener["id"]}],
            loadbalancers=listener["load_balancers"], members=[], healthmonitor_id=None,
            project_id=PROJECT, **kw))

    def create_health_monitor(self, **kw: Any) -> Res:
        pool = self.c.get("pool", kw.pop("pool_id"))
        hid = self.c.new_id("hm", kw["name"])
        pool["healthmonitor_id"] = hid
        if kw.get("type") in ("HTTP", "HTTPS"):
            kw.setdefault("url_path", "/")
            kw.setdefault("expected_codes", "200")
        return self.c.put("health_monitor", Res(
            id=hid, provisioning_status="ACTIVE", pools=[{"id": pool["id"]}],
            project_id=PROJECT, **kw))

    def _update(self, kind: str, rid: Any, kw: dict) -> Res:
        found = self.c.get(kind, _id(rid))
        found.update(kw)
        return found

    def update_listener(self, rid: Any, **kw: Any) -> Res:
        return self._update("listener", rid, kw)

    def update_pool(self, rid: Any, **kw: Any) -> Res:
        return self._update("pool", rid, kw)

    def update_health_monitor(self, rid: Any, **kw: Any) -> Res:
        return self._update("health_monitor", rid, kw)

    def update_member(self, member: Any, pool: Any, **kw: Any) -> Res:
        return self._update("member", member, kw)

    def delete_listener(self, rid: Any) -> None:
        self.c.get("listener", _id(rid))
        self.c.remove("listener", _id(rid))

    def delete_pool(self, rid: Any) -> None:
        pool = self.c.get("pool", _id(rid))
        for listener in self.c.objects("listener"):
            if listener.get("default_pool_id") == pool["id"]:
                listener["default_pool_id"] = None
        for member in self.c.find("member", pool_id=pool["id"]):
            self.c.remove("member", member["id"])
        self.c.remove("pool", pool["id"])

    def delete_health_monitor(self, rid: Any) -> None:
        hm = self.c.get("health_monitor", _id(rid))
        for pool in self.c.objects("pool"):
            if pool.get("healthmonitor_id") == hm["id"]:
                pool["healthmonitor_id"] = None
        self.c.remove("health_monitor", hm["id"])

    def create_member(self, pool: Any, **kw: Any) -> Res:
        p = self.c.get("pool", _id(pool))
        member = Res(id=f"member:{p['id']}/{kw['address']}:{kw['protocol_port']}",
                     pool_id=p["id"], provisioning_status="ACTIVE", operating_status="ONLINE",
                     project_id=PROJECT, **kw)
        p["members"] = [*p["members"], {"id": member["id"]}]
        return self.c.put("member", member)

    def delete_member(self, member: Any, pool: Any) -> None:
        mid = _id(member)
        self.c.get("member", mid)
        self.c.remove("member", mid)
        p = self.c.get("pool", _id(pool))
        p["members"] = [m for m in p["members"] if m["id"] != mid]

    def get_quota(self, project: str) -> Res:
        return Res(project_id=PROJECT, load_balancers=self.c.quota.get("load_balancer", -1),
                   listeners=-1, pools=-1, health_monitors=-1, members=-1)


# --- Glance -------------------------------------------------------------------------------------
class Image:
    def __init__(self, cloud: FakeCloud) -> None:
        self.c = cloud

    def find_image(self, name_or_id: str, ignore_missing: bool = True) -> Res | None:
        if name_or_id in self.c.images:
            return Res(id=self.c.images[name_or_id], name=name_or_id)
        if name_or_id in self.c.images.values():
            return Res(id=name_or_id, name=name_or_id)
        return None
