"""The sandbox's OpenStack, end to end, as the ``demo`` member user through openstacksdk.

What a tenant of the operator builds: network, subnet, router with a gateway on ``public``,
security group, servers whose user_data serves HTTP (reached from the host at their fixed
IPs: the VMs are real namespaces, see ``sandbox/plugins/flexinfra_sandbox_cloud/netns.py``),
volumes whose data outlives a server, a floating IP, a load balancer. Everything a test makes
is deleted by finalizers, and the test checks that nothing is left, neither in the APIs nor
on the host (namespaces, veths, VM directories).

CIDRs: 10.199.2x.0/24 here, 10.199.3x.0/24 in test_vms.py (SANDBOX.md gotcha 7: overlapping
subnets make the second unreachable from the host).
"""

from __future__ import annotations

import base64
import contextlib
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import openstack
import openstack.config
import openstack.connection
import pytest

from flexinfra_sandbox import traffic
from flexinfra_sandbox.paths import SandboxPaths

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(600)]

PATHS = SandboxPaths.from_env()


# ================================================================================ helpers
def connect(cloud: str = "demo") -> openstack.connection.Connection:
    if not PATHS.clouds_yaml.exists():
        pytest.skip(f"sandbox not up (no {PATHS.clouds_yaml})")
    config = openstack.config.OpenStackConfig(
        config_files=[str(PATHS.clouds_yaml)], load_envvars=False
    )
    return openstack.connection.Connection(config=config.get_one(cloud=cloud))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _local(url: str) -> None:
    """Nothing is sent to an address that would leave this machine."""
    traffic.check_local(urllib.parse.urlsplit(url).hostname or "")


def http_get(url: str, timeout: float = 30.0, expect: str | None = None) -> str:
    """GET until it answers (and contains ``expect``) or ``timeout`` passes."""
    _local(url)
    deadline = time.monotonic() + timeout
    last: Exception | str | None = None
    while time.monotonic() < deadline:
        try:
            body = urllib.request.urlopen(url, timeout=2).read().decode()
            if expect is None or expect in body:
                return body
            last = f"body {body!r}"
        except (urllib.error.URLError, OSError) as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"GET {url} did not answer{f' with {expect!r}' if expect else ''} "
                         f"in {timeout:.0f}s: {last}")


def http_refused(url: str) -> bool:
    _local(url)
    try:
        urllib.request.urlopen(url, timeout=2)
    except (urllib.error.URLError, OSError):
        return True
    return False


def vm_dir(server_id: str) -> Path:
    return PATHS.data / "vms" / server_id


def host_traces(server_id: str, port_ids: list[str]) -> list[str]:
    """What a server left on the host: its namespace, veths, directory."""
    left = []
    if Path(f"/run/netns/fxvm-{server_id}").exists():
        left.append(f"netns fxvm-{server_id}")
    for p in port_ids:
        name = ("fxve-" + p.replace("-", ""))[:15]
        if Path(f"/sys/class/net/{name}").exists():
            left.append(f"veth {name}")
    if vm_dir(server_id).exists():
        left.append(f"dir {vm_dir(server_id)}")
    return left


