"""GaleraCluster on the generic driver: what it supplies, and nothing else.

* intent: ``cluster_intent`` (spec + the cluster's credentials -> ``ClusterIntent``);
* projection: ``project`` (the tenant snapshot -> ``ObservedGalera``), pure;
* lookups: image, flavor, zones, pool members (their health), and **the writer**: which node
  the endpoint's normal member is comes from the Galera step's last decision
  (``galera_step.registry``), so moving it is a plan of member updates;
* planner: ``planning.galera.plan_galera``;
* status: the nodes as the cloud sees them (server, address, zone, volume);
* one step after the cloud part, ``galera_step.galera``: observe every agent, ``decide``,
  carry the actions out; Ready only when the database takes a write through the endpoint.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from flexinfra.cloud.adapters import adapter
from flexinfra.cloud.gateway import Gateway, Snapshot
from flexinfra.core.hashing import content_hash
from flexinfra.core.kinds import Kind
from flexinfra.core.objects import CloudObject
from flexinfra.core.plan import Plan
from flexinfra.core.tags import Owner
from flexinfra.galera.credentials import ClusterCredentials
from flexinfra.galera.model import Policy
from flexinfra.galera.userdata import NodeBoot, build_zipapp, render_user_data
from flexinfra.kinds import galera_step
from flexinfra.planning.galera import GaleraIntent, ObservedGalera, endpoints, plan_galera
from flexinfra.planning.load_balancer import ONLINE
from flexinfra.planning.servers import FleetObserved, server_views
from flexinfra.reconcile import projection as J
from flexinfra.reconcile.driver import CloudKind, KindStatus, plan_only, reconcile
from flexinfra.reconcile.executor import Execution
from flexinfra.reconcile.outcome import Outcome
from flexinfra.reconcile.teardown import TeardownOutcome, teardown

#: Galera's failure detection, shortened from its defaults (suspect 5 s, inactive 15 s):
#: measured on real galera-4, kill -9 of the writer -> first commit on the new writer took
#: 6.3-6.5 s with the defaults and 3.1-3.3 s with these, under the issue's 5 s target. The
#: cost: a node whose network stalls for 2 s is suspected and may be evicted (it rejoins by
#: IST); on a cloud with a noisy network raise them (spec.mariadb cannot: they are provider
#: options, set here for every cluster).
PROVIDER_OPTIONS: tuple[tuple[str, str], ...] = (
    ("evs.suspect_timeout", "PT2S"), ("evs.inactive_timeout", "PT4S"),
    ("evs.inactive_check_period", "PT0.5S"), ("evs.keepalive_period", "PT0.5S"),
)
PROBE_DATABASE = "flexinfra_probe"
PROBE_USER = "flexinfra_probe"


@dataclass(frozen=True)
class Secrets:
    """What the handler read (or generated) from the cluster's Secrets."""

    creds: ClusterCredentials
    root_password: str
    probe_password: str


@dataclass(frozen=True)
class ClusterIntent:
    """The cloud part (``planning.galera.GaleraIntent``) plus what the Galera step needs."""

    owner: Owner
    cloud: GaleraIntent
    policy: Policy
    secrets: Secrets = field(compare=False)
    #: from the last status: the writer, whether it was ever bootstrapped, a bootstrap sent
    writer_hint: str | None = None
    bootstrapped: bool = False
    bootstrap_hint: str | None = None
    recovery_hint: dict | None = field(default=None, compare=False)


@functools.cache
def zipapp() -> bytes:
    """The agent zipapp, built once per process (deterministic bytes)."""
    return build_zipapp()


def template_hash(spec: Any) -> str:
    """What a node's server is made of: image, flavor, placement policy, MariaDB settings,
    SST method and Galera's provider options. *Not* the peer list (adding a node must not
    rebuild the others) nor the agent's code or certificates (an operator upgrade does not
    roll a database); a change replaces the nodes one at a time on their volumes."""
    return content_hash({
        "image": spec.image, "flavor": spec.flavor, "anti_affinity": str(spec.anti_affinity),
        "sst": str(spec.sst_method), "settings": dict(sorted(spec.mariadb.settings.items())),
        "provider_options": list(PROVIDER_OPTIONS), "galera": 1,
    })


