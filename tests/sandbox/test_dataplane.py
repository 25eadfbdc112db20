"""The sandbox's data plane, as a tenant sees it: the external range stays on this machine,
floating IPs route, security groups filter (rules applied within seconds, remote groups,
port security off), networks are isolated, and load balancers really balance and
health-check. Every request goes to an address on this machine (checked with
``ip route get`` before anything is sent).

Real code under test: Neutron's L3 agent (routers, SNAT, floating IPs), Neutron's iptables
firewall (security groups), Octavia's amphora agent + haproxy + health manager (load
balancers). See sandbox/README.md.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from flexinfra_sandbox import dataplane, traffic
from tests.sandbox.test_openstack import PATHS, Cloud, connect, fixed_ip

pytestmark = pytest.mark.sandbox

NAME_PREFIX = "dp"
CIDR_A, CIDR_B = "10.41.1.0/24", "10.41.2.0/24"

#: every VM: its name on port 80 (and /healthz), the same on 8080, and on TCP 9000
SERVE = r"""#!/bin/sh
mkdir -p /srv/www /srv/alt
hostname > /srv/www/index.html; echo ok > /srv/www/healthz; hostname > /srv/alt/index.html
cat > /srv/tcp.py <<'EOF'
import os, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 9000))
s.listen(64)
while True:
    c, _ = s.accept()
    c.sendall((os.uname().nodename + "\n").encode())
    c.close()