class Cloud:
    """One test's resources on the demo project, deleted in reverse order at teardown."""

    def __init__(self, conn: openstack.connection.Connection, tag: str):
        self.conn = conn
        self.tag = tag
        self._undo: list[tuple[str, object]] = []
        self.servers: dict[str, list[str]] = {}  # server id -> its port ids

    def name(self, what: str) -> str:
        return f"{self.tag}-{what}"

    def defer(self, what: str, fn) -> None:
        self._undo.append((what, fn))

    def teardown(self) -> None:
        errors = []
        for what, fn in reversed(self._undo):
            try:
                fn()
            except openstack.exceptions.NotFoundException:
                pass
            except Exception as e:
                errors.append(f"{what}: {e}")
        self._undo.clear()
        assert not errors, f"teardown failed: {errors}"

    # --- resources ----------------------------------------------------------------------
    def network(self, cidr: str, router: bool = False):
        net = self.conn.network.create_network(name=self.name("net"))
        self.defer("network", lambda: self.conn.network.delete_network(net))
        subnet = self.conn.network.create_subnet(
            network_id=net.id, name=self.name("subnet"), ip_version=4, cidr=cidr
        )
        self.defer("subnet", lambda: self.conn.network.delete_subnet(subnet))
        if router:
            public = self.conn.network.find_network("public")
            assert public is not None, "the sandbox has no external network 'public'"
            r = self.conn.network.create_router(
                name=self.name("router"), external_gateway_info={"network_id": public.id}
            )
            self.defer("router", lambda: self.conn.network.delete_router(r))
            self.conn.network.add_interface_to_router(r, subnet=subnet.id)
            self.defer("router interface",
                       lambda: self.conn.network.remove_interface_from_router(
                           r, subnet=subnet.id))
            return net, subnet, r
        return net, subnet

    def security_group(self, port: int):
        sg = self.conn.network.create_security_group(name=self.name("sg"))
        self.defer("security group", lambda: self.conn.network.delete_security_group(sg))
        self.conn.network.create_security_group_rule(
            security_group_id=sg.id, direction="ingress", ethertype="IPv4", protocol="tcp",
            port_range_min=port, port_range_max=port, remote_ip_prefix="0.0.0.0/0",
        )  # fmt: skip
        return sg

    def reachable_group(self):
        """A security group that lets the tests reach what a VM serves (TCP 80, 8080, 9000)
        and ping it: security groups are enforced, and the default group lets nothing in
        from outside it. One per scratch area."""
        if getattr(self, "_open_sg", None) is None:
            sg = self.conn.network.create_security_group(name=self.name("reach"))
            self.defer("security group reach", lambda: self.conn.network.delete_security_group(sg))
            for proto, port in (("tcp", 80), ("tcp", 8080), ("tcp", 9000), ("icmp", None)):
                self.conn.network.create_security_group_rule(
                    security_group_id=sg.id, direction="ingress", ethertype="IPv4",
                    protocol=proto, port_range_min=port, port_range_max=port,
                    remote_ip_prefix="0.0.0.0/0",
                )  # fmt: skip
            self._open_sg = sg
        return self._open_sg

    def server(self, net, user_data: str, what: str = "vm", **kw):
        if "security_groups" not in kw:
            kw["security_groups"] = [{"name": self.reachable_group().name}]
        image = self.conn.image.find_image("cirros")
        flavor = self.conn.compute.find_flavor("m1.tiny")
        assert image is not None and flavor is not None, "sandbox image/flavor missing"
        s = self.conn.compute.create_server(
            name=self.name(what), image_id=image.id, flavor_id=flavor.id,
            networks=[{"uuid": net.id}], user_data=b64(user_data), **kw,
        )  # fmt: skip
        self.defer(f"server {what}", lambda: self.delete_server(s.id))
        s = self.conn.compute.wait_for_server(s, wait=120, interval=0.5)
        self.servers[s.id] = [p.id for p in self.conn.network.ports(device_id=s.id)]
        return s

    def delete_server(self, server_id: str) -> None:
        s = self.conn.compute.find_server(server_id, ignore_missing=True)
        if s is None:
            return
        self.conn.compute.delete_server(s)
        self.conn.compute.wait_for_delete(s, interval=0.5, wait=120)

    def volume(self, size: int = 1):
        v = self.conn.block_storage.create_volume(name=self.name("vol"), size=size)
        self.defer("volume", lambda: self._delete_volume(v.id))
        return self.conn.block_storage.wait_for_status(v, "available", interval=0.5, wait=60)

    def _delete_volume(self, vid: str) -> None:
        v = self.conn.block_storage.find_volume(vid, ignore_missing=True)
        if v is None:
            return
        if v.status == "in-use":
            for a in v.attachments or []:
                with contextlib.suppress(openstack.exceptions.NotFoundException):
                    self.conn.compute.delete_volume_attachment(a["server_id"], vid)
            self.conn.block_storage.wait_for_status(v, "available", interval=0.5, wait=60)
        self.conn.block_storage.delete_volume(v)
        self.conn.block_storage.wait_for_delete(v, interval=0.5, wait=60)

    def attach(self, server, volume):
        self.conn.compute.create_volume_attachment(server, volume_id=volume.id)
        self.conn.block_storage.wait_for_status(volume, "in-use", interval=0.5, wait=60)
        self.defer("volume attachment", lambda: self.detach(server, volume))

    def detach(self, server, volume):
        with contextlib.suppress(openstack.exceptions.NotFoundException):
            self.conn.compute.delete_volume_attachment(server, volume.id)
            self.conn.block_storage.wait_for_status(volume, "available", interval=0.5,
                                                     wait=60)


def fixed_ip(server) -> str:
    return next(iter(server.addresses.values()))[0]["addr"]


def assert_nothing_left(cloud: Cloud) -> None:
    """After teardown: no API object named with this test's tag, no host trace."""
    conn, tag = cloud.conn, cloud.tag
    assert [s.name for s in conn.compute.servers() if s.name.startswith(tag)] == []
    assert [n.name for n in conn.network.networks() if (n.name or "").startswith(tag)] == []
    assert [r.name for r in conn.network.routers() if (r.name or "").startswith(tag)] == []
    assert [v.name for v in conn.block_storage.volumes() if (v.name or "").startswith(tag)] == []
    for sid, ports in cloud.servers.items():
        assert host_traces(sid, ports) == []


