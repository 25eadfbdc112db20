"""Neutron kinds: networks, subnets, routers and their interfaces, ports, security groups and
their rules, floating IPs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flexinfra.cloud.adapters.base import Adapter, Owned, Params, TeardownStep
from flexinfra.core import tags as T
from flexinfra.core.errors import ErrorCode, FlexinfraError
from flexinfra.core.kinds import Kind as K
from flexinfra.core.objects import CloudObject
from flexinfra.core.plan import PlannedAction
from flexinfra.core.tags import Owner

if TYPE_CHECKING:
    from flexinfra.cloud.gateway import Gateway


class NeutronAdapter(Adapter):
    service = "network"
    proxy = "network"
    adoptable = True

    def create(self, gw: Gateway, a: PlannedAction, p: Params) -> CloudObject | None:
        """Tags go in the create's body where Neutron takes them (``Gateway.neutron_create``
        learns that once per tenant)."""
        found = self.finder(gw, a, p)
        tags = p.pop("tags", None)
        res = gw.neutron_create(self.kind, self.sdk(gw, "create"), tags, found, **self.named(a),
                                **p)
        return self.to_object(res)

    def named(self, a: PlannedAction) -> dict[str, str]:
        return {"name": a.name}

    def get(self, gw: Gateway, target_id: str) -> Any:
        return gw.call(self.service, self.kind, "get", self.sdk(gw, "get"), target_id)

    def set_tags(self, gw: Gateway, res: Any, tags: list[str]) -> None:
        gw.call(self.service, self.kind, "tag", gw.sdk("network", "set_tags"), res, tags)

    def adopt(self, gw: Gateway, a: PlannedAction, p: Params) -> CloudObject | None:
        res = self.get(gw, a.target_id)
        self.set_tags(gw, res, p.get("tags") or [])
        return self.to_object(res)


class Network(NeutronAdapter):
    kind = K.NETWORK
    lister = "networks"
    touches = frozenset({K.NETWORK, K.SUBNET, K.PORT})
    teardown_rank = 7
    quota = "networks"


class Subnet(NeutronAdapter):
    kind = K.SUBNET
    lister = "subnets"
    touches = frozenset({K.SUBNET, K.NETWORK, K.PORT})  # a DHCP port may come with it
    teardown_rank = 6
    quota = "subnets"


class Router(NeutronAdapter):
    kind = K.ROUTER
    lister = "routers"
    touches = frozenset({K.ROUTER, K.PORT})
    teardown_rank = 5
    quota = "routers"


class RouterInterface(Adapter):
    """A router's port on a subnet. Not listed: it is a port with the router as device."""

    kind = K.ROUTER_INTERFACE
    service = "network"
    proxy = "network"
    touches = frozenset({K.ROUTER, K.PORT, K.SUBNET})
    teardown_rank = 4

    def create(self, gw: Gateway, a: PlannedAction, p: Params) -> CloudObject | None:
        gw.call(self.service, self.kind, "create", gw.sdk("network", "add_interface_to_router"),
                p["router_id"], subnet=p["subnet_id"])
        return None

    def teardown(
        self, gw: Gateway, owner: Owner, owned: Owned, snap: Any
    ) -> TeardownStep:
        """Interfaces of the owner's routers, found by device (their ports carry no tags)."""
        step = TeardownStep()
        for router in owned.get(K.ROUTER, []):
            for port in snap.of(K.PORT):
                if port.get("device_id") == router.id and "router_interface" in (
                    port.get("device_owner") or ""
                ):
                    gw.call(self.service, self.kind, "delete",
                            gw.sdk("network", "remove_interface_from_router"), router.id,
                            port_id=port.id, missing_ok=True)
                    step.events.append(
                        ("Deleted", f"router interface {port.id} of {router.name}")
                    )
        return step


class Port(NeutronAdapter):
    kind = K.PORT
    lister = "ports"
    touches = frozenset({K.PORT})
    teardown_rank = 3
    quota = "ports"

    def is_orphan(self, obj: CloudObject, name: str) -> bool:
        """No tags at all and no device: a port whose create lost its tagging call (a port
        with a device, e.g. a load balancer's VIP, is someone else's)."""
        return obj.name == name and not obj.tags and not obj.get("device_owner")

    def teardown(self, gw: Gateway, owner: Owner, owned: Owned, snap: Any) -> TeardownStep:
        """The owner's ports, and the debris on its own subnets: unattached, untagged ports
        that kept the subnet (hence the finalizer) forever. Found by the campaign: Octavia
        left an amphora's VRRP port behind a load balancer it had deleted. The owner's
        network is its own; nothing else belongs there (the host's DHCP-owned port is
        attached, and goes with the subnet)."""
        step = super().teardown(gw, owner, owned, snap)
        subnets = {s.id for s in owned.get(K.SUBNET, [])}
        mine = {p.id for p in owned.get(self.kind, [])}
        for port in snap.of(self.kind):
            on_ours = any(ip.get("subnet_id") in subnets for ip in port.get("fixed_ips") or [])
            if (on_ours and port.id not in mine and not port.get("device_owner")
                    and not T.has_owner(port.tags)):
                self.delete(gw, port.id)
                step.events.append(("Deleted", f"unattached port {port.name or port.id} left "
                                    "on the subnet"))
        return step


