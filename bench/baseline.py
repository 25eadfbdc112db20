"""The critical path of one site's cloud operations, done directly with openstacksdk.

Everything that can run in parallel does (network chain ‖ security group ‖ servers ‖ load
balancer), so its wall time is the floor the operator is compared with.
"""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor

import openstack
from keystoneauth1 import exceptions as ksa_exc

USER_DATA = "#!/bin/sh\ncd /tmp && exec python3 -m http.server 80 --bind 0.0.0.0\n"


def patient(fn, *args, **kwargs):
    """A read or a wait, retried when a busy API resets the connection (as the operator's
    gateway retries its reads): a baseline that dies on the first reset measures nothing."""
    for attempt in range(5):
        try:
            return fn(*args, **kwargs)
        except (ksa_exc.ConnectFailure, ksa_exc.ConnectTimeout):
            if attempt == 4:
                raise
            time.sleep(0.5)


def build_site(conn: openstack.connection.Connection, name: str, cidr: str,
               replicas: int) -> dict:
    t0 = time.monotonic()
    public = conn.network.find_network("public")
    image = conn.image.find_image("cirros")
    flavor = conn.compute.find_flavor("m1.tiny")
    net = conn.network.create_network(name=f"{name}-net")
    subnet = conn.network.create_subnet(network_id=net.id, cidr=cidr, ip_version=4,
                                        name=f"{name}-subnet")
    made: dict = {"net": net.id, "subnet": subnet.id}

    def router():
        r = conn.network.create_router(name=f"{name}-router",
                                       external_gateway_info={"network_id": public.id})
        conn.network.add_interface_to_router(r, subnet_id=subnet.id)
        made["router"] = r.id

    def security_group():
        sg = conn.network.create_security_group(name=f"{name}-sg")
        conn.network.create_security_group_rule(
            security_group_id=sg.id, direction="ingress", protocol="tcp",
            port_range_min=80, port_range_max=80, remote_ip_prefix="0.0.0.0/0")
        made["sg"] = sg.id
        return sg

    def server(i: int, sg):
        s = conn.compute.create_server(
            name=f"{name}-web-{i}", image_id=image.id, flavor_id=flavor.id,
            networks=[{"uuid": net.id}], security_groups=[{"name": sg.name}],
            user_data=base64.b64encode(USER_DATA.encode()).decode())
        s = patient(conn.compute.wait_for_server, s, interval=0.5, wait=300)
        return s

    def load_balancer():
        lb = conn.load_balancer.create_load_balancer(name=f"{name}-lb", vip_subnet_id=subnet.id)
        lb = patient(conn.load_balancer.wait_for_load_balancer, lb.id, interval=0.5, wait=300)
        listener = conn.load_balancer.create_listener(
            name=f"{name}-l80", protocol="TCP", protocol_port=80, load_balancer_id=lb.id)
        patient(conn.load_balancer.wait_for_load_balancer, lb.id, interval=0.5, wait=300)
        pool = conn.load_balancer.create_pool(
            name=f"{name}-p80", protocol="TCP", lb_algorithm="ROUND_ROBIN",
            listener_id=listener.id)
        patient(conn.load_balancer.wait_for_load_balancer, lb.id, interval=0.5, wait=300)
        conn.load_balancer.create_health_monitor(
            pool_id=pool.id, type="HTTP", delay=5, timeout=3, max_retries=3, url_path="/")
        patient(conn.load_balancer.wait_for_load_balancer, lb.id, interval=0.5, wait=300)
        made["lb"] = lb.id
        return lb, pool

    with ThreadPoolExecutor(max_workers=4 + replicas) as pool_exec:
        fut_router = pool_exec.submit(router)
        sg = security_group()
        fut_servers = [pool_exec.submit(server, i, sg) for i in range(replicas)]
        fut_lb = pool_exec.submit(load_balancer)
        servers = [f.result() for f in fut_servers]
        lb, pool = fut_lb.result()
        fut_router.result()
    for s in servers:
        address = next(iter(s.addresses.values()))[0]["addr"]
        conn.load_balancer.create_member(pool, address=address, protocol_port=80,
                                         subnet_id=subnet.id)
        patient(conn.load_balancer.wait_for_load_balancer, lb.id, interval=0.5, wait=300)
    fip = conn.network.create_ip(floating_network_id=public.id, port_id=lb.vip_port_id,
                                 description=f"{name}-fip")
    made.update(servers=[s.id for s in servers], fip=fip.id)
    # done = serving, as the operator's Ready: the health monitor reports every member ONLINE
    deadline = time.monotonic() + 300
    while not all(m.operating_status == "ONLINE"
                  for m in patient(lambda: list(conn.load_balancer.members(pool)))):
        assert time.monotonic() < deadline, f"{name}: members not ONLINE after 300 s"
        time.sleep(0.5)
    made["seconds"] = time.monotonic() - t0
    return made


def cleanup_leftovers(conn: openstack.connection.Connection, prefix: str = "bl-") -> None:
    """Delete what an interrupted baseline run left (everything it names starts with bl-)."""
    for lb in conn.load_balancer.load_balancers():
        if lb.name.startswith(prefix):
            conn.load_balancer.delete_load_balancer(lb, cascade=True, ignore_missing=True)
    for ip in conn.network.ips():
        if (ip.description or "").startswith(prefix):
            conn.network.delete_ip(ip, ignore_missing=True)
    for s in conn.compute.servers():
        if s.name.startswith(prefix):
            conn.compute.delete_server(s, ignore_missing=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (
        any(s.name.startswith(prefix) for s in conn.compute.servers())
        or any(lb.name.startswith(prefix) for lb in conn.load_balancer.load_balancers())
    ):
        time.sleep(1)
    for r in conn.network.routers():
        if r.name.startswith(prefix):
            for port in conn.network.ports(device_id=r.id, device_owner="network:router_interface"):
                conn.network.remove_interface_from_router(r, port_id=port.id)
            conn.network.delete_router(r)
    for sg in conn.network.security_groups():
        if sg.name.startswith(prefix):
            conn.network.delete_security_group(sg, ignore_missing=True)
    for n in conn.network.networks():
        if n.name.startswith(prefix):
            for port in conn.network.ports(network_id=n.id):
                if not port.device_owner or port.device_owner.startswith("compute"):
                    conn.network.delete_port(port, ignore_missing=True)
            conn.network.delete_network(n, ignore_missing=True)


def delete_site(conn: openstack.connection.Connection, made: dict) -> None:
    conn.network.delete_ip(made["fip"], ignore_missing=True)
    conn.load_balancer.delete_load_balancer(made["lb"], cascade=True, ignore_missing=True)
    for sid in made["servers"]:
        conn.compute.delete_server(sid, ignore_missing=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (
        any(patient(conn.compute.find_server, sid) for sid in made["servers"])
        or patient(conn.load_balancer.find_load_balancer, made["lb"])
    ):
        time.sleep(0.5)
    conn.network.remove_interface_from_router(made["router"], subnet_id=made["subnet"])
    conn.network.delete_router(made["router"])
    for port in conn.network.ports(network_id=made["net"]):
        if port.device_owner in ("", None) or port.device_owner.startswith("compute"):
            conn.network.delete_port(port, ignore_missing=True)
    conn.network.delete_security_group(made["sg"], ignore_missing=True)
    conn.network.delete_network(made["net"], ignore_missing=True)
