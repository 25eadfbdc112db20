"""The security group(s) of a kind's servers: exactly the declared rules, drift reverted.

Declared are the spec's ingress rules (a port open to a CIDR), the kind's own ports opened to
its subnet (where the load balancer's traffic and health checks come from), ports opened to
the members of the group itself (a *remote-group* rule: Galera's replication ports between
nodes only, whatever their addresses), and Neutron's default egress. Anything else found on
the group is deleted.

A kind may give its servers several groups, one per role (``SecurityGroupIntent.role``:
Galera's ``db``, ``peers`` and ``agent``), so each rule set says what it is for; each role's
group has its own name and plan key.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from flexinfra.core.kinds import Kind, Verb
from flexinfra.core.objects import CloudObject, Ref
from flexinfra.planning.builder import PlanBuilder
from flexinfra.planning.network import norm_cidr


@dataclass(frozen=True)
class RuleKey:
    """A security group rule, reduced to what makes it the same rule."""

    direction: str
    ethertype: str
    protocol: str | None
    port_min: int | None
    port_max: int | None
    remote_ip_prefix: str | None

    def describe(self) -> str:
        ports = "" if self.port_min is None else f" port {self.port_min}"
        if self.port_max not in (None, self.port_min):
            ports += f"-{self.port_max}"
        return (
            f"{self.direction} {self.protocol or 'any'}{ports} "
            f"{'from' if self.direction == 'ingress' else 'to'} "
            f"{self.remote_ip_prefix or self.ethertype}"
        )


@dataclass(frozen=True)
class GroupRuleKey(RuleKey):
    """A rule whose source is a security group rather than a CIDR. ``remote_group`` is
    ``"self"`` (the group the rule is on: its members talk to each other) or a group id."""

    remote_group: str = "self"

    def describe(self) -> str:
        ports = "" if self.port_min is None else f" port {self.port_min}"
        source = "members of this group" if self.remote_group == "self" else self.remote_group
        return f"{self.direction} {self.protocol or 'any'}{ports} from {source}"


@dataclass(frozen=True)
class SecurityGroupIntent:
    prefix: str
    ingress: tuple[tuple[int | None, str, str], ...]  # (port, protocol, from CIDR)
    subnet_ports: tuple[tuple[int, str], ...]  # (port, protocol) opened to the own subnet
    #: one group among several of a server (None: the kind's only group, ``<prefix>-sg``)
    role: str | None = None
    #: (port, protocol) opened to the members of this same group (remote-group rules)
    peer_ports: tuple[tuple[int, str], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.prefix}-sg" if self.role is None else f"{self.prefix}-{self.role}-sg"

    @property
    def key(self) -> str:
        """The plan key of the group (``Ref(key)`` resolves to its id)."""
        return "security_group" if self.role is None else f"security_group:{self.role}"


def desired_rules(i: SecurityGroupIntent, subnet_cidr: str | None) -> set[RuleKey]:
    rules = {
        RuleKey("egress", "IPv4", None, None, None, None),
        RuleKey("egress", "IPv6", None, None, None, None),
    }
    for port, protocol, cidr in i.ingress:
        rules.add(RuleKey("ingress", _ethertype(cidr), protocol.lower(), port, port,
                          norm_cidr(cidr)))
    if subnet_cidr:
        for port, protocol in i.subnet_ports:
            rules.add(RuleKey("ingress", "IPv4", protocol.lower(), port, port,
                              norm_cidr(subnet_cidr)))
    for port, protocol in i.peer_ports:
        rules.add(GroupRuleKey("ingress", "IPv4", protocol.lower(), port, port, None))
    return rules


def observed_rule_key(rule: dict[str, Any], group_id: str | None = None) -> RuleKey:
    prefix = rule.get("remote_ip_prefix")
    remote = rule.get("remote_group_id")
    if remote:
        return GroupRuleKey(
            rule["direction"], rule.get("ethertype") or "IPv4",
            (rule.get("protocol") or None) and str(rule["protocol"]).lower(),
            rule.get("port_range_min"), rule.get("port_range_max"), None,
            "self" if remote == group_id else remote,
        )
    return RuleKey(
        rule["direction"],
        rule.get("ethertype") or "IPv4",
        (rule.get("protocol") or None) and str(rule["protocol"]).lower(),
        rule.get("port_range_min"),
        rule.get("port_range_max"),
        norm_cidr(prefix) if prefix else None,
    )


def _ethertype(cidr: str) -> str:
    return "IPv6" if ipaddress.ip_network(cidr, strict=False).version == 6 else "IPv4"


def plan_security_group(
    b: PlanBuilder, i: SecurityGroupIntent, sg: CloudObject | None, subnet_cidr: str | None
) -> str | Ref:
    b.know(i.key, sg)
    want = desired_rules(i, subnet_cidr)
    orphan = b.orphan(Kind.SECURITY_GROUP, i.name)
    if sg is None and orphan is None:
        sg_id: str | Ref = b.adopt_or_create(
            Kind.SECURITY_GROUP, i.name, i.key, "missing",
            description="flexinfra: managed, changes are reverted", tags=_tags(b, i),
        )
        # Neutron adds the two default egress rules itself on create
        have: dict[RuleKey, list[str]] = {
            k: ["default"] for k in want if k.direction == "egress" and k.protocol is None
        }
    else:
        if sg is None:
            sg = orphan
            b.adopt_or_create(Kind.SECURITY_GROUP, i.name, i.key, "", tags=_tags(b, i))
        sg_id = sg.id
        have = {}
        for rule in sg.get("security_group_rules") or []:
            have.setdefault(observed_rule_key(rule, sg.id), []).append(rule["id"])
    for key in sorted(want - set(have), key=repr):
        extra = {"remote_group_id": sg_id} if isinstance(key, GroupRuleKey) else {}
        b.add(Verb.CREATE, Kind.SECURITY_GROUP_RULE, i.name, f"allow {key.describe()}", None,
              security_group_id=sg_id, rule=key, **extra)
    for key in sorted(set(have) - want, key=repr):
        for rule_id in have[key]:
            b.add(Verb.DELETE, Kind.SECURITY_GROUP_RULE, i.name,
                  f"not declared: {key.describe()}", None, rule_id)
    return sg_id


def _tags(b: PlanBuilder, i: SecurityGroupIntent) -> list[str]:
    return b.tags("security_group") if i.role is None else b.tags("security_group", sg=i.role)