EOF
cd /srv/www && nohup python3 -m http.server 80 >/var/log/web.log 2>&1 &
cd /srv/alt && nohup python3 -m http.server 8080 >/var/log/alt.log 2>&1 &
nohup python3 /srv/tcp.py >/var/log/tcp.log 2>&1 &
"""


# --- helpers -------------------------------------------------------------------------------
def get(url: str, timeout: float = 1.5) -> str | None:
    """One GET (the address checked local first); the first line, or None if refused."""
    traffic.check_local(url.split("//", 1)[1].split("/", 1)[0].split(":", 1)[0])
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return (r.read().decode().strip().splitlines() or [""])[0]
    except (urllib.error.URLError, OSError):
        return None


def tcp_line(address: str, port: int, timeout: float = 1.5) -> str | None:
    traffic.check_local(address)
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            return s.makefile().readline().strip()
    except OSError:
        return None


def until(check, timeout: float, every: float = 0.1):
    """Seconds until ``check()`` is truthy; fails after ``timeout``."""
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < timeout, f"not within {timeout}s"
        time.sleep(every)
    return time.monotonic() - t0


def vm_init_pid(server_id: str) -> int:
    state = json.loads((PATHS.data / "vms" / server_id / "state.json").read_text())
    return state["init_pid"]


def in_vm(server_id: str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess:
    """A command inside a VM (all its namespaces), as if typed on its console."""
    return subprocess.run(["nsenter", "-t", str(vm_init_pid(server_id)), "-a", *argv],
                          capture_output=True, text=True, timeout=timeout)


def vm_get(server_id: str, url: str) -> str | None:
    """GET from inside a VM (with its own python3); None if refused or timed out."""
    code = ("import urllib.request,sys\ntry:\n print(urllib.request.urlopen(sys.argv[1], "
            "timeout=2).read().decode().split()[0])\nexcept Exception as e:\n print('FAIL', e)")
    out = in_vm(server_id, "python3", "-c", code, url).stdout.strip()
    return None if out.startswith("FAIL") or not out else out


def rule(conn, sg, port: int, remote_ip: str | None = "0.0.0.0/0", remote_group=None,
         protocol: str = "tcp"):
    return conn.network.create_security_group_rule(
        security_group_id=sg.id, direction="ingress", ethertype="IPv4", protocol=protocol,
        port_range_min=port, port_range_max=port, remote_ip_prefix=remote_ip,
        remote_group_id=remote_group,
    )


@contextlib.contextmanager
def floating_ip(cloud: Cloud, port_id: str | None):
    """A floating IP for the length of a test (a fixed IP takes one at most)."""
    conn = cloud.conn
    public = conn.network.find_network("public")
    fip = conn.network.create_ip(floating_network_id=public.id, port_id=port_id)
    try:
        yield fip
    finally:
        conn.network.delete_ip(fip, ignore_missing=True)


def port_of(conn, server) -> str:
    return next(conn.network.ports(device_id=server.id)).id


# --- the external range --------------------------------------------------------------------
def test_external_range_never_takes_the_default_route():
    conn = connect("admin")
    public = conn.network.find_network("public")
    subnet = next(conn.network.subnets(network_id=public.id))
    net = ipaddress.ip_network(subnet.cidr)
    registries = dataplane.registry_addresses(str(net))
    pools = [(ipaddress.ip_address(p["start"]), ipaddress.ip_address(p["end"]))
             for p in subnet.allocation_pools]
    for address in registries:  # the machine's package mirror: never given to the cloud
        assert not any(lo <= ipaddress.ip_address(address) <= hi for lo, hi in pools)
    routes = subprocess.run(["ip", "-4", "route", "show", str(net)], capture_output=True,
                            text=True).stdout
    assert f"unreachable {net}" in routes, routes
    ext_port = dataplane._ip("-o", "-4", "addr", "show", "to", f"{subnet.gateway_ip}/32")
    host_end = ext_port.split()[1]
    others = [str(a) for a in net.hosts() if str(a) not in registries]

    def leaks() -> list[str]:
        return [a for a in others if dataplane.route_leaves_machine(a)]

    assert leaks() == []
    # with the external network's part down (as after `sandbox down`): still never out
    subprocess.run(["ip", "link", "set", host_end, "down"], check=True)
    try:
        assert leaks() == []
        floating = str(pools[0][0])  # an address the cloud hands out
        assert subprocess.run(["ip", "route", "get", floating], capture_output=True).returncode
    finally:
        subprocess.run(["ip", "link", "set", host_end, "up"], check=True)
    until(lambda: traffic.check_local(subnet.gateway_ip), 10)


# --- a small tenant: two networks, routers, three web servers -------------------------------
@pytest.fixture(scope="module")
def tenant():
    conn = connect("demo")
    cloud = Cloud(conn, f"dp{int(time.time()) % 100000}")
    try:
        net_a, sub_a, _ = cloud.network(CIDR_A, router=True)
        cloud_b = Cloud(conn, cloud.tag + "b")
        net_b, _sub_b, _ = cloud_b.network(CIDR_B, router=True)
        cloud.defer("network b", cloud_b.teardown)
        web = cloud.security_group(80)  # tcp 80 from anywhere; nothing else comes in
        rule(conn, web, 9000, remote_ip=CIDR_A)  # the load balancer's amphora reaches 9000
        a1 = cloud.server(net_a, SERVE, "a1", security_groups=[{"name": web.name}])
        a2 = cloud.server(net_a, SERVE, "a2", security_groups=[{"name": web.name}])
        b1 = cloud.server(net_b, SERVE, "b1", security_groups=[{"name": web.name}])
        for s in (a1, a2, b1):
            until(lambda s=s: get(f"http://{fixed_ip(s)}/"), 20)
        yield cloud, {"a1": a1, "a2": a2, "b1": b1, "web": web, "sub_a": sub_a,
                      "net_a": net_a}
    finally:
        cloud.teardown()


def test_floating_ip_follows_its_association(tenant):
    cloud, t = tenant
    conn, a1, a2 = cloud.conn, t["a1"], t["a2"]
    with floating_ip(cloud, None) as fip:
        url = f"http://{fip.floating_ip_address}/"
        assert get(url) is None
        def timed(change, check) -> float:
            """From the API call to the data plane showing it."""
            t0 = time.monotonic()
            change()
            until(check, 10)
            return time.monotonic() - t0

        associate = timed(lambda: conn.network.update_ip(fip, port_id=port_of(conn, a1)),
                          lambda: get(url) == a1.name)
        move = timed(lambda: conn.network.update_ip(fip, port_id=port_of(conn, a2)),
                     lambda: get(url) == a2.name)
        release = timed(lambda: conn.network.update_ip(fip, port_id=None),
                        lambda: get(url, timeout=0.5) is None)
        print(f"floating IP: associate -> reachable {associate:.2f}s, move {move:.2f}s, "
              f"disassociate -> unreachable {release:.2f}s")
        assert max(associate, move, release) < 10  # ~2 s idle; this machine is loaded in a full run


def test_security_groups_filter_from_the_host_and_other_networks(tenant):
    cloud, t = tenant
    conn, a1, b1, web = cloud.conn, t["a1"], t["b1"], t["web"]
    with floating_ip(cloud, port_of(conn, a1)) as fip:
        fip_ip, a1_ip = fip.floating_ip_address, fixed_ip(a1)
        until(lambda: get(f"http://{fip_ip}/") == a1.name, 10)
        # 80 is allowed; 8080 is not: refused from the host and from another network's VM
        assert get(f"http://{a1_ip}:8080/") is None
        assert vm_get(b1.id, f"http://{fip_ip}/") == a1.name
        assert vm_get(b1.id, f"http://{fip_ip}:8080/") is None
        opened = rule(conn, web, 8080)
        opens = until(lambda: get(f"http://{a1_ip}:8080/") == a1.name, 10)
        assert vm_get(b1.id, f"http://{fip_ip}:8080/") == a1.name
        conn.network.delete_security_group_rule(opened)
        closes = until(lambda: get(f"http://{a1_ip}:8080/", timeout=0.5) is None, 10)
        assert vm_get(b1.id, f"http://{fip_ip}:8080/") is None
        print(f"security group: rule added -> open {opens:.2f}s, removed -> closed {closes:.2f}s")
        assert max(opens, closes) < 10  # ~1 s idle; this machine is loaded in a full run


def test_remote_group_rules_and_port_security_off(tenant):
    cloud, t = tenant
    conn, a1, a2 = cloud.conn, t["a1"], t["a2"]
    clients = conn.network.create_security_group(name=cloud.name("clients"))
    cloud.defer("clients group", lambda: conn.network.delete_security_group(clients))
    db = conn.network.create_security_group(name=cloud.name("db"))
    cloud.defer("db group", lambda: conn.network.delete_security_group(db))
    rule(conn, db, 8080, remote_ip=None, remote_group=clients.id)
    a1_port, a2_port = port_of(conn, a1), port_of(conn, a2)
    conn.network.update_port(a1_port, security_group_ids=[t["web"].id, db.id])
    cloud.defer("a1 groups", lambda: conn.network.update_port(
        a1_port, security_group_ids=[t["web"].id]))
    url = f"http://{fixed_ip(a1)}:8080/"
    assert vm_get(a2.id, url) is None  # a2 is not a client yet
    conn.network.update_port(a2_port, security_group_ids=[t["web"].id, clients.id])
    cloud.defer("a2 groups", lambda: conn.network.update_port(
        a2_port, security_group_ids=[t["web"].id]))
    joined = until(lambda: vm_get(a2.id, url) == a1.name, 10, every=0.3)
    assert get(url) is None  # the host is no member of the group
    conn.network.update_port(a2_port, security_group_ids=[t["web"].id])
    left = until(lambda: vm_get(a2.id, url) is None, 10, every=0.3)
    print(f"remote group: member added -> allowed {joined:.2f}s, removed -> refused {left:.2f}s")
    # port security off: no filtering at all on that port
    conn.network.update_port(a1_port, security_group_ids=[], port_security_enabled=False)
    cloud.defer("a1 port security", lambda: conn.network.update_port(
        a1_port, port_security_enabled=True, security_group_ids=[t["web"].id]))
    until(lambda: get(url) == a1.name, 10)


def test_networks_are_isolated_but_floating_ips_route(tenant):
    cloud, t = tenant
    a1, b1 = t["a1"], t["b1"]
    with floating_ip(cloud, port_of(cloud.conn, a1)) as fip:
        until(lambda: get(f"http://{fip.floating_ip_address}/") == a1.name, 10)
        assert vm_get(b1.id, f"http://{fixed_ip(a1)}/") is None  # no route between tenants' nets
        assert vm_get(b1.id, f"http://{fip.floating_ip_address}/") == a1.name
        ping = in_vm(b1.id, "ping", "-c", "1", "-W", "1", fixed_ip(a1))
        assert ping.returncode != 0
        # and out: b1 reaches the outside (the host's external address) through its router's SNAT
        assert in_vm(b1.id, "ping", "-c", "1", "-W", "2", "203.0.113.1").returncode == 0


# --- load balancers ------------------------------------------------------------------------
def wait_lb(conn, lb_id: str, timeout: float = 120):
    def active():
        lb = conn.load_balancer.get_load_balancer(lb_id)
        assert lb.provisioning_status != "ERROR", lb
        return lb.provisioning_status == "ACTIVE"
    until(active, timeout, every=0.5)


def member_status(conn, pool_id: str, address: str) -> str:
    return next(m.operating_status for m in conn.load_balancer.members(pool_id)
                if m.address == address)


@pytest.fixture(scope="module")
def balancer(tenant):
    cloud, t = tenant
    conn = cloud.conn
    lb = conn.load_balancer.create_load_balancer(name=cloud.name("lb"),
                                                 vip_subnet_id=t["sub_a"].id)
    cloud.defer("load balancer", lambda: _delete_lb(conn, lb.id))
    wait_lb(conn, lb.id, timeout=180)
    lb = conn.load_balancer.get_load_balancer(lb.id)
    return lb


def _delete_lb(conn, lb_id: str) -> None:
    conn.load_balancer.delete_load_balancer(lb_id, cascade=True)
    until(lambda: conn.load_balancer.find_load_balancer(lb_id, ignore_missing=True) is None,
          180, every=1)


def listener_pool(conn, lb, port: int, protocol: str, algorithm: str, monitor: dict):
    ls = conn.load_balancer.create_listener(name=f"l{port}", protocol=protocol,
                                            protocol_port=port, load_balancer_id=lb.id)
    wait_lb(conn, lb.id)
    pool = conn.load_balancer.create_pool(name=f"p{port}", protocol=protocol,
                                          lb_algorithm=algorithm, listener_id=ls.id)
    wait_lb(conn, lb.id)
    conn.load_balancer.create_health_monitor(pool_id=pool.id, **monitor)
    wait_lb(conn, lb.id)
    return pool


HTTP_CHECK = {"type": "HTTP", "delay": 2, "timeout": 1, "max_retries": 2, "url_path": "/healthz"}
TCP_CHECK = {"type": "TCP", "delay": 2, "timeout": 1, "max_retries": 2}


def test_http_round_robin_health_checks_and_live_members(tenant, balancer):
    cloud, t = tenant
    conn, a1, a2 = cloud.conn, t["a1"], t["a2"]
    pool = listener_pool(conn, balancer, 80, "HTTP", "ROUND_ROBIN", HTTP_CHECK)
    with floating_ip(cloud, balancer.vip_port_id) as fip:
        url = f"http://{fip.floating_ip_address}/"  # floating IP -> VIP -> haproxy -> member
        t0 = time.monotonic()
        conn.load_balancer.create_member(pool, address=fixed_ip(a1), protocol_port=80,
                                         subnet_id=t["sub_a"].id)
        wait_lb(conn, balancer.id)
        until(lambda: get(url) == a1.name, 30)
        serving = time.monotonic() - t0
        conn.load_balancer.create_member(pool, address=fixed_ip(a2), protocol_port=80,
                                         subnet_id=t["sub_a"].id)
        wait_lb(conn, balancer.id)
        until(lambda: member_status(conn, pool.id, fixed_ip(a2)) == "ONLINE", 20, every=0.5)
        answers = traffic.Client(url, count=20, interval=0.05, deadline=20).run()
        assert answers.failed == 0 and set(answers.answers) == {a1.name, a2.name}, answers.summary()
        print(f"member add -> serving {serving:.1f}s (create call included); "
              f"round robin: {answers.summary()}")
        # the web process dies on a1: within delay x retries + 2 s only a2 answers
        killed_at = time.monotonic()
        in_vm(a1.id, "pkill", "-f", "http.server 80$")
        window = HTTP_CHECK["delay"] * HTTP_CHECK["max_retries"] + 2
        client = traffic.Client(url, count=200, interval=0.1, timeout=1, deadline=25).start()
        error = until(lambda: member_status(conn, pool.id, fixed_ip(a1)) == "ERROR", 25, every=0.5)
        time.sleep(max(0.0, window + 2 - (time.monotonic() - killed_at)))
        result = client.stop()
        late = [f for f in result.failures if f[0] > window]
        assert not late, f"failures after the {window}s window: {late}"
        after = traffic.Client(url, count=10, interval=0.05, deadline=10).run()
        assert after.failed == 0 and set(after.answers) == {a2.name}, after.summary()
        lb_status = conn.load_balancer.get_load_balancer(balancer.id).operating_status
        assert lb_status == "DEGRADED", lb_status
        print(f"web killed: {result.failed}/{result.total} failed, all within {window}s; "
              f"member ERROR in Octavia after {error:.1f}s; LB {lb_status}")
        in_vm(a1.id, "sh", "-c", "cd /srv/www && nohup python3 -m http.server 80 "
              ">/var/log/web.log 2>&1 &")
        back = until(lambda: member_status(conn, pool.id, fixed_ip(a1)) == "ONLINE", 20, every=0.5)
        again = traffic.Client(url, count=20, interval=0.05, deadline=20).run()
        assert a1.name in again.answers, again.summary()
        print(f"web restarted: member ONLINE after {back:.1f}s and serving again")
        # a member removed live: no more traffic for it, nothing fails
        a2_member = next(m for m in conn.load_balancer.members(pool) if m.address == fixed_ip(a2))
        client = traffic.Client(url, count=60, interval=0.05, deadline=20).start()
        conn.load_balancer.delete_member(a2_member, pool)
        wait_lb(conn, balancer.id)
        during = client.stop()
        assert during.failed == 0, during.summary()
        assert set(traffic.Client(url, count=10, interval=0.05).run().answers) == {a1.name}


def test_tcp_least_connections_and_source_ip(tenant, balancer):
    cloud, t = tenant
    conn, a1, a2 = cloud.conn, t["a1"], t["a2"]
    pool = listener_pool(conn, balancer, 9000, "TCP", "LEAST_CONNECTIONS", TCP_CHECK)
    for s in (a1, a2):
        conn.load_balancer.create_member(pool, address=fixed_ip(s), protocol_port=9000,
                                         subnet_id=t["sub_a"].id)
        wait_lb(conn, balancer.id)
    vip = balancer.vip_address
    seen = set()
    until(lambda: seen.add(tcp_line(vip, 9000)) or {a1.name, a2.name} <= seen, 30, every=0.05)
    sticky = listener_pool(conn, balancer, 81, "HTTP", "SOURCE_IP", HTTP_CHECK)
    for s in (a1, a2):
        conn.load_balancer.create_member(sticky, address=fixed_ip(s), protocol_port=80,
                                         subnet_id=t["sub_a"].id)
        wait_lb(conn, balancer.id)
    until(lambda: get(f"http://{vip}:81/"), 30)
    answers = traffic.Client(f"http://{vip}:81/", count=20, interval=0.05).run()
    assert answers.failed == 0 and len(answers.answers) == 1, answers.summary()  # one source


def test_backup_member_monitor_port_weight_and_admin_state(tenant, balancer):
    """What the Galera writer endpoint is made of: one normal member and a backup in a TCP
    pool, each checked by HTTP on another port (``monitor_port``)."""
    cloud, t = tenant
    conn, a1, a2 = cloud.conn, t["a1"], t["a2"]
    pool = listener_pool(conn, balancer, 9001, "TCP", "ROUND_ROBIN", HTTP_CHECK)
    sub = t["sub_a"].id
    normal = conn.load_balancer.create_member(pool, address=fixed_ip(a1), protocol_port=9000,
                                              subnet_id=sub, monitor_port=80)
    wait_lb(conn, balancer.id)
    backup = conn.load_balancer.create_member(pool, address=fixed_ip(a2), protocol_port=9000,
                                              subnet_id=sub, monitor_port=80, backup=True)
    wait_lb(conn, balancer.id)
    vip = balancer.vip_address
    until(lambda: tcp_line(vip, 9001) == a1.name, 30)
    assert {tcp_line(vip, 9001) for _ in range(10)} == {a1.name}  # the backup gets nothing
    # a1's 9000 still answers, but its monitor port fails: traffic goes to the backup
    in_vm(a1.id, "pkill", "-f", "http.server 80$")
    moved = until(lambda: tcp_line(vip, 9001) == a2.name, 15)
    print(f"backup member takes over {moved:.1f}s after the normal one's monitor port fails")
    in_vm(a1.id, "sh", "-c", "cd /srv/www && nohup python3 -m http.server 80 "
          ">/var/log/web.log 2>&1 &")
    until(lambda: tcp_line(vip, 9001) == a1.name, 20)
    # admin state down: the member gets nothing and reports OFFLINE
    conn.load_balancer.update_member(normal, pool, admin_state_up=False)
    wait_lb(conn, balancer.id)
    until(lambda: tcp_line(vip, 9001) == a2.name, 10)
    until(lambda: member_status(conn, pool.id, fixed_ip(a1)) == "OFFLINE", 20, every=0.5)
    conn.load_balancer.update_member(normal, pool, admin_state_up=True)
    wait_lb(conn, balancer.id)
    until(lambda: tcp_line(vip, 9001) == a1.name, 20)
    # weight 0: no new connections for it, the other takes them (backup off, both normal)
    conn.load_balancer.update_member(backup, pool, backup=False)
    wait_lb(conn, balancer.id)
    conn.load_balancer.update_member(normal, pool, weight=0)
    wait_lb(conn, balancer.id)
    until(lambda: tcp_line(vip, 9001) == a2.name, 10)
    assert {tcp_line(vip, 9001) for _ in range(10)} == {a2.name}
