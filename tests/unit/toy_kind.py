"""A kind that exists only in the tests: a "Vault", one server with a data volume on a network
of its own, plus one step that is not an OpenStack object (an agent bootstrap).

It is what a newcomer writes for a new kind (see docs/ARCHITECTURE.md), in one file, from
the shared parts only: the concern planners, the projection helpers, the generic driver.
Nothing of WebSite is imported (``test_toy_kind`` checks it in a fresh interpreter).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from flexinfra.cloud.gateway import Gateway, Snapshot
from flexinfra.core.hashing import content_hash
from flexinfra.core.kinds import Kind
from flexinfra.core.objects import CloudObject
from flexinfra.core.plan import Plan
from flexinfra.core.tags import Owner
from flexinfra.planning.builder import PlanBuilder
from flexinfra.planning.fleet import plan_fleet, plan_server_group
from flexinfra.planning.network import NetworkIntent, NetworkObserved, plan_network, plan_router
from flexinfra.planning.security_group import SecurityGroupIntent, plan_security_group
from flexinfra.planning.servers import FleetIntent, FleetObserved, server_views
from flexinfra.reconcile import projection as J
from flexinfra.reconcile.driver import CloudKind, Converged, KindStatus, StepResult
from flexinfra.reconcile.executor import Execution

AGENT_PORT = 8443


# --- the API model (what the user writes) -------------------------------------------------------
class VaultSpec(BaseModel):
    cloud: dict[str, str]
    cidr: str = "10.50.0.0/24"
    image: str = "cirros"
    flavor: str = "m1.tiny"
    size_gb: int = 1


# --- intent and observation (plain data) ----------------------------------------------------------
@dataclass(frozen=True)
class VaultIntent:
    owner_uid: str
    network: NetworkIntent
    security_group: SecurityGroupIntent
    fleet: FleetIntent


@dataclass
class VaultObserved:
    untagged: dict[str, CloudObject]
    network: NetworkObserved
    security_group: CloudObject | None
    fleet: FleetObserved


@dataclass
class Agent:
    """Stands in for an HTTPS agent on the server: bootstraps on the second call."""

    calls: list[str] = field(default_factory=list)

    def bootstrap(self, ctx: Converged) -> StepResult:
        (server,) = server_views(ctx.observed.fleet.servers, ctx.observed.fleet.ports)
        self.calls.append(f"https://{server.address}:{AGENT_PORT}/bootstrap")
        if len(self.calls) == 1:
            return StepResult(done=False, message="agent bootstrapping", reason="Recovering",
                              requeue_after=0.5,
                              events=[("Bootstrapping", f"agent on {server.obj.name}")])
        return StepResult(done=True, status={"agent": "ready", "address": server.address})


class VaultKind(CloudKind[VaultIntent, VaultObserved]):
    name = "Vault"

    def __init__(self) -> None:
        self.agent = Agent()
        self.steps = (self.agent.bootstrap,)

    def intent(self, owner: Owner, spec: VaultSpec, **_: Any) -> VaultIntent:
        prefix = owner.prefix
        return VaultIntent(
            owner_uid=owner.uid,
            network=NetworkIntent(prefix, spec.cidr, None, "public"),
            security_group=SecurityGroupIntent(prefix, ((22, "tcp", "0.0.0.0/0"),),
                                               ((AGENT_PORT, "tcp"),)),
            fleet=FleetIntent(
                prefix=prefix, replicas=1, availability_zones=(), image=spec.image,
                flavor=spec.flavor, user_data="#!/bin/sh\nexec vault-agent\n", key_name=None,
                server_metadata={},
                template_hash=content_hash({"image": spec.image, "flavor": spec.flavor}),
                volume_size_gb=spec.size_gb, volume_type=None, anti_affinity="soft",
                role="vault",
            ),
        )

    def project(self, snap: Snapshot, intent: VaultIntent) -> VaultObserved:
        owned = snap.owned(intent.owner_uid)
        n = intent.network
        untagged = J.orphans(snap, owned, {Kind.NETWORK: n.network_name,
                                           Kind.SUBNET: n.subnet_name,
                                           Kind.ROUTER: n.router_name,
                                           Kind.SECURITY_GROUP: intent.security_group.name})
        untagged |= J.port_orphans(snap, intent.fleet.server_prefix)
        return VaultObserved(
            untagged=untagged,
            network=J.project_network(snap, owned, n, untagged),
            security_group=J.one(owned, Kind.SECURITY_GROUP),
            fleet=FleetObserved(
                servers=owned.get(Kind.SERVER, []),
                ports=J.by_index(owned.get(Kind.PORT, [])),
                volumes=J.by_index(owned.get(Kind.VOLUME, [])),
                server_groups=owned.get(Kind.SERVER_GROUP, []),
            ),
        )

    def lookups(self, gateway: Gateway, intent: VaultIntent, observed: VaultObserved) -> None:
        observed.fleet.image_id = gateway.find_image_id(intent.fleet.image)
        flavor = gateway.find_flavor(intent.fleet.flavor)
        observed.fleet.flavor_id = flavor.id if flavor is not None else None

    def plan(self, intent: VaultIntent, observed: VaultObserved) -> Plan:
        b = PlanBuilder(intent.owner_uid, observed.untagged)
        at = plan_network(b, intent.network, observed.network)
        plan_router(b, intent.network, observed.network, at.subnet_id)
        sg_id = plan_security_group(b, intent.security_group, observed.security_group, at.cidr)
        group_id = plan_server_group(b, intent.fleet, observed.fleet)
        plan_fleet(b, intent.fleet, observed.fleet, at, sg_id, group_id)
        return b.plan

    def status(self, intent: VaultIntent, observed: VaultObserved, plan: Plan,
               execution: Execution) -> KindStatus:
        servers = [s.id for s in observed.fleet.servers]
        volumes = [v.id for v in observed.fleet.volumes.values()]
        return KindStatus(resources={"servers": servers, "volumes": volumes},
                          ready_replicas=plan.ready_replicas, ready_message="vault ready")