def cluster_intent(owner: Owner, spec: Any, secrets: Secrets,
                   operator_cidrs: tuple[str, ...] = (), status: dict | None = None
                   ) -> ClusterIntent:
    status = status or {}
    prefix = owner.prefix
    settings = tuple(sorted((k, str(v)) for k, v in spec.mariadb.settings.items()))

    def boot(index: int, addresses: tuple[str, ...], volume_id: str | None) -> str:
        node = f"{prefix}-db-{index}"
        return render_user_data(NodeBoot(
            cluster=prefix, node=node, address=addresses[index], addresses=addresses,
            volume_id=volume_id, sst_method=str(spec.sst_method), settings=settings,
            provider_options=PROVIDER_OPTIONS), secrets.creds, zipapp=zipapp())

    cloud = GaleraIntent(
        prefix=prefix, owner_uid=owner.uid, replicas=spec.replicas,
        availability_zones=tuple(spec.availability_zones), cidr=spec.network.cidr,
        existing_network=spec.network.existing_network,
        external_network=spec.network.external_network, image=spec.image,
        flavor=spec.flavor, anti_affinity=str(spec.anti_affinity),
        volume_size_gb=spec.volume.size_gb, volume_type=spec.volume.type,
        template_hash=template_hash(spec), allowed_from=tuple(spec.allowed_from),
        operator_cidrs=tuple(operator_cidrs), writer_port=spec.writer.port,
        public_ip=spec.writer.public_ip, read_enabled=spec.read_endpoint.enabled,
        read_port=spec.read_endpoint.port, boot=boot,
    )
    recovery = status.get("recovery") or {}
    return ClusterIntent(
        owner=owner, cloud=cloud,
        policy=Policy(node_failure_timeout=float(spec.failover.node_failure_timeout_seconds),
                      force_bootstrap_node=spec.recovery.force_bootstrap_node),
        secrets=secrets, writer_hint=status.get("writer"),
        bootstrapped=bool(status.get("bootstrapped")),
        bootstrap_hint=recovery.get("bootstrapNode") if recovery.get("phase") == (
            "Bootstrapping") else None,
        recovery_hint=recovery or None,
    )


# --- projection and lookups -----------------------------------------------------------------
def project(snap: Snapshot, intent: ClusterIntent) -> ObservedGalera:
    i = intent.cloud
    owned = snap.owned(i.owner_uid)
    fleet = i.fleet
    untagged = J.orphans(snap, owned, i.adoptable_names)
    untagged |= J.port_orphans(snap, fleet.server_prefix)
    groups = {g.name: g.role for g in i.security_groups()}
    security_groups = {groups[sg.name]: sg for sg in owned.get(Kind.SECURITY_GROUP, [])
                       if sg.name in groups}
    for name, role in groups.items():  # orphans of our groups (tagging lost)
        if role not in security_groups:
            orphan = next((sg for sg in snap.of(Kind.SECURITY_GROUP)
                           if adapter(Kind.SECURITY_GROUP).is_orphan(sg, name)), None)
            if orphan is not None:
                untagged[f"{Kind.SECURITY_GROUP}:{name}"] = orphan
    return ObservedGalera(
        network=J.project_network(snap, owned, i.network, untagged),
        security_groups=security_groups,
        fleet=FleetObserved(
            servers=[s for s in owned.get(Kind.SERVER, []) if s.status != "DELETED"],
            ports={**J.attached_port_orphans(snap, owned, fleet.server_prefix),
                   **J.by_index(owned.get(Kind.PORT, []))},
            volumes=J.by_index(owned.get(Kind.VOLUME, [])),
            server_groups=owned.get(Kind.SERVER_GROUP, []),
        ),
        lb=J.project_load_balancer(owned),
        floating_ip=J.one(owned, Kind.FLOATING_IP),
        untagged=untagged,
    )


def lookups(gateway: Gateway, intent: ClusterIntent, obs: ObservedGalera) -> None:
    i = intent.cloud
    for port, pool in obs.lb.pools.items():
        obs.lb.members[port] = gateway.members(
            pool, refresh=pool.get("operating_status") != ONLINE)
    obs.fleet.pools, obs.fleet.members = obs.lb.pools, obs.lb.members
    obs.fleet.image_id = gateway.find_image_id(i.image)
    flavor = gateway.find_flavor(i.flavor)
    obs.fleet.flavor_id = flavor.id if flavor is not None else None
    if i.availability_zones:
        obs.fleet.available_zones = gateway.availability_zones()
    obs.writer = galera_step.writer_of(intent)
    obs.all_synced = galera_step.all_synced(intent)