# ================================================================================ tests
SERVE = """#!/bin/sh
mkdir -p /srv/www && echo "served by $(hostname)" > /srv/www/index.html
cd /srv/www && nohup python3 -m http.server 8080 >/var/log/http.log 2>&1 &
"""


def test_tenant_network_server_floating_ip(cloud):
    """Network, subnet, router + gateway, SG, a server serving a page at its fixed IP from
    the host, a floating IP on it; then deleting everything leaves nothing."""
    net, _, router = cloud.network("10.199.21.0/24", router=True)
    assert router.external_gateway_info["network_id"] == cloud.conn.network.find_network(
        "public").id
    sg = cloud.security_group(8080)
    t0 = time.monotonic()
    server = cloud.server(net, SERVE, security_groups=[{"name": sg.name}])
    ip = fixed_ip(server)
    assert ip.startswith("10.199.21.")
    body = http_get(f"http://{ip}:8080/", timeout=30)
    took = time.monotonic() - t0
    assert body.strip() == f"served by {server.name}"[:63]
    assert took < 30, f"create -> page served took {took:.1f}s"

    port = next(cloud.conn.network.ports(device_id=server.id))
    public = cloud.conn.network.find_network("public")
    fip = cloud.conn.network.create_ip(floating_network_id=public.id, port_id=port.id)
    cloud.defer("floating ip", lambda: cloud.conn.network.delete_ip(fip))
    fip = cloud.conn.network.get_ip(fip.id)
    assert fip.fixed_ip_address == ip
    assert fip.floating_ip_address.startswith("203.0.113.")
    assert fip.port_id == port.id

    cloud.teardown()
    assert_nothing_left(cloud)
    assert list(cloud.conn.network.ips(floating_ip_address=fip.floating_ip_address)) == []


