"""What the sandbox's OpenStack holds before anyone uses it, made through its own APIs.

Projects, users, roles and endpoints (Keystone); flavors, availability zones, a tiny image, the
external network ``public``, Octavia's management network, and quotas. Everything is
find-or-create, so a run cut short can simply be repeated; ``openstack.py`` stamps each phase
when complete so a warm ``up`` skips it.
"""

from __future__ import annotations

import datetime
import sys
import time
from typing import TYPE_CHECKING

import openstack
import openstack.connection

from flexinfra_sandbox import openstack_conf as conf
from flexinfra_sandbox.openstack_conf import HOST, PORTS, Ctx
from flexinfra_sandbox.paths import SandboxPaths
from flexinfra_sandbox.supervisor import ServiceFailed, tail

if TYPE_CHECKING:
    from flexinfra_sandbox.openstack import _Stack

PUBLIC_CIDR = "203.0.113.0/24"  # TEST-NET-3: a documentation range, never routed
LB_MGMT_CIDR = conf.LB_MGMT_CIDR

FLAVORS = {  # name: (vcpus, ram MiB, disk GiB)
    "m1.tiny": (1, 512, 1),
    "m1.small": (1, 2048, 20),
    "m1.medium": (2, 4096, 40),
    "m1.large": (4, 8192, 80),
}

#: generous quotas for the demo project: the operator builds several tenants in it, and
#: `make bench` builds 50 sites (a router, a server group, a floating IP each) beside the rest
DEMO_QUOTAS = {
    "compute": {"instances": 200, "cores": 800, "ram": 1638400, "server_groups": 120,
                "server_group_members": 50},
    "network": {"networks": 150, "subnets": 150, "ports": 1000, "routers": 120,
                "floating_ips": 120, "security_groups": 150, "security_group_rules": 2000},
    "volume": {"volumes": 200, "gigabytes": 10000, "snapshots": 200, "backups": 100},
}  # fmt: skip


def connect(paths: SandboxPaths, cloud: str) -> openstack.connection.Connection:
    """A connection from the generated clouds.yaml, ignoring the caller's OS_* variables."""
    config = openstack.config.OpenStackConfig(
        config_files=[str(paths.clouds_yaml)], load_envvars=False
    )
    return openstack.connection.Connection(config=config.get_one(cloud=cloud))


# ================================================================================ Keystone
def identity(admin: openstack.connection.Connection, ctx: Ctx) -> None:
    idc = admin.identity

    def role(name: str):
        return idc.find_role(name) or idc.create_role(name=name)

    def project(name: str, description: str):
        return idc.find_project(name, domain_id="default") or idc.create_project(
            name=name, domain_id="default", description=description
        )

    def user(name: str, password: str, default_project):
        u = idc.find_user(name, domain_id="default")
        if u is None:
            return idc.create_user(
                name=name, password=password, domain_id="default",
                default_project_id=default_project.id,
            )  # fmt: skip
        return idc.update_user(u, password=password)

    service = project("service", "OpenStack service users (flexinfra sandbox)")
    demo = project("demo", "flexinfra sandbox: the project a tenant user works in")
    roles = {
        n: role(n)
        for n in ("admin", "member", "reader", "service", "load-balancer_member",
                  "load-balancer_admin", "load-balancer_observer")
    }  # fmt: skip
    for name in conf.SERVICE_USERS:
        u = user(name, ctx.secrets["service"], service)
        # admin for the APIs that still want it, service for service-to-service policies
        for r in ("admin", "service"):
            idc.assign_project_role_to_user(service, u, roles[r])
    member = user("member", ctx.secrets["demo"], demo)
    for r in ("member", "reader", "load-balancer_member"):
        idc.assign_project_role_to_user(demo, member, roles[r])
    admin_user = idc.find_user("admin", domain_id="default")
    idc.assign_project_role_to_user(demo, admin_user, roles["admin"])

    def url(svc: str, suffix: str = "") -> str:
        return f"http://{HOST}:{PORTS[svc]}{suffix}"

    catalog = [
        ("glance", "image", url("glance")),
        ("placement", "placement", url("placement")),
        ("neutron", "network", url("neutron")),
        ("nova", "compute", url("nova", "/v2.1")),
        ("cinderv3", "volumev3", url("cinder", "/v3")),
        ("cinder", "block-storage", url("cinder", "/v3")),
        ("octavia", "load-balancer", url("octavia")),
    ]
    services = list(idc.services())
    for name, stype, endpoint in catalog:
        svc = next((s for s in services if s.type == stype and s.name == name), None)
        if svc is None:
            svc = idc.create_service(name=name, type=stype, is_enabled=True)
        have = {e.interface for e in idc.endpoints(service_id=svc.id)}
        for iface in ("public", "internal", "admin"):
            if iface not in have:
                idc.create_endpoint(
                    service_id=svc.id, interface=iface, url=endpoint, region_id=conf.REGION
                )


