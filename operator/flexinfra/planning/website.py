"""The WebSite planner: (intent, observed) -> ordered actions. Pure; unit-tested without a cloud.

One pass plans everything that can be done now, in dependency order; objects created in the
same pass are referenced with ``Ref``. Whatever must wait for the cloud (a server in BUILD, a
load balancer in PENDING_*) is reported in ``Plan.waiting`` and planned on a later pass, so a
pass never blocks. Server changes follow two rules:

* a server leaves only after its pool members are gone (members are deleted in one pass, the
  server in a later pass, once no member points at it);
* a template change is a rolling replacement with surge 1: one new server is created, joins
  the pools, and only then one old server is drained and deleted; the number of serving
  servers never drops below ``replicas`` (so the pool is never empty).

With per-server volumes (``volume_size_gb``) a replacement is in place instead: the old server
is drained and deleted first and its successor takes the same index, hence the same volume
(never a fresh one). At least ``replicas - 1`` servers serve meanwhile, so with ``replicas: 1``
the site is down until the successor serves: a short outage is preferred to losing the data.
A server that goes for good (scale down, or volumes turned off) takes its volume with it: the
volume is deleted once detached, with its data.

A server that keeps going to ERROR is not re-created forever: the failures in a row at one
index are counted on that index's port (it outlives its servers), and after
``MAX_SERVER_FAILURES`` the ERROR server is kept for inspection and the site is blocked with
Nova's fault message. A server of that index reaching ACTIVE clears the count.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from flexinfra.cloud import tags as T
from flexinfra.planning.model import (
    CloudObject,
    ObservedSite,
    Plan,
    PlannedAction,
    Ref,
    RuleKey,
    SiteIntent,
)

ACTIVE = "ACTIVE"
BUILDING = {"BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING", "REBOOT", "HARD_REBOOT"}
FAILED = {"ERROR", "DELETED", "SOFT_DELETED", "SHELVED", "SHELVED_OFFLOADED", "UNKNOWN"}
LB_PENDING = {"PENDING_CREATE", "PENDING_UPDATE", "PENDING_DELETE"}
#: servers of one index that may go to ERROR in a row before we stop re-creating them
MAX_SERVER_FAILURES = 3
#: on a server's port: ``<template hash>:<n>`` failures in a row, and the last failed server
FAILURES_PREFIX = "flexinfra-failures:"
FAILED_PREFIX = "flexinfra-failed:"

POOL_PROTOCOL = {
    "HTTP": "HTTP",
    "HTTPS": "HTTPS",
    "TCP": "TCP",
    "UDP": "UDP",
    "TERMINATED_HTTPS": "HTTP",
}


DOWN_IN_PLACE = (
    "; in place to keep the volume, so the site is down until the new server serves"
)


# --- names ---------------------------------------------------------------------------------
def names(prefix: str) -> dict[str, str]:
    return {
        "network": f"{prefix}-net",
        "subnet": f"{prefix}-subnet",
        "router": f"{prefix}-router",
        "security_group": f"{prefix}-sg",
        "load_balancer": f"{prefix}-lb",
        "floating_ip": f"{prefix}-fip",
    }


def server_name(prefix: str, index: int) -> str:
    return f"{prefix}-web-{index}"


def volume_name(prefix: str, index: int) -> str:
    return f"{prefix}-vol-{index}"


def listener_name(prefix: str, port: int) -> str:
    return f"{prefix}-lis-{port}"


def pool_name(prefix: str, port: int) -> str:
    return f"{prefix}-pool-{port}"


def monitor_name(prefix: str, port: int) -> str:
    return f"{prefix}-hm-{port}"


# --- security group ------------------------------------------------------------------------
def desired_rules(intent: SiteIntent, subnet_cidr: str | None) -> set[RuleKey]:
    """Only what spec.ingress and the template declare, plus Neutron's default egress.

    Template ports are opened to the site's own subnet: that is where the load balancer's
    traffic and health checks come from. ``spec.ingress`` opens a port to a CIDR.
    """
    rules = {
        RuleKey("egress", "IPv4", None, None, None, None),
        RuleKey("egress", "IPv6", None, None, None, None),
    }
    for port, protocol, cidr in intent.ingress:
        rules.add(
            RuleKey("ingress", _ethertype(cidr), protocol.lower(), port, port, _norm_cidr(cidr))
        )
    if subnet_cidr:
        for port, protocol in intent.template_ports:
            rules.add(
                RuleKey("ingress", "IPv4", protocol.lower(), port, port, _norm_cidr(subnet_cidr))
            )
    return rules


def observed_rule_key(rule: dict) -> RuleKey:
    prefix = rule.get("remote_ip_prefix")
    return RuleKey(
        rule["direction"],
        rule.get("ethertype") or "IPv4",
        (rule.get("protocol") or None) and str(rule["protocol"]).lower(),
        rule.get("port_range_min"),
        rule.get("port_range_max"),
        _norm_cidr(prefix) if prefix else None,
    )


def _norm_cidr(cidr: str) -> str:
    return str(ipaddress.ip_network(cidr, strict=False))


def _ethertype(cidr: str) -> str:
    return "IPv6" if ipaddress.ip_network(cidr, strict=False).version == 6 else "IPv4"


# --- servers -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServerView:
    obj: CloudObject
    index: int
    template_hash: str | None
    az: str | None
    address: str | None  # fixed IP of its port

    @property
    def status(self) -> str:
        return self.obj.status or "UNKNOWN"


def server_views(observed: ObservedSite) -> list[ServerView]:
    views = []
    for server in observed.servers:
        index_text = T.tag_value(server.tags, T.INDEX_PREFIX) or server.name.rsplit("-", 1)[-1]
        try:
            index = int(index_text)
        except ValueError:
            index = -1
        port = observed.ports.get(index)
        views.append(
            ServerView(
                obj=server,
                index=index,
                template_hash=T.tag_value(server.tags, T.TEMPLATE_PREFIX),
                az=server.get("availability_zone"),
                address=port_address(port) if port else None,
            )
        )
    return sorted(views, key=lambda v: v.index)


def port_address(port: CloudObject) -> str | None:
    fixed = port.get("fixed_ips") or []
    return fixed[0].get("ip_address") if fixed else None


def is_current(view: ServerView, intent: SiteIntent) -> bool:
    """Built from the current template, in an allowed zone, and not failed."""
    if view.status in FAILED or view.template_hash != intent.template_hash:
        return False
    return not intent.availability_zones or view.az in intent.availability_zones


def failure_record(port: CloudObject | None) -> tuple[str | None, int, str | None]:
    """(template hash, failures in a row, id of the last failed server) kept on a port."""
    if port is None:
        return None, 0, None
    value = T.tag_value(port.tags, FAILURES_PREFIX) or ""
    tmpl, _, count = value.rpartition(":")
    n = int(count) if count.isdigit() else 0
    return (tmpl or None), n, T.tag_value(port.tags, FAILED_PREFIX)


def failures_in_a_row(view: ServerView, port: CloudObject | None) -> int:
    """How many servers of this index failed in a row, ``view`` (in ERROR) included.

    Idempotent: the port remembers the last failed server it counted, so seeing the same
    ERROR server again on the next pass does not count it twice."""
    tmpl, n, last = failure_record(port)
    if last == view.obj.id:
        return n
    return n + 1 if tmpl == view.template_hash else 1


def fault_message(view: ServerView) -> str:
    fault = view.obj.get("fault") or {}
    return str(fault.get("message") or "").strip() if isinstance(fault, dict) else ""


def choose_zone(intent: SiteIntent, current_zones: list[str | None]) -> str | None:
    """The allowed zone with the fewest current servers (ties: the order given in the spec)."""
    if not intent.availability_zones:
        return None
    return min(
        intent.availability_zones,
        key=lambda z: (current_zones.count(z), intent.availability_zones.index(z)),
    )


# --- the planner ---------------------------------------------------------------------------
class Planner:
    """Builds one pass's plan; a class only to share ``intent``/``observed``/``plan``."""

    def __init__(self, intent: SiteIntent, observed: ObservedSite) -> None:
        self.intent = intent
        self.obs = observed
        self.plan = Plan()
        self.names = names(intent.prefix)
        self.invalid: list[str] = []
        self.joining: list[tuple[int, ServerView]] = []  # members to add, after the pools

    # helpers
    def add(
        self,
        verb: str,
        kind: str,
        name: str,
        reason: str,
        key: str | None = None,
        target_id: str | None = None,
        **params,
    ) -> None:
        self.plan.actions.append(PlannedAction(verb, kind, name, reason, key, target_id, params))

    def tags(self, role: str, **extra) -> list[str]:
        owner = T.Owner(self.intent.owner_uid, "", "")
        return T.object_tags(owner, role, **extra)

    def adopt_or_create(self, kind: str, name: str, key: str, reason: str, **params) -> str | Ref:
        """Create ``name`` unless an untagged object of that name exists: then tag (adopt) it."""
        orphan = self.obs.untagged.get(f"{kind}:{name}")
        if orphan is not None:
            self.add(
                "adopt",
                kind,
                name,
                "found untagged with our name; tagging it",
                key,
                orphan.id,
                tags=params.get("tags"),
            )
            return orphan.id
        self.add("create", kind, name, reason, key, **params)
        return Ref(key)

    # steps
    def run(self) -> Plan:
        network_id, subnet_id, subnet_cidr = self.network()
        # the load balancer is the long pole (tens of seconds to ACTIVE): ask for it first so
        # its PENDING_CREATE overlaps the router, security group and servers
        lb_ref = self.load_balancer(subnet_id)
        self.router(subnet_id)
        sg_id = self.security_group(subnet_cidr)
        group_id = self.server_groups()
        self.servers(network_id, subnet_id, sg_id, group_id)
        if lb_ref is not None:
            self.load_balancer_children(lb_ref)
        return self.plan  # if self.invalid, the caller raises InvalidSpec and executes nothing

    def network(self) -> tuple[str | Ref | None, str | Ref | None, str | None]:
        i, o = self.intent, self.obs
        if i.existing_network:
            if o.shared_network is None:
                self.invalid.append(
                    f"network.existingNetwork {i.existing_network!r} was not found in the project; "
                    "create it or fix the name"
                )
                return None, None, None
            if o.shared_subnet is None:
                self.invalid.append(
                    f"network.existingNetwork {i.existing_network!r} has no IPv4 subnet"
                )
                return o.shared_network.id, None, None
            return o.shared_network.id, o.shared_subnet.id, o.shared_subnet.get("cidr")
        if not i.cidr:
            self.invalid.append("set network.cidr (e.g. 10.20.1.0/24) or network.existingNetwork")
            return None, None, None
        if o.network is None:
            network_id: str | Ref = self.adopt_or_create(
                "network", self.names["network"], "network", "missing", tags=self.tags("network")
            )
        else:
            network_id = o.network.id
        if o.subnet is None:
            if o.overlapping_subnets:
                self.invalid.append(
                    f"network.cidr {i.cidr} overlaps existing subnet(s) "
                    f"{', '.join(o.overlapping_subnets)}; "
                    "choose a free range"
                )
            subnet_id: str | Ref = self.adopt_or_create(
                "subnet",
                self.names["subnet"],
                "subnet",
                "missing",
                network_id=network_id,
                cidr=i.cidr,
                ip_version=4,
                dns_nameservers=list(i.dns_nameservers),
                tags=self.tags("subnet"),
            )
        else:
            subnet_id = o.subnet.id
            if _norm_cidr(o.subnet.get("cidr")) != _norm_cidr(i.cidr):
                self.invalid.append(
                    f"network.cidr changed from {o.subnet.get('cidr')} to {i.cidr}: "
                    "a built subnet cannot "
                    "change range; put the old value back, or delete and re-create the WebSite"
                )
            elif sorted(o.subnet.get("dns_nameservers") or []) != sorted(i.dns_nameservers):
                self.add(
                    "update",
                    "subnet",
                    self.names["subnet"],
                    "DNS servers differ",
                    "subnet",
                    o.subnet.id,
                    dns_nameservers=list(i.dns_nameservers),
                )
        return network_id, subnet_id, i.cidr

    def router(self, subnet_id: str | Ref | None) -> None:
        """Our own router, gateway on the external network; a shared network brings its own."""
        i, o = self.intent, self.obs
        if i.existing_network:
            return
        if o.external_network_id is None:
            self.invalid.append(
                f"external network {i.external_network!r} not found; "
                "set network.externalNetwork to one "
                "of the cloud's external networks"
            )
            return
        gateway = {"network_id": o.external_network_id}
        if o.router is None:
            router_id: str | Ref = self.adopt_or_create(
                "router",
                self.names["router"],
                "router",
                "missing",
                external_gateway_info=gateway,
                tags=self.tags("router"),
            )
        else:
            router_id = o.router.id
            current = (o.router.get("external_gateway_info") or {}).get("network_id")
            if current != o.external_network_id:
                self.add(
                    "update",
                    "router",
                    self.names["router"],
                    "external gateway missing or changed",
                    "router",
                    o.router.id,
                    external_gateway_info=gateway,
                )
        if subnet_id is not None and o.router_interface is None:
            self.add(
                "create",
                "router_interface",
                self.names["router"],
                "subnet not attached to router",
                "router_interface",
                router_id=router_id,
                subnet_id=subnet_id,
            )

    def security_group(self, subnet_cidr: str | None) -> str | Ref:
        o = self.obs
        want = desired_rules(self.intent, subnet_cidr)
        name = self.names["security_group"]
        orphan = o.untagged.get(f"security_group:{name}")
        if o.security_group is None and orphan is None:
            sg_id: str | Ref = self.adopt_or_create(
                "security_group",
                name,
                "security_group",
                "missing",
                description="flexinfra: managed, changes are reverted",
                tags=self.tags("security_group"),
            )
            have: dict[RuleKey, list[str]] = {}
            if isinstance(sg_id, Ref):
                # Neutron adds the two default egress rules itself on create
                have = {
                    k: ["default"] for k in want if k.direction == "egress" and k.protocol is None
                }
        else:
            sg = o.security_group
            if sg is None:
                sg = orphan
                self.adopt_or_create(
                    "security_group", name, "security_group", "", tags=self.tags("security_group")
                )
            sg_id = sg.id
            have = {}
            for rule in sg.get("security_group_rules") or []:
                have.setdefault(observed_rule_key(rule), []).append(rule["id"])
        for key in sorted(want - set(have), key=repr):
            self.add(
                "create",
                "security_group_rule",
                name,
                f"allow {key.describe()}",
                None,
                security_group_id=sg_id,
                rule=key,
            )
        for key in sorted(set(have) - want, key=repr):
            for rule_id in have[key]:
                self.add(
                    "delete",
                    "security_group_rule",
                    name,
                    f"not declared: {key.describe()}",
                    None,
                    rule_id,
                )
        return sg_id

    def server_groups(self) -> str | Ref:
        owner = T.Owner(self.intent.owner_uid, "", "")
        policy = self.intent.server_group_policy
        wanted_name = f"{self.intent.prefix}-{policy}-{owner.uid}"
        group_id: str | Ref | None = None
        for group in self.obs.server_groups:
            if group.name == wanted_name:
                group_id = group.id
            elif not group.get("member_ids"):
                self.add(
                    "delete",
                    "server_group",
                    group.name,
                    "policy changed and no server uses it",
                    None,
                    group.id,
                )
        if group_id is None:
            self.add(
                "create", "server_group", wanted_name, "missing", "server_group", policy=policy
            )
            group_id = Ref("server_group")
        return group_id

    def servers(self, network_id, subnet_id, sg_id, group_id) -> list[ServerView]:
        """Scale, replace and roll servers; return the servers that serve (or will) this pass."""
        i, o = self.intent, self.obs
        views = server_views(o)
        members_by_address = self._members_by_address()
        pools_wanted = set(i.lb_ports)

        def in_pools(v: ServerView) -> bool:
            return v.address is not None and pools_wanted <= members_by_address.get(
                v.address, set()
            )

        def has_members(v: ServerView) -> bool:
            return v.address is not None and bool(members_by_address.get(v.address))

        current = [v for v in views if is_current(v, i)]
        stale = [v for v in views if not is_current(v, i)]
        # Nova could not place a server of the *current* spec: re-creating it would fail the
        # same way every pass. Keep it (visible, no churn) and tell the user what to change.
        unplaceable = [
            v
            for v in stale
            if v.status == "ERROR"
            and v.template_hash == i.template_hash
            and "no valid host" in str((v.obj.get("fault") or {}).get("message", "")).lower()
        ]
        if unplaceable:
            self.plan.blocked.append(
                f"Nova found no valid host for {', '.join(v.obj.name for v in unplaceable)} "
                f"({i.server_group_policy} over zones {list(i.availability_zones) or 'any'}); "
                "use antiAffinity: soft, fewer replicas, or ask for more hosts. Delete the "
                "failed server to retry as is"
            )
            stale = [v for v in stale if v not in unplaceable]
        exhausted = self._count_failures(views, stale)
        stale = [v for v in stale if v not in exhausted]
        serving = [v for v in views if v.status == ACTIVE and in_pools(v)]
        leaving: list[ServerView] = []

        # 1. failed servers serve nothing: drain (if needed) and delete right away
        # 2. stale ones (old template/zone): at most one drained per pass, only when the others
        #    still serving are at least `replicas` (surge 1). With per-server volumes the
        #    replacement is in place instead (at least `replicas - 1` serve, none if replicas
        #    is 1): the old server goes first, so its successor takes the same index and volume.
        for v in stale:
            if v.status in FAILED or not in_pools(v) or v.status != ACTIVE:
                leaving.append(v)
        draining_stale = [v for v in stale if v not in leaving]
        if draining_stale:
            candidate = draining_stale[0]
            others = [s for s in serving if s is not candidate]
            in_place = bool(i.volume_size_gb)
            if len(others) >= (i.replicas - 1 if in_place else i.replicas):
                leaving.append(candidate)
        # 3. scale down: too many current servers; drop the not-yet-serving, then highest index
        excess = len(current) - i.replicas
        if excess > 0:
            # not-yet-serving first, then the highest index
            victims = sorted(current, key=lambda v: (v.status == ACTIVE and in_pools(v), -v.index))[
                :excess
            ]
            leaving.extend(victims)
            current = [v for v in current if v not in victims]

        for v in leaving:
            self._remove_server(v, has_members(v), members_by_address)

        # 4. create: all missing at once, except during a rolling replacement (surge 1)
        missing = 0 if unplaceable or exhausted else i.replicas - len(current)
        rolling = bool(stale)
        if any(v.status in BUILDING for v in current):
            self.plan.waiting.append(
                "servers building: "
                + ", ".join(v.obj.name for v in current if v.status in BUILDING)
            )
            if rolling:
                missing = 0
        if missing > 0 and rolling:
            # surge 1: the next new server only once the previous old one is gone
            # and once every new one already serves
            settled = all(v.status == ACTIVE and in_pools(v) for v in current)
            missing = 1 if settled and not any(v in leaving for v in stale) else 0
        if missing > 0:
            if o.image_id is None:
                self.invalid.append(
                    f"image {i.image!r} of the SiteTemplate is not in the cloud; "
                    "upload it or fix SiteTemplate.image"
                )
            if o.flavor_id is None:
                self.invalid.append(
                    f"flavor {i.flavor!r} of the SiteTemplate is not in the cloud; "
                    "fix SiteTemplate.flavor"
                )
            unknown = sorted(
                set(i.availability_zones) - (o.available_zones or set(i.availability_zones))
            )
            if unknown:
                self.invalid.append(
                    f"availability zone(s) {', '.join(unknown)} do not exist; "
                    f"available: {', '.join(sorted(o.available_zones or []))}"
                )
        used = {v.index for v in views}
        zones = [v.az for v in current]
        # a port that counts failures goes to the next server first, so the count goes on
        retry = sorted(n for n, p in o.ports.items() if n not in used and failure_record(p)[1])
        for _ in range(max(missing, 0)):
            free = next(n for n in range(len(used) + 1) if n not in used)
            index = retry.pop(0) if retry else free
            used.add(index)
            zone = choose_zone(i, zones)
            zones.append(zone)
            self._create_server(index, zone, network_id, subnet_id, sg_id, group_id)

        # 5. members for current ACTIVE servers not in every pool
        for v in current:
            if v.status == ACTIVE and not in_pools(v) and v.address:
                for port in i.lb_ports:
                    if port not in members_by_address.get(v.address, set()):
                        self.joining.append((port, v))
        # 6. ports and volumes nobody uses any more
        planned = {
            int(a.key.split(":")[1])
            for a in self.plan.actions
            if a.kind == "server" and a.verb == "create"
        }
        live = {v.index for v in views} | planned
        short = len(current) + len(planned) < i.replicas
        for index, port in o.ports.items():
            if short and failure_record(port)[1]:
                continue  # its failure count must reach the next server of that index
            if index not in live and not port.get("device_id"):
                self.add("delete", "port", port.name, "its server is gone", None, port.id)
        for index, volume in o.volumes.items():
            if (index not in live or i.volume_size_gb is None) and volume.status in (
                "available",
                "error",
            ):
                self.add(
                    "delete",
                    "volume",
                    volume.name,
                    "its server is gone or volumes are off",
                    None,
                    volume.id,
                )
        # 7. volumes for current servers
        if i.volume_size_gb:
            for v in current:
                self._want_volume(v.index, v)
        ready = [v for v in current if v.status == ACTIVE and in_pools(v)]
        self.plan.ready_replicas = len(ready)
        if stale:
            self.plan.waiting.append(
                f"replacing {len(stale)} server(s) one at a time: "
                + ", ".join(v.obj.name for v in stale)
                + (DOWN_IN_PLACE if i.volume_size_gb and i.replicas == 1 else "")
            )
        elif i.volume_size_gb and not ready:
            # the old server is gone: its successor is being created with the kept volume
            taking_over = sorted(n for n in planned if n in o.volumes)
            if taking_over:
                self.plan.waiting.append(
                    "replacing "
                    + ", ".join(server_name(i.prefix, n) for n in taking_over)
                    + DOWN_IN_PLACE
                )
        return serving

    def _count_failures(self, views: list[ServerView], stale: list[ServerView]) -> list[ServerView]:
        """Count ERROR servers per index on its port; return those not to re-create any more.

        The planner keeps no state: the count lives on the index's port, which outlives its
        servers (see ``failure_record``). It only stops servers of the current template: after
        a template change the old ERROR server is replaced like any stale one."""
        i, o = self.intent, self.obs
        exhausted = []
        for v in views:
            port = o.ports.get(v.index)
            if port is None:
                continue
            if v.status == ACTIVE and failure_record(port)[1]:
                self._tag_port(port, v.index, [], f"{v.obj.name} is ACTIVE: failure count cleared")
            if v.status != "ERROR" or v not in stale:
                continue
            n = failures_in_a_row(v, port)
            if failure_record(port) != (v.template_hash, n, v.obj.id):
                self._tag_port(
                    port,
                    v.index,
                    [f"{FAILURES_PREFIX}{v.template_hash}:{n}", f"{FAILED_PREFIX}{v.obj.id}"],
                    f"{v.obj.name} in ERROR: failure {n} of {MAX_SERVER_FAILURES} in a row",
                )
            if n >= MAX_SERVER_FAILURES and v.template_hash == i.template_hash:
                exhausted.append(v)
                fault = fault_message(v) or "no fault message"
                self.plan.blocked.append(
                    f"{v.obj.name} went to ERROR {n} times in a row (Nova: {fault}); it is kept "
                    "for inspection and not re-created. Fix the cause (image, flavor, boot "
                    "script, quota, or the cloud: ask its admin) or change the SiteTemplate; "
                    f"then delete server {v.obj.name} to retry"
                )
        return exhausted

    def _tag_port(self, port: CloudObject, index: int, extra: list[str], reason: str) -> None:
        tags = self.tags("port", index=index) + [T.check_tag(t) for t in extra]
        self.add("tag", "port", port.name, reason, None, port.id, tags=tags)

    def _members_by_address(self) -> dict[str, set[int]]:
        found: dict[str, set[int]] = {}
        for port, members in self.obs.members.items():
            for m in members:
                found.setdefault(m.get("address"), set()).add(port)
        return found

    def _remove_server(self, v: ServerView, drained_not_yet: bool, members_by_address) -> None:
        if drained_not_yet:
            for port, members in self.obs.members.items():
                for m in members:
                    if m.get("address") == v.address:
                        self.add(
                            "delete",
                            "member",
                            m.name or v.obj.name,
                            f"drain {v.obj.name} before it goes",
                            None,
                            m.id,
                            pool_id=self.obs.pools[port].id
                            if port in self.obs.pools
                            else m.get("pool_id"),
                        )
            self.plan.waiting.append(f"{v.obj.name} draining from the pools")
            return
        if v.status in FAILED:
            why = f"failed ({v.status})"
        elif is_current(v, self.intent):
            why = f"scale down to {self.intent.replicas}"
        else:
            why = "replaced (template or zone changed)"
        self.add("delete", "server", v.obj.name, why, None, v.obj.id)

    def _create_server(self, index, zone, network_id, subnet_id, sg_id, group_id) -> None:
        i = self.intent
        name = server_name(i.prefix, index)
        port = self.obs.ports.get(index)
        if port is None:
            port_id: str | Ref = self.adopt_or_create(
                "port",
                name,
                f"port:{index}",
                "for a new server",
                network_id=network_id,
                fixed_ips=[{"subnet_id": subnet_id}],
                security_group_ids=[sg_id],
                tags=self.tags("port", index=index),
            )
        else:
            port_id = port.id
            if sg_id not in (port.get("security_group_ids") or []):
                self.add(
                    "update",
                    "port",
                    name,
                    "security group missing",
                    f"port:{index}",
                    port.id,
                    security_group_ids=[sg_id],
                )
        self.add(
            "create",
            "server",
            name,
            "replica missing" if zone is None else f"replica missing (zone {zone})",
            f"server:{index}",
            image_id=self.obs.image_id,
            flavor_id=self.obs.flavor_id,
            port_id=port_id,
            availability_zone=zone,
            group_id=group_id,
            user_data=i.user_data,
            key_name=i.key_name,
            metadata=dict(i.server_metadata),
            tags=self.tags("server", index=index, tmpl=i.template_hash),
        )
        if i.volume_size_gb and index not in self.obs.volumes:
            self._create_volume(index, zone)

    def _create_volume(self, index: int, zone: str | None) -> None:
        i = self.intent
        self.add(
            "create",
            "volume",
            volume_name(i.prefix, index),
            "data volume for its server",
            f"volume:{index}",
            size=i.volume_size_gb,
            volume_type=i.volume_type,
            availability_zone=None,
            metadata={
                T.OWNER_PREFIX.rstrip(":"): i.owner_uid,
                T.ROLE_PREFIX.rstrip(":"): "volume",
                T.INDEX_PREFIX.rstrip(":"): str(index),
            },
        )

    def _want_volume(self, index: int, v: ServerView) -> None:
        volume = self.obs.volumes.get(index)
        if volume is None:
            self._create_volume(index, v.az)
            return
        attached = {a.get("server_id") for a in volume.get("attachments") or []}
        if v.obj.id in attached:
            return
        if volume.status == "available" and v.status == ACTIVE:
            self.add(
                "attach",
                "volume",
                volume.name,
                f"attach to {v.obj.name}",
                None,
                volume.id,
                server_id=v.obj.id,
            )
        elif volume.status in ("creating", "attaching", "detaching"):
            self.plan.waiting.append(f"volume {volume.name} {volume.status}")

    def _want_member(self, port: int, v: ServerView) -> None:
        pool = self.obs.pools.get(port)
        self.add(
            "create",
            "member",
            v.obj.name,
            f"{v.obj.name} ready, joins pool {port}",
            None,
            pool_id=pool.id if pool else Ref(f"pool:{port}"),
            address=v.address,
            protocol_port=port,
            tags=self.tags("member", index=v.index),
        )

    def load_balancer(self, subnet_id) -> str | Ref | None:
        """The load balancer itself; None when its children must not be planned this pass."""
        o = self.obs
        lb = o.load_balancer
        if subnet_id is None:
            return None
        lb_ref: str | Ref
        if lb is None:
            lb_ref = self.adopt_or_create(
                "load_balancer",
                self.names["load_balancer"],
                "load_balancer",
                "missing",
                vip_subnet_id=subnet_id,
                tags=self.tags("load_balancer"),
            )
        elif lb.status == "ERROR":
            self.add("delete", "load_balancer", lb.name, "in ERROR; re-creating it", None, lb.id)
            self.plan.waiting.append(f"load balancer {lb.name} being re-created")
            return None
        elif lb.status in LB_PENDING:
            self.plan.waiting.append(f"load balancer {lb.name} {lb.status}")
            lb_ref = lb.id
        else:
            lb_ref = lb.id
        return lb_ref

    def load_balancer_children(self, lb_ref: str | Ref) -> None:
        """Listeners, pools, health monitors, members (of the servers planned before) and
        the floating IP."""
        self.listeners_and_pools(lb_ref)
        for port, view in self.joining:
            self._want_member(port, view)
        self.floating_ip(self.obs.load_balancer)

    def listeners_and_pools(self, lb_ref) -> None:
        i, o = self.intent, self.obs
        protocol = i.lb_protocol.upper()
        pool_protocol = POOL_PROTOCOL.get(protocol, protocol)
        hc = i.health_check
        for port in sorted(set(o.listeners) - set(i.lb_ports)):
            self.add(
                "delete",
                "listener",
                o.listeners[port].name,
                f"port {port} no longer in loadBalancer.ports",
                None,
                o.listeners[port].id,
            )
        for port in sorted(set(o.pools) - set(i.lb_ports)):
            self.add(
                "delete",
                "pool",
                o.pools[port].name,
                f"port {port} no longer in loadBalancer.ports",
                None,
                o.pools[port].id,
            )
        for port in i.lb_ports:
            listener = o.listeners.get(port)
            pool = o.pools.get(port)
            if listener is not None and listener.get("protocol") != protocol:
                self.add(
                    "delete",
                    "listener",
                    listener.name,
                    f"protocol changes to {protocol}",
                    None,
                    listener.id,
                )
                if pool is not None:
                    self.add(
                        "delete",
                        "pool",
                        pool.name,
                        f"protocol changes to {protocol}",
                        None,
                        pool.id,
                    )
                self.plan.waiting.append(f"listener {port} being re-created")
                continue
            if listener is None:
                self.add(
                    "create",
                    "listener",
                    listener_name(i.prefix, port),
                    "missing",
                    f"listener:{port}",
                    loadbalancer_id=lb_ref,
                    protocol=protocol,
                    protocol_port=port,
                    tags=self.tags("listener", port=port),
                )
                listener_ref = Ref(f"listener:{port}")
            else:
                listener_ref = listener.id
            if pool is None:
                self.add(
                    "create",
                    "pool",
                    pool_name(i.prefix, port),
                    "missing",
                    f"pool:{port}",
                    listener_id=listener_ref,
                    protocol=pool_protocol,
                    lb_algorithm=i.lb_algorithm,
                    tags=self.tags("pool", port=port),
                )
                pool_ref = Ref(f"pool:{port}")
            else:
                pool_ref = pool.id
                if pool.get("lb_algorithm") != i.lb_algorithm:
                    self.add(
                        "update",
                        "pool",
                        pool.name,
                        f"algorithm -> {i.lb_algorithm}",
                        f"pool:{port}",
                        pool.id,
                        lb_algorithm=i.lb_algorithm,
                    )
                if listener is not None and listener.get("default_pool_id") != pool.id:
                    self.add(
                        "update",
                        "listener",
                        listener.name,
                        "default pool not set",
                        f"listener:{port}",
                        listener.id,
                        default_pool_id=pool.id,
                    )
            want_hm = {
                "type": hc.type,
                "delay": hc.delay,
                "timeout": hc.timeout,
                "max_retries": hc.max_retries,
            }
            if hc.type.upper() in ("HTTP", "HTTPS"):
                want_hm |= {"url_path": hc.path, "expected_codes": hc.expected_codes}
            hm = o.health_monitors.get(port)
            if hm is None:
                self.add(
                    "create",
                    "health_monitor",
                    monitor_name(i.prefix, port),
                    "missing",
                    f"hm:{port}",
                    pool_id=pool_ref,
                    tags=self.tags("health_monitor", port=port),
                    **want_hm,
                )
            else:
                if hm.get("type") != hc.type:
                    self.add(
                        "delete",
                        "health_monitor",
                        hm.name,
                        f"type changes to {hc.type}",
                        None,
                        hm.id,
                    )
                    continue
                diff = {k: v for k, v in want_hm.items() if k != "type" and hm.get(k) != v}
                if diff:
                    self.add(
                        "update",
                        "health_monitor",
                        hm.name,
                        "health check changed: " + ", ".join(sorted(diff)),
                        f"hm:{port}",
                        hm.id,
                        **diff,
                    )

    def floating_ip(self, lb: CloudObject | None) -> None:
        i, o = self.intent, self.obs
        fip = o.floating_ip
        name = self.names["floating_ip"]
        if not i.public_ip:
            if fip is not None:
                self.add("delete", "floating_ip", name, "publicIP disabled", None, fip.id)
            return
        vip_port = Ref("load_balancer", "vip_port_id") if lb is None else lb.get("vip_port_id")
        want_tags = self.tags("floating_ip") + ([T.RETAIN_TAG] if i.retain_ip else [])
        if fip is None:
            orphan = o.untagged.get(f"floating_ip:{name}")
            if orphan is not None:
                self.add(
                    "adopt",
                    "floating_ip",
                    name,
                    "found untagged with our name (a create whose tagging was lost); tagging it",
                    "floating_ip",
                    orphan.id,
                    tags=want_tags,
                    port_id=vip_port,
                )
            elif o.retained_ip is not None:
                self.add(
                    "adopt",
                    "floating_ip",
                    name,
                    f"re-using retained address {o.retained_ip.get('floating_ip_address')}",
                    "floating_ip",
                    o.retained_ip.id,
                    tags=want_tags,
                    port_id=vip_port,
                )
            elif o.external_network_id is None:
                self.invalid.append(
                    f"external network {i.external_network!r} not found, needed for the public IP; "
                    "set network.externalNetwork or publicIP.enabled: false"
                )
            else:
                self.add(
                    "create",
                    "floating_ip",
                    name,
                    "missing",
                    "floating_ip",
                    floating_network_id=o.external_network_id,
                    port_id=vip_port,
                    tags=want_tags,
                    description=name,
                )
            return
        if fip.get("port_id") != vip_port:
            self.add(
                "associate",
                "floating_ip",
                name,
                "not on the load balancer VIP",
                "floating_ip",
                fip.id,
                port_id=vip_port,
            )
        if set(want_tags) != set(fip.tags):
            self.add(
                "adopt",
                "floating_ip",
                name,
                "retain flag changed",
                "floating_ip",
                fip.id,
                tags=want_tags,
            )


def plan_site(intent: SiteIntent, observed: ObservedSite) -> tuple[Plan, list[str]]:
    """Return the plan and the list of spec problems (InvalidSpec when non-empty)."""
    planner = Planner(intent, observed)
    plan = planner.run()
    if not planner.invalid:
        lb = observed.load_balancer
        address = None
        if intent.public_ip and observed.floating_ip is not None:
            address = observed.floating_ip.get("floating_ip_address")
        elif not intent.public_ip and lb is not None:
            address = lb.get("vip_address")
        plan.url = site_url(intent, address)
    return plan, planner.invalid


def site_url(intent: SiteIntent, address: str | None) -> str | None:
    if not address:
        return None
    host = address
    if 80 in intent.lb_ports:
        return f"http://{host}"
    if 443 in intent.lb_ports:
        return f"https://{host}"
    return f"http://{host}:{intent.lb_ports[0]}" if intent.lb_ports else f"http://{host}"