def test_volume_data_outlives_server(cloud):
    """A file the first server writes into its volume is served by a second server that
    gets the same volume; the volume shows up by device name and by volume id."""
    net, _ = cloud.network("10.199.22.0/24")
    vol = cloud.volume()
    token = uuid.uuid4().hex
    writer = cloud.server(net, f"""#!/bin/sh
for i in $(seq 600); do [ -d /mnt/volumes/{vol.id} ] && break; sleep 0.1; done
echo "{token} written by $(hostname)" > /mnt/volumes/{vol.id}/data.txt
ls /mnt > /mnt/volumes/{vol.id}/mnt-listing.txt
""", what="writer")
    cloud.attach(writer, vol)
    volume_dir = PATHS.data / "volumes" / vol.id
    deadline = time.monotonic() + 30
    while not (volume_dir / "data.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    cloud.detach(writer, vol)
    cloud.delete_server(writer.id)
    assert host_traces(writer.id, cloud.servers[writer.id]) == []

    reader = cloud.server(net, """#!/bin/sh
for i in $(seq 600); do [ -f /mnt/vdb/data.txt ] && break; sleep 0.1; done
mkdir -p /srv/www && cp /mnt/vdb/data.txt /mnt/vdb/mnt-listing.txt /srv/www/
cd /srv/www && nohup python3 -m http.server 8080 >/dev/null 2>&1 &
""", what="reader")
    cloud.attach(reader, vol)
    body = http_get(f"http://{fixed_ip(reader)}:8080/data.txt", timeout=30)
    assert body == f"{token} written by {writer.name}\n"
    listing = http_get(f"http://{fixed_ip(reader)}:8080/mnt-listing.txt", timeout=5)
    assert set(listing.split()) >= {"volumes"}

    cloud.teardown()
    assert_nothing_left(cloud)


def wait_settled(conn, server_id: str, status: str, timeout: float = 60) -> None:
    """Wait for ``status`` with no task under way. ``wait_for_server`` returns at once when the
    object it is given already shows ``status`` (a server ACTIVE before a reboot), and a page
    served by the rebooted VM can come before Nova clears the reboot's task_state: the next
    action then gets 409."""
    deadline = time.monotonic() + timeout
    while True:
        server = conn.compute.get_server(server_id)
        if server.status == status and server.task_state is None:
            return
        assert time.monotonic() < deadline, (server.status, server.task_state)
        time.sleep(0.2)


def test_stop_start_stops_and_restarts_processes(cloud):
    """stop kills the server's processes (SHUTOFF, page gone); start boots it again:
    /etc/rc.local runs at every boot, user_data only at the first (cloud-init semantics)."""
    net, _ = cloud.network("10.199.23.0/24")
    server = cloud.server(net, """#!/bin/sh
echo run >> /var/lib/user-data-runs
cat > /etc/rc.local <<'EOF'
#!/bin/sh
echo boot >> /var/lib/boots
mkdir -p /srv/www
echo "userdata=$(wc -l < /var/lib/user-data-runs) boots=$(wc -l < /var/lib/boots)" \\
  > /srv/www/index.html
cd /srv/www && nohup python3 -m http.server 8080 >/dev/null 2>&1 &
EOF
chmod +x /etc/rc.local
/etc/rc.local
""")
    url = f"http://{fixed_ip(server)}:8080/"
    assert http_get(url).strip() == "userdata=1 boots=1"

    t0 = time.monotonic()
    cloud.conn.compute.stop_server(server)
    cloud.conn.compute.wait_for_server(server, status="SHUTOFF", interval=0.2, wait=60)
    stop_took = time.monotonic() - t0
    assert http_refused(url), "still serving after stop"
    assert Path(f"/run/netns/fxvm-{server.id}").exists()  # the "NIC" stays, like a real VM
    assert stop_took < 15

    cloud.conn.compute.start_server(server)
    cloud.conn.compute.wait_for_server(server, status="ACTIVE", interval=0.2, wait=60)
    assert http_get(url, expect="boots=2").strip() == "userdata=1 boots=2"

    cloud.conn.compute.reboot_server(server, "HARD")
    wait_settled(cloud.conn, server.id, "ACTIVE")
    assert http_get(url, expect="boots=3").strip() == "userdata=1 boots=3"

    cloud.conn.compute.reboot_server(server, "SOFT")
    wait_settled(cloud.conn, server.id, "ACTIVE")
    assert http_get(url, expect="boots=4").strip() == "userdata=1 boots=4"

    cloud.teardown()
    assert_nothing_left(cloud)


def test_load_balancer_listener_pool_member_active(cloud):
    """Octavia (amphora servers are VMs too) builds LB, listener, pool and member ACTIVE."""
    net, subnet = cloud.network("10.199.24.0/24")
    server = cloud.server(net, SERVE)
    lbc = cloud.conn.load_balancer
    lb = lbc.create_load_balancer(name=cloud.name("lb"), vip_subnet_id=subnet.id)
    cloud.defer("load balancer", lambda: _delete_lb(cloud.conn, lb.id))
    lb = lbc.wait_for_load_balancer(lb.id, status="ACTIVE", failures=["ERROR"], interval=1,
                                    wait=300)
    assert lb.vip_address.startswith("10.199.24.")
    listener = lbc.create_listener(name=cloud.name("listener"), protocol="HTTP",
                                   protocol_port=80, load_balancer_id=lb.id)
    lbc.wait_for_load_balancer(lb.id, status="ACTIVE", failures=["ERROR"], interval=1, wait=120)
    pool = lbc.create_pool(name=cloud.name("pool"), protocol="HTTP",
                           lb_algorithm="ROUND_ROBIN", listener_id=listener.id)
    lbc.wait_for_load_balancer(lb.id, status="ACTIVE", failures=["ERROR"], interval=1, wait=120)
    member = lbc.create_member(pool, address=fixed_ip(server), protocol_port=8080,
                               subnet_id=subnet.id)
    lbc.wait_for_load_balancer(lb.id, status="ACTIVE", failures=["ERROR"], interval=1, wait=120)
    assert lbc.get_listener(listener.id).provisioning_status == "ACTIVE"
    assert lbc.get_pool(pool.id).provisioning_status == "ACTIVE"
    assert lbc.get_member(member.id, pool.id).provisioning_status == "ACTIVE"

    # the amphora is a VM too: Octavia's config-drive files land in its own /etc only
    amps = list(connect("admin").load_balancer.amphorae(loadbalancer_id=lb.id))
    assert amps and all(a.compute_id for a in amps)
    for amp in amps:
        agent_conf = vm_dir(amp.compute_id) / "upper/etc/octavia/amphora-agent.conf"
        assert agent_conf.exists(), f"amphora {amp.compute_id} has no amphora-agent.conf"
    assert not Path("/etc/octavia/amphora-agent.conf").exists()

    cloud.teardown()
    assert_nothing_left(cloud)
    assert [x.name for x in lbc.load_balancers() if (x.name or "").startswith(cloud.tag)] == []


def _delete_lb(conn, lb_id: str) -> None:
    lb = conn.load_balancer.find_load_balancer(lb_id, ignore_missing=True)
    if lb is None:
        return
    deadline = time.monotonic() + 120
    while lb.provisioning_status.startswith("PENDING") and time.monotonic() < deadline:
        time.sleep(1)
        lb = conn.load_balancer.get_load_balancer(lb_id)
    conn.load_balancer.delete_load_balancer(lb_id, cascade=True)
    conn.load_balancer.wait_for_delete(lb, interval=1, wait=180)


if os.geteuid() != 0:  # the host checks read /run/netns and /sys/class/net
    pytestmark.append(pytest.mark.skip(reason="sandbox tests run as root"))
