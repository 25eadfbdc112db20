"""The floating IP on the load balancer's VIP: created, adopted (an orphan of ours, or an
address retained from a deleted owner of the same name), moved back, re-tagged, or released.
"""

from __future__ import annotations

from dataclasses import dataclass

from flexinfra.core import tags as T
from flexinfra.core.kinds import Kind, Verb
from flexinfra.core.objects import CloudObject, Ref
from flexinfra.planning.builder import PlanBuilder


@dataclass(frozen=True)
class FloatingIPIntent:
    prefix: str
    enabled: bool
    retain: bool  # keep the address when the load balancer or the owner is re-created
    external_network: str

    @property
    def name(self) -> str:
        return f"{self.prefix}-fip"


@dataclass
class FloatingIPObserved:
    floating_ip: CloudObject | None = None
    retained_ip: CloudObject | None = None  # released by a deleted owner of the same name
    external_network_id: str | None = None
    #: a floating IP not of ours already on the VIP port (Neutron allows one per fixed IP):
    #: adopted if it is nobody's, never a create that fails with 409 on every pass
    on_vip: CloudObject | None = None


def plan_floating_ip(
    b: PlanBuilder, i: FloatingIPIntent, o: FloatingIPObserved, lb: CloudObject | None
) -> None:
    """``lb`` is the observed load balancer; None: it is created in this plan."""
    b.know("floating_ip", o.floating_ip)
    fip, name = o.floating_ip, i.name
    if not i.enabled:
        if fip is not None:
            b.add(Verb.DELETE, Kind.FLOATING_IP, name, "publicIP disabled", None, fip.id)
        return
    vip_port = Ref("load_balancer", "vip_port_id") if lb is None else lb.get("vip_port_id")
    want_tags = b.tags("floating_ip") + ([T.RETAIN_TAG] if i.retain else [])
    if fip is None:
        orphan = b.orphan(Kind.FLOATING_IP, name)
        on_vip = o.on_vip if lb is not None else None
        if on_vip is not None and T.has_owner(on_vip.tags):
            b.plan.blocked.append(
                f"the load balancer's VIP already has floating IP "
                f"{on_vip.get('floating_ip_address')} of another flexinfra object; release it "
                "or set publicIP.enabled: false"
            )
        elif on_vip is not None:
            b.add(Verb.ADOPT, Kind.FLOATING_IP, name,
                  f"already on the load balancer VIP ({on_vip.get('floating_ip_address')}): "
                  "adopting it", "floating_ip", on_vip.id, tags=want_tags)
        elif orphan is not None:
            b.add(Verb.ADOPT, Kind.FLOATING_IP, name,
                  "found untagged with our name (a create whose tagging was lost); tagging it",
                  "floating_ip", orphan.id, tags=want_tags, port_id=vip_port)
        elif o.retained_ip is not None:
            b.add(Verb.ADOPT, Kind.FLOATING_IP, name,
                  f"re-using retained address {o.retained_ip.get('floating_ip_address')}",
                  "floating_ip", o.retained_ip.id, tags=want_tags, port_id=vip_port)
        elif o.external_network_id is None:
            b.invalid.append(
                f"external network {i.external_network!r} not found, needed for the public IP; "
                "set network.externalNetwork or publicIP.enabled: false"
            )
        else:
            b.add(Verb.CREATE, Kind.FLOATING_IP, name, "missing", "floating_ip",
                  floating_network_id=o.external_network_id, port_id=vip_port, tags=want_tags,
                  description=name)
        return
    if fip.get("port_id") != vip_port:
        b.add(Verb.ASSOCIATE, Kind.FLOATING_IP, name, "not on the load balancer VIP",
              "floating_ip", fip.id, port_id=vip_port)
    if set(want_tags) != set(fip.tags):
        b.add(Verb.ADOPT, Kind.FLOATING_IP, name, "retain flag changed", "floating_ip", fip.id,
              tags=want_tags)