class SecurityGroup(NeutronAdapter):
    kind = K.SECURITY_GROUP
    lister = "security_groups"
    touches = frozenset({K.SECURITY_GROUP})
    teardown_rank = 8
    quota = "security_groups"


class SecurityGroupRule(Adapter):
    """Rules are part of their group's listing; a rule has no name and no tags."""

    kind = K.SECURITY_GROUP_RULE
    service = "network"
    proxy = "network"
    touches = frozenset({K.SECURITY_GROUP})

    def create(self, gw: Gateway, a: PlannedAction, p: Params) -> CloudObject | None:
        rule = p["rule"]
        # a remote-group rule (source: the members of a group) names the group's id
        remote = {"remote_group_id": p["remote_group_id"]} if p.get("remote_group_id") else {}
        try:
            gw.call(self.service, self.kind, "create", self.sdk(gw, "create"),
                    security_group_id=p["security_group_id"], direction=rule.direction,
                    ethertype=rule.ethertype, protocol=rule.protocol,
                    port_range_min=rule.port_min, port_range_max=rule.port_max,
                    remote_ip_prefix=rule.remote_ip_prefix, **remote)
        except FlexinfraError as err:
            if err.code is not ErrorCode.CONFLICT:  # 409 on a rule: the same rule exists
                raise
        return None


class FloatingIP(NeutronAdapter):
    kind = K.FLOATING_IP
    lister = "ips"
    touches = frozenset({K.FLOATING_IP, K.PORT})
    teardown_rank = 0
    quota = "floating_ips"

    def sdk(self, gw: Gateway, verb: str) -> Any:
        return gw.sdk(self.proxy, f"{verb}_ip")  # openstacksdk says ``create_ip``, ``get_ip``

    def named(self, a: PlannedAction) -> dict[str, str]:
        return {}  # floating IPs have no name: ours carry it as their description

    def is_orphan(self, obj: CloudObject, name: str) -> bool:
        return obj.get("description") == name and not T.has_owner(obj.tags)

    def identity(self, obj: CloudObject) -> str:
        return obj.get("description") or ""

    def made_by(self, obj: CloudObject, a: PlannedAction, p: Params) -> bool:
        wanted = set(p.get("tags") or [])
        return obj.get("description") == a.name and bool(wanted) and wanted <= obj.tags

    def adopt(self, gw: Gateway, a: PlannedAction, p: Params) -> CloudObject | None:
        """Tag it, and put it where the plan wants it (an orphan, or a retained address)."""
        res = self.get(gw, a.target_id)
        self.set_tags(gw, res, p.get("tags") or [])
        if "port_id" in p:
            res = gw.call(self.service, self.kind, "update", self.sdk(gw, "update"),
                          a.target_id, port_id=p["port_id"])
        return self.to_object(res)

    def teardown(
        self, gw: Gateway, owner: Owner, owned: Owned, snap: Any
    ) -> TeardownStep:
        """Deleted, unless tagged to be retained: then released with a tag that a WebSite of
        the same namespace and name finds again (``Owner.retained_tag``)."""
        step = TeardownStep()
        for fip in owned.get(self.kind, []):
            if T.RETAIN_TAG not in fip.tags:
                self.delete(gw, fip.id)
                step.events.append(("Deleted", f"{self.kind.label} {fip.name or fip.id}"))
                continue
            gw.call(self.service, self.kind, "update", self.sdk(gw, "update"), fip.id,
                    port_id=None)
            self.set_tags(gw, self.get(gw, fip.id), [owner.retained_tag])
            step.events.append((
                "Retained",
                f"floating IP {fip.get('floating_ip_address')} kept "
                "for a re-created site (publicIP.retain)",
            ))
        return step


ADAPTERS = (Network(), Subnet(), Router(), RouterInterface(), Port(), SecurityGroup(),
            SecurityGroupRule(), FloatingIP())