# --- status -----------------------------------------------------------------------------------
def cloud_nodes(intent: ClusterIntent, obs: ObservedGalera) -> list[dict[str, Any]]:
    """Each node as the cloud sees it (the Galera step adds what its agent says)."""
    views = {v.index: v for v in server_views(obs.fleet.servers, obs.fleet.ports)}
    out = []
    for n, name in enumerate(intent.cloud.node_names):
        v = views.get(n)
        port = obs.fleet.ports.get(n)
        volume = obs.fleet.volumes.get(n)
        fixed = (port.get("fixed_ips") or [{}])[0].get("ip_address") if port else None
        out.append({k: val for k, val in {
            "name": name, "server": v.obj.id if v else None, "address": fixed,
            "zone": v.az if v else None, "volume": volume.id if volume else None,
            "serverStatus": v.status if v else None,
        }.items() if val is not None})
    return out


class GaleraKind(CloudKind[ClusterIntent, ObservedGalera]):
    name = "GaleraCluster"
    steps = (galera_step.galera,)

    def intent(self, owner: Owner, spec: Any, secrets: Secrets | None = None,
               operator_cidrs: tuple[str, ...] = (), status: dict | None = None,
               **_: Any) -> ClusterIntent:
        if secrets is None:
            raise ValueError("internal: a GaleraCluster pass needs its secrets")
        return cluster_intent(owner, spec, secrets, operator_cidrs, status)

    def project(self, snap: Snapshot, intent: ClusterIntent) -> ObservedGalera:
        return project(snap, intent)

    def lookups(self, gateway: Gateway, intent: ClusterIntent, observed: ObservedGalera) -> None:
        lookups(gateway, intent, observed)

    def plan(self, intent: ClusterIntent, observed: ObservedGalera) -> Plan:
        return plan_galera(intent.cloud, observed)

    def status(self, intent: ClusterIntent, observed: ObservedGalera, plan: Plan,
               execution: Execution) -> KindStatus:
        ends = endpoints(intent.cloud, observed)
        return KindStatus(
            resources={"nodes": cloud_nodes(intent, observed),
                       "endpoint": ends["endpoint"], "publicEndpoint": ends["public"],
                       "readEndpoint": ends["read"],
                       "network": intent.cloud.network.attached_network_name},
            url=ends["endpoint"], ready_replicas=None,
            ready_message=f"{intent.cloud.replicas} nodes built",
        )


GALERA = GaleraKind()


def reconcile_galera(owner: Owner, spec: Any, gateway: Gateway, **inputs: Any) -> Outcome:
    return reconcile(GALERA, owner, spec, gateway, **inputs)


def plan_galera_cluster(owner: Owner, spec: Any, gateway: Gateway, **inputs: Any):
    return plan_only(GALERA, owner, spec, gateway, **inputs)


def teardown_galera(owner: Owner, gateway: Gateway, retain_volumes: bool) -> TeardownOutcome:
    """The generic teardown by owner; with ``deletionPolicy: Retain`` the data volumes are
    first released (their owner metadata removed, a ``flexinfra-retained`` mark left), so
    nothing stays "owned" and the tag sweep can finish."""
    events: list[tuple[str, str]] = []
    if retain_volumes:
        events = release_volumes(owner, gateway)
    out = teardown(owner, gateway)
    out.events[:0] = events
    if out.done:
        galera_step.forget(owner.uid)
    return out


def release_volumes(owner: Owner, gateway: Gateway) -> list[tuple[str, str]]:
    snap = gateway.inventory(max_age=0, owner_uid=owner.uid)
    volumes: list[CloudObject] = snap.owned(owner.uid).get(Kind.VOLUME, [])
    events = []
    for v in volumes:
        adapter(Kind.VOLUME).release(gateway, v, f"{owner.namespace}/{owner.name}")
        events.append(("Retained", f"data volume {v.name} ({v.id}) kept (deletionPolicy: "
                       "Retain); it is no longer owned by the cluster"))
    if volumes:
        gateway.invalidate(owner.uid)
    return events