# ================================================================================ waits
def _wait(what: str, check, timeout: float, stack: _Stack | None = None, names=()) -> None:
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            if check():
                return
        except Exception as e:  # the API may still be warming up
            last_error = f" (last error: {e})"
        if stack is not None:
            for n in names:
                if stack.sup.pid(n) is None:
                    log = stack.sup.log_path(n)
                    raise ServiceFailed(
                        f"sandbox service {n!r} died while waiting for {what}; "
                        f"last lines of {log}:\n{tail(log)}"
                    )
        if time.monotonic() > deadline:
            logs = "".join(
                f"\nlast lines of {stack.sup.log_path(n)}:\n{tail(stack.sup.log_path(n), 15)}"
                for n in names
            ) if stack is not None else ""  # fmt: skip
            raise ServiceFailed(
                f"timed out after {timeout:.0f}s waiting for {what}{last_error}{logs}"
            )
        time.sleep(1)


def wait_computes(admin, hosts: list[str], stack: _Stack) -> None:
    """Until every nova-compute reports "up" (not merely listed) and is mapped to cell1."""
    names = [f"nova-compute-{h}" for h in hosts]

    # "up" only means a heartbeat in the last minute: after a quick restart that may be the old
    # process's. Wait for a heartbeat newer than the current process's start.
    started = {h: _started_at(stack, f"nova-compute-{h}") for h in hosts}

    def services_up() -> bool:
        svcs = admin.compute.services(binary="nova-compute")
        up = {
            s.host
            for s in svcs
            if s.state == "up"
            and s.status == "enabled"
            and s.host in started
            and _utc(s.updated_at) >= started[s.host]
        }
        return set(hosts) <= up

    def nodes_exist() -> bool:
        return set(hosts) <= {h.name for h in admin.compute.hypervisors()}

    _wait("nova-compute services to report up", services_up, 300, stack, names)
    _wait("compute nodes to register", nodes_exist, 120, stack, names)
    stamp = stack.paths.data / "stamps" / ("hosts-" + "-".join(hosts))
    if not stamp.exists():
        stack.discover_hosts()
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(time.strftime("%F %T\n"))


def _started_at(stack: _Stack, name: str) -> float:
    """When the running service was started (its pid file is written then), minus 2 s slack."""
    pidfile = stack.paths.pids / f"{name}.pid"
    return pidfile.stat().st_mtime - 2 if pidfile.exists() else 0.0


def _utc(stamp: str | None) -> float:
    """A Nova/Cinder ``updated_at`` (naive UTC, ISO 8601) as a Unix time."""
    if not stamp:
        return 0.0
    t = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.UTC)
    return t.timestamp()


def wait_volume_service(admin, stack: _Stack) -> None:
    """Until cinder-volume and cinder-scheduler heartbeat (a volume create fails before)."""
    binaries = ("cinder-volume", "cinder-scheduler")
    started = {b: _started_at(stack, b) for b in binaries}

    def up() -> bool:
        ups = {
            s.binary
            for s in admin.block_storage.services()
            if s.state == "up"
            and s.status == "enabled"
            and s.binary in started
            and _utc(s.updated_at) >= started[s.binary]
        }
        return set(binaries) <= ups

    _wait("cinder-volume and cinder-scheduler to report up", up, 180, stack, binaries)


