"""WebSite, the first kind on the generic driver: what it supplies, and nothing else.

* intent: ``site_intent`` (WebSiteSpec + SiteTemplateSpec -> ``SiteIntent``, plain data);
* projection: ``project`` (the tenant snapshot -> ``ObservedSite``), pure;
* lookups: pool members, image, flavor and zones (cached reads through the gateway);
* planner: ``planning.website.plan_site``, a composition of the concern planners;
* status: ``WebSiteResources``, the URL and the servers serving;
* one step after the cloud part: ``serving``, Ready only once the load balancer's health
  monitors report the members ONLINE (a site that exists but does not answer is not Ready).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from flexinfra.api.website import FloatingIPStatus, ServerStatus, WebSiteResources
from flexinfra.cloud.gateway import Gateway, Snapshot
from flexinfra.core import tags as T
from flexinfra.core.errors import InvalidSpec
from flexinfra.core.hashing import content_hash
from flexinfra.core.kinds import Kind
from flexinfra.core.objects import CloudObject
from flexinfra.core.plan import Plan, PlannedAction, Problem
from flexinfra.core.reasons import Reason
from flexinfra.core.tags import Owner
from flexinfra.kinds.site_database import SiteDatabase, with_credentials
from flexinfra.planning.load_balancer import ONLINE, HealthCheckIntent, member_health
from flexinfra.planning.servers import server_views
from flexinfra.planning.website import ObservedSite, SiteIntent, plan_site
from flexinfra.reconcile import projection as J
from flexinfra.reconcile.driver import (
    CloudKind,
    Converged,
    KindStatus,
    StepResult,
    plan_only,
    reconcile,
)
from flexinfra.reconcile.executor import Execution
from flexinfra.reconcile.outcome import Outcome
from flexinfra.reconcile.teardown import TeardownOutcome, teardown

__all__ = [
    "WEBSITE",
    "Outcome",
    "Owner",
    "TeardownOutcome",
    "WebSiteKind",
    "plan_website",
    "reconcile_website",
    "site_intent",
    "teardown_website",
    "template_hash",
]


# --- intent ------------------------------------------------------------------------------------
def template_hash(template: Any, anti_affinity: str = "soft", volume: bool = False,
                  database: str | None = None) -> str:
    """The template hash: what a server is made of, hence whether a server is current.

    The SiteTemplate's image, flavor, boot script, keypair and metadata, plus the two site
    options a server is built with (anti-affinity group, a data volume or not). It is in
    every server's tags and in the status of the server (``servers[].templateHash``) and of
    the SiteTemplate (``status.templateHash``, with the default options: equal to the hash
    of a site's servers unless the site sets ``antiAffinity: hard`` or volumes). Anything
    that can only change by rebuilding a server goes into it; changing what goes into it
    replaces every server, so its material is frozen.
    """
    material = {
        "image": template.image,
        "flavor": template.flavor,
        "user_data": template.user_data,
        "key_name": template.key_name,
        "metadata": dict(sorted(template.metadata.items())),
        "anti_affinity": str(anti_affinity),
        "volume": bool(volume),
    }
    if database is not None:  # the credentials file the servers boot with (its fingerprint)
        material["database"] = database
    return content_hash(material)


def _user_data(template: Any, volume_size_gb: int | None) -> str | None:
    text = template.user_data or None
    if text and volume_size_gb and text.startswith("#!"):
        first, _, rest = text.partition("\n")
        path = getattr(template, "volume_mount_path", "/srv/data")
        text = f"{first}\nexport FLEXINFRA_VOLUME_PATH={path}\n{rest}"
    return text


def site_intent(owner: Owner, spec: Any, template: Any,
                require_member_health: bool = True,
                database: SiteDatabase | None = None) -> SiteIntent:
    lb = spec.load_balancer
    hc = lb.health_check
    anti_affinity = str(spec.anti_affinity)
    return SiteIntent(
        prefix=owner.prefix,
        owner_uid=owner.uid,
        replicas=spec.replicas,
        availability_zones=tuple(spec.availability_zones),
        cidr=spec.network.cidr,
        existing_network=spec.network.existing_network,
        external_network=spec.network.external_network,
        dns_nameservers=tuple(spec.network.dns_nameservers),
        image=template.image,
        flavor=template.flavor,
        user_data=(with_credentials(_user_data(template, spec.storage.volume_size_gb), database)
                   if database is not None
                   else _user_data(template, spec.storage.volume_size_gb)),
        key_name=template.key_name,
        server_metadata=dict(template.metadata),
        template_ports=tuple((p.port, str(p.protocol).lower()) for p in template.ports),
        # normalised (10.0.0.5/24 -> 10.0.0.0/24): Neutron stores it so, and a rule compared
        # with what it wrote would be re-created on every pass
        ingress=tuple((rule.port, str(rule.protocol).lower(),
                       str(ipaddress.ip_network(rule.from_, strict=False)))
                      for rule in spec.ingress),
        lb_ports=tuple(lb.ports),
        lb_protocol=str(lb.protocol),
        lb_algorithm=str(lb.algorithm),
        health_check=HealthCheckIntent(
            type=str(hc.type), path=hc.path, delay=hc.delay, timeout=hc.timeout,
            max_retries=hc.max_retries, expected_codes=hc.expected_codes,
        ),
        public_ip=spec.public_ip.enabled,
        retain_ip=spec.public_ip.retain,
        volume_size_gb=spec.storage.volume_size_gb,
        volume_type=spec.storage.volume_type,
        anti_affinity=anti_affinity,
        template_hash=template_hash(template, anti_affinity, bool(spec.storage.volume_size_gb),
                                    database.fingerprint if database is not None else None),
        domains=tuple(spec.domains),
        retained_tag=owner.retained_tag,
        require_member_health=require_member_health,
    )


#: the longest name a site makes: its server group, ``<prefix>-soft-anti-affinity-<uid>``;
#: every OpenStack name is at most 255 characters
MAX_PREFIX = 255 - len("-soft-anti-affinity-") - 36


def spec_problems(intent: SiteIntent, spec: Any = None) -> list[str]:
    """What is wrong with the spec whatever the cloud holds."""
    problems = []
    if len(intent.prefix) > MAX_PREFIX:
        problems.append(
            f"namespace and name are too long together ({len(intent.prefix)} characters in "
            f"the object names' prefix {intent.prefix[:40]}..., at most {MAX_PREFIX}): "
            "OpenStack names stop at 255 characters; use a shorter name"
        )
    if spec is not None and spec.storage.gluster_volume:
        problems.append("storage.glusterVolume is not supported yet (GlusterVolume is on its "
                        "way): remove it; it would be ignored")
    declared = {port for port, _ in intent.template_ports}
    missing = [p for p in intent.lb_ports if p not in declared]
    if missing:
        problems.append(
            f"loadBalancer.ports {missing} are not served by the SiteTemplate (its ports: "
            f"{sorted(declared)}); add them to the template or remove them from the site"
        )
    return problems


# --- projection --------------------------------------------------------------------------------
def project(snap: Snapshot, intent: SiteIntent) -> ObservedSite:
    """One site's objects in the tenant snapshot, keyed for planning. Pure."""
    owned = snap.owned(intent.owner_uid)
    untagged = J.orphans(snap, owned, intent.adoptable_names)
    untagged |= J.port_orphans(snap, intent.fleet.server_prefix)
    net = J.project_network(snap, owned, intent.network, untagged)
    lb = J.project_load_balancer(owned)
    obs = ObservedSite(
        network=net.network,
        subnet=net.subnet,
        router=net.router,
        router_interface=net.router_interface,
        security_group=J.one(owned, Kind.SECURITY_GROUP),
        server_groups=owned.get(Kind.SERVER_GROUP, []),
        ports={**J.attached_port_orphans(snap, owned, intent.fleet.server_prefix),
               **J.by_index(owned.get(Kind.PORT, []))},
        servers=[s for s in owned.get(Kind.SERVER, []) if s.status != "DELETED"],
        volumes=J.by_index(owned.get(Kind.VOLUME, [])),
        load_balancer=lb.load_balancer,
        listeners=lb.listeners,
        pools=lb.pools,
        health_monitors=lb.health_monitors,
        floating_ip=J.one(owned, Kind.FLOATING_IP),
        untagged=untagged,
        external_network_id=net.external_network_id,
        shared_network=net.shared_network,
        shared_subnet=net.shared_subnet,
        overlapping_subnets=net.overlapping_subnets,
    )
    if obs.floating_ip is None:
        obs.retained_ip = J.retained_ip(snap, intent.retained_tag)
        vip = obs.load_balancer.get("vip_port_id") if obs.load_balancer else None
        obs.vip_floating_ip = J.floating_ip_on(snap, vip, set())
    return obs


def lookups(gateway: Gateway, intent: SiteIntent, obs: ObservedSite) -> None:
    """Pool members (listed when a pool's member IDs changed, or, while the pool is not
    ONLINE, for their health), image, flavor, zones."""
    for port, pool in obs.pools.items():
        refresh = intent.require_member_health and pool.get("operating_status") != ONLINE
        obs.members[port] = gateway.members(pool, refresh=refresh)
    obs.image_id = gateway.find_image_id(intent.image)
    flavor = gateway.find_flavor(intent.flavor)
    obs.flavor_id = flavor.id if flavor is not None else None
    if intent.availability_zones:
        obs.available_zones = gateway.availability_zones()


# --- status ------------------------------------------------------------------------------------
def resources(o: ObservedSite, created: dict[str, CloudObject]) -> WebSiteResources:
    def pick(key: str, obj: CloudObject | None) -> str | None:
        new = created.get(key)
        return new.id if new is not None else (obj.id if obj is not None else None)

    group = created.get("server_group") or next(iter(o.server_groups), None)
    servers = []
    for view in server_views(o.servers, o.ports):
        volume = o.volumes.get(view.index)
        servers.append(ServerStatus(
            name=view.obj.name, id=view.obj.id, availability_zone=view.az, address=view.address,
            status=view.status, template_hash=view.template_hash,
            volume=volume.id if volume else None,
        ))
    for key, obj in created.items():
        if key.startswith("server:"):
            servers.append(ServerStatus(
                name=obj.name, id=obj.id, status=obj.status or "BUILD",
                template_hash=T.tag_value(obj.tags, T.TEMPLATE_PREFIX),
            ))
    fip = created.get("floating_ip") or o.floating_ip
    return WebSiteResources(
        network=pick("network", o.network or o.shared_network),
        subnet=pick("subnet", o.subnet or o.shared_subnet),
        router=pick("router", o.router),
        security_group=pick("security_group", o.security_group),
        server_group=group.id if group is not None else None,
        servers=servers,
        load_balancer=pick("load_balancer", o.load_balancer),
        listeners={str(p): obj.id for p, obj in o.listeners.items()},
        pools={str(p): obj.id for p, obj in o.pools.items()},
        floating_ip=FloatingIPStatus(id=fip.id, address=fip.get("floating_ip_address"))
        if fip is not None else None,
    )


# --- serving: the step after the cloud part -------------------------------------------------
def serving(ctx: Converged) -> StepResult:
    """Ready only when the site answers: every listener has members its health monitor
    reports ONLINE, and no current server's member is still without a verdict. A member in
    ERROR while others serve is Degraded (with an Event), not "not Ready"."""
    intent: SiteIntent = ctx.intent
    obs: ObservedSite = ctx.observed
    if not intent.require_member_health or not obs.pools:
        return StepResult(done=True)
    health = member_health(obs.pools, obs.members)
    views = {v.address: v.obj.name for v in server_views(obs.servers, obs.ports) if v.address}

    def names(by_address) -> list[str]:
        return sorted(f"{views.get(a, a)} ({a})" for a in by_address)

    serving_count = sum(1 for a in views if health.serving(a))
    check = intent.health_check
    check_text = (f"{check.type} GET {check.path} expecting {check.expected_codes}"
                  if check.type.upper() in ("HTTP", "HTTPS") else check.type)
    problems = [Problem(Reason.MEMBER_ERROR,
                        f"{n} fails the load balancer's health check ({check_text})")
                for n in names(health.failing)]
    url = f" at {ctx.status.url}" if ctx.status.url else ""
    message = f"{serving_count}/{intent.replicas} servers serving{url}"
    pending = [a for a in health.unknown if a in views]
    if health.every_pool_serves and not pending:
        return StepResult(done=True, problems=problems, ready_replicas=serving_count,
                          ready_message=message)
    if pending:
        return StepResult(
            done=False, reason=Reason.WAITING_FOR_HEALTH, requeue_after=2.0,
            problems=problems, ready_replicas=serving_count,
            message=f"{message}; waiting for the health checks of {', '.join(names(pending))} "
            "(operating status not ONLINE yet; a cloud that reports no member health needs "
            "FLEXINFRA_MEMBER_HEALTH=ignored)",
        )
    return StepResult(
        done=False, reason=Reason.NOT_SERVING, requeue_after=5.0, problems=problems,
        ready_replicas=serving_count,
        message=f"no server passes the load balancer's health check ({check_text}) on every "
        "port: check that the template's boot script serves it",
    )


# --- the kind ----------------------------------------------------------------------------------
class WebSiteKind(CloudKind[SiteIntent, ObservedSite]):
    name = "WebSite"
    steps = (serving,)

    def intent(self, owner: Owner, spec: Any, template: Any = None,
               require_member_health: bool = True, database: SiteDatabase | None = None,
               **_: Any) -> SiteIntent:
        if template is None:
            raise InvalidSpec(
                f"SiteTemplate {spec.template!r} not found: create it or fix spec.template"
            )
        intent = site_intent(owner, spec, template, require_member_health, database)
        problems = spec_problems(intent, spec)
        if problems:
            raise InvalidSpec("; ".join(problems))
        return intent

    def project(self, snap: Snapshot, intent: SiteIntent) -> ObservedSite:
        return project(snap, intent)

    def lookups(self, gateway: Gateway, intent: SiteIntent, observed: ObservedSite) -> None:
        lookups(gateway, intent, observed)

    def plan(self, intent: SiteIntent, observed: ObservedSite) -> Plan:
        return plan_site(intent, observed)[0]

    def status(self, intent: SiteIntent, observed: ObservedSite, plan: Plan,
               execution: Execution) -> KindStatus:
        message = f"{plan.ready_replicas}/{intent.replicas} servers serving"
        message += f" at {plan.url}" if plan.url else ""
        return KindStatus(resources(observed, execution.created), plan.url,
                          plan.ready_replicas, message)


WEBSITE = WebSiteKind()


def reconcile_website(owner: Owner, spec: Any, template: Any, gateway: Gateway,
                      require_member_health: bool = True,
                      database: SiteDatabase | None = None) -> Outcome:
    """One bounded pass for one WebSite (see ``reconcile.driver``)."""
    return reconcile(WEBSITE, owner, spec, gateway, template=template,
                     require_member_health=require_member_health, database=database)


def plan_website(owner: Owner, spec: Any, template: Any, gateway: Gateway) -> list[PlannedAction]:
    """What one pass would do now, without changing anything (``flexinfra plan``)."""
    return plan_only(WEBSITE, owner, spec, gateway, template=template)


def teardown_website(owner: Owner, gateway: Gateway) -> TeardownOutcome:
    return teardown(owner, gateway)
