"""The security group of a kind's servers: exactly the declared rules, drift reverted.

Declared are the spec's ingress rules (a port open to a CIDR), the kind's own ports opened to
its subnet (where the load balancer's traffic and health checks come from), and Neutron's
default egress. Anything else found on the group is deleted.
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
class SecurityGroupIntent:
    prefix: str
    ingress: tuple[tuple[int | None, str, str], ...]  # (port, protocol, from CIDR)
    subnet_ports: tuple[tuple[int, str], ...]  # (port, protocol) opened to the own subnet

    @property
    def name(self) -> str:
        return f"{self.prefix}-sg"


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
    return rules


def observed_rule_key(rule: dict[str, Any]) -> RuleKey:
    prefix = rule.get("remote_ip_prefix")
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
    b.know("security_group", sg)
    want = desired_rules(i, subnet_cidr)
    orphan = b.orphan(Kind.SECURITY_GROUP, i.name)
    if sg is None and orphan is None:
        sg_id: str | Ref = b.adopt_or_create(
            Kind.SECURITY_GROUP, i.name, "security_group", "missing",
            description="flexinfra: managed, changes are reverted", tags=b.tags("security_group"),
        )
        # Neutron adds the two default egress rules itself on create
        have: dict[RuleKey, list[str]] = {
            k: ["default"] for k in want if k.direction == "egress" and k.protocol is None
        }
    else:
        if sg is None:
            sg = orphan
            b.adopt_or_create(Kind.SECURITY_GROUP, i.name, "security_group", "",
                              tags=b.tags("security_group"))
        sg_id = sg.id
        have = {}
        for rule in sg.get("security_group_rules") or []:
            have.setdefault(observed_rule_key(rule), []).append(rule["id"])
    for key in sorted(want - set(have), key=repr):
        b.add(Verb.CREATE, Kind.SECURITY_GROUP_RULE, i.name, f"allow {key.describe()}", None,
              security_group_id=sg_id, rule=key)
    for key in sorted(set(have) - want, key=repr):
        for rule_id in have[key]:
            b.add(Verb.DELETE, Kind.SECURITY_GROUP_RULE, i.name,
                  f"not declared: {key.describe()}", None, rule_id)
    return sg_id