# ================================================================================ resources
def resources(admin: openstack.connection.Connection, ctx: Ctx) -> dict[str, str]:
    """Flavors, AZs, images, networks, quotas. Returns the IDs Octavia's config needs."""
    service = admin.identity.find_project("service", domain_id="default")
    demo = admin.identity.find_project("demo", domain_id="default")
    compute = admin.compute

    for name, (vcpus, ram, disk) in FLAVORS.items():
        if compute.find_flavor(name, ignore_missing=True) is None:
            compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=disk, is_public=True)
    amp = compute.find_flavor("amphora", ignore_missing=True)
    if amp is None:
        amp = compute.create_flavor(name="amphora", vcpus=1, ram=1024, disk=2, is_public=False)
    if service.id not in {a["tenant_id"] for a in compute.get_flavor_access(amp)}:
        compute.flavor_add_tenant_access(amp, service.id)

    # two availability zones: one nova-compute each (the aggregate carries the AZ)
    aggs = {a.name: a for a in compute.aggregates()}
    for host, az in conf.COMPUTES.items():
        agg = aggs.get(az) or compute.create_aggregate(name=az, availability_zone=az)
        if host not in (agg.hosts or []):
            compute.add_host_to_aggregate(agg, host)

    # a tiny image: the sandbox's VMs do not boot images, they only need one to name
    payload = b"flexinfra sandbox tiny image (the VMs run no image)\n".ljust(4096, b"\0")
    images = {i.name: i for i in admin.image.images()}
    if "cirros" not in images:
        admin.image.create_image(
            name="cirros", data=payload, disk_format="raw", container_format="bare",
            visibility="public", wait=True, allow_duplicates=True,
        )  # fmt: skip
    # what examples/galeracluster-shared-db.yaml names: a sandbox VM sees the host's files,
    # which hold MariaDB, galera-4, rsync and python3 (install-packages.sh), so any image
    # stands for it here; on a real cloud it is an image with those installed
    if "debian-12-mariadb" not in images:
        admin.image.create_image(
            name="debian-12-mariadb", data=payload, disk_format="raw",
            container_format="bare", visibility="public", wait=True, allow_duplicates=True,
        )  # fmt: skip
    amp_image = images.get("amphora") or admin.image.create_image(
        name="amphora", data=payload, disk_format="raw", container_format="bare",
        visibility="private", tags=["amphora"], wait=True, allow_duplicates=True,
    )  # fmt: skip
    if amp_image.owner != service.id:
        admin.image.update_image(amp_image, owner=service.id)

    net = admin.network
    public = net.find_network("public")
    if public is None:
        public = net.create_network(
            name="public", is_router_external=True, provider_network_type="flat",
            provider_physical_network="public", is_shared=False,
        )  # fmt: skip
    if not list(net.subnets(network_id=public.id)):
        net.create_subnet(
            network_id=public.id, name="public-subnet", ip_version=4, cidr=PUBLIC_CIDR,
            gateway_ip="203.0.113.1", is_dhcp_enabled=False,
            allocation_pools=[{"start": "203.0.113.10", "end": "203.0.113.250"}],
        )  # fmt: skip
    mgmt = net.find_network("lb-mgmt-net", project_id=service.id)
    if mgmt is None:
        mgmt = net.create_network(name="lb-mgmt-net", project_id=service.id)
    if not list(net.subnets(network_id=mgmt.id)):
        net.create_subnet(
            network_id=mgmt.id, name="lb-mgmt-subnet", ip_version=4, cidr=LB_MGMT_CIDR,
            project_id=service.id, is_dhcp_enabled=False,
        )  # fmt: skip
    sg = net.find_security_group("lb-mgmt-sec-grp", project_id=service.id)
    if sg is None:
        sg = net.create_security_group(name="lb-mgmt-sec-grp", project_id=service.id)

    admin.set_compute_quotas(demo.id, **DEMO_QUOTAS["compute"])
    admin.set_network_quotas(demo.id, **DEMO_QUOTAS["network"])
    admin.set_volume_quotas(demo.id, **DEMO_QUOTAS["volume"])
    # amphorae are servers and ports of the service project: never let quotas stop an LB
    admin.set_compute_quotas(service.id, instances=-1, cores=-1, ram=-1)
    admin.set_network_quotas(service.id, ports=-1, security_groups=-1, security_group_rules=-1)

    return {
        "service_project_id": service.id,
        "demo_project_id": demo.id,
        "amp_flavor_id": amp.id,
        "lb_mgmt_net_id": mgmt.id,
        "lb_mgmt_sg_id": sg.id,
        "public_net_id": public.id,
    }


def data_plane(admin, ctx: Ctx, registries: list[str]) -> None:
    """Every `up`, idempotent: what the data plane needs from the cloud's own state.

    * The external subnet's allocation pools leave out the addresses where this machine's
      package registries answer (``dataplane.registry_addresses``): no floating IP, VIP or
      router gateway may ever be one of them.
    * Octavia's management security group lets the controller (the host, at the network's
      gateway address) reach the amphora agent (TCP 9443) and ping; amphorae send heartbeats
      out, which the default egress rules allow.
    * The host's port on every IPv4 subnet is plugged again: after `down` the host's links
      are gone while Neutron keeps the networks. Updating a subnet (to the same description,
      sent as is: the SDK would send nothing) runs the ML2 driver's postcommit, which plugs
      it again (``plugins/.../ml2.py``).
    """
    net = admin.network
    from flexinfra_sandbox import dataplane

    for subnet in net.subnets(network_id=ctx.ids.get("public_net_id")):
        pools = dataplane.allocation_pools(subnet.cidr, subnet.gateway_ip, registries)
        if sorted(subnet.allocation_pools or [], key=str) != sorted(pools, key=str):
            try:
                net.update_subnet(subnet, allocation_pools=pools)
            except Exception as e:  # an address already given out: say so, keep going
                print(f"sandbox/openstack: cannot narrow {subnet.cidr}'s pools to {pools}: {e}",
                      file=sys.stderr)
    sg = net.find_security_group("lb-mgmt-sec-grp", project_id=ctx.ids.get("service_project_id"))
    if sg is not None:
        have = {(r.protocol, r.port_range_min, r.remote_ip_prefix)
                for r in net.security_group_rules(security_group_id=sg.id, direction="ingress")}
        for proto, port in (("tcp", 9443), ("icmp", None)):
            if (proto, port, LB_MGMT_CIDR) not in have:
                net.create_security_group_rule(
                    security_group_id=sg.id, direction="ingress", ethertype="IPv4",
                    protocol=proto, port_range_min=port, port_range_max=port,
                    remote_ip_prefix=LB_MGMT_CIDR,
                )  # fmt: skip
    for subnet in net.subnets(ip_version=4):
        net.put(f"/subnets/{subnet.id}",
                json={"subnet": {"description": subnet.description or ""}}).raise_for_status()
    from flexinfra_sandbox import images

    images.ensure_amphora_image(admin, ctx.paths, ctx.ids["service_project_id"])
