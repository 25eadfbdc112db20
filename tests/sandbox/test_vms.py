"""The sandbox's process "VMs": what a server's processes see and what stop/start/kill do.

Through Nova as the ``demo`` member (helpers from ``test_openstack``), plus the nova-free
plumbing (``flexinfra_sandbox_cloud/netns.py``) driven directly with a private data dir.
CIDRs: 10.199.3x.0/24.
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from flexinfra_sandbox import vms
from tests.sandbox.test_openstack import (
    PATHS,
    assert_nothing_left,
    fixed_ip,
    http_get,
    http_refused,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(600)]
#: first letter of every object name this module makes (see conftest.cloud)
NAME_PREFIX = "v"
if os.geteuid() != 0:
    pytestmark.append(pytest.mark.skip(reason="sandbox tests run as root"))


def netns_pids(server_id: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", f"fxvm-{server_id}"], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def host_processes_with(marker: str) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker.encode() in (d / "cmdline").read_bytes():
                    found.append(int(d.name))
            except OSError:
                pass
    return found


# ================================================================================ via Nova
def test_cloud_config_write_files_runcmd_and_isolation(cloud):
    """cloud-config write_files (text and b64, permissions) + runcmd (strings and argv
    lists) run at first boot; what the VM writes to /etc, /var/lib or / never reaches the
    host."""
    net, _ = cloud.network("10.199.31.0/24")
    tok = uuid.uuid4().hex[:10]
    user_data = f"""#cloud-config
write_files:
  - path: /etc/fxtest-{tok}/app.conf
    content: "color=blue {tok}\\n"
    permissions: '0640'
  - path: /var/lib/fxtest-{tok}/state
    encoding: b64
    content: {base64.b64encode(f"state {tok}".encode()).decode()}
runcmd:
  - mkdir -p /srv/www
  - [cp, /etc/fxtest-{tok}/app.conf, /srv/www/app.conf]
  - cp /var/lib/fxtest-{tok}/state /srv/www/state
  - stat -c %a /etc/fxtest-{tok}/app.conf > /srv/www/mode
  - echo x > /etc/fxtest-{tok}.host; echo x > /var/log/fxtest-{tok}.log
  - (touch /fxtest-{tok} && echo rw || echo ro) > /srv/www/rootfs
  - cd /srv/www && nohup python3 -m http.server 8080 >/dev/null 2>&1 &
"""
    server = cloud.server(net, user_data)
    base = f"http://{fixed_ip(server)}:8080"
    assert http_get(f"{base}/app.conf") == f"color=blue {tok}\n"
    assert http_get(f"{base}/state") == f"state {tok}"
    assert http_get(f"{base}/mode").strip() == "640"
    assert http_get(f"{base}/rootfs").strip() == "ro"
    for p in (f"/etc/fxtest-{tok}", f"/etc/fxtest-{tok}.host", f"/var/lib/fxtest-{tok}",
              f"/var/log/fxtest-{tok}.log", f"/fxtest-{tok}"):
        assert not os.path.exists(p), f"the VM's write reached the host: {p}"
    console = cloud.conn.compute.get_server_console_output(server)["output"]
    assert "boot (first boot)" in console and "user_data exited with 0" in console

    cloud.teardown()
    assert_nothing_left(cloud)


def test_stop_kills_processes_that_escaped_with_setsid(cloud):
    """A daemon started with setsid (its own session and process group) still dies on
    stop: the VM is a PID namespace."""
    net, _ = cloud.network("10.199.32.0/24")
    marker = f"99{random.randint(100000, 999999)}"
    server = cloud.server(net, f"""#!/bin/sh
setsid sh -c 'sleep {marker}' </dev/null >/dev/null 2>&1 &
(setsid sleep {marker}1 &) </dev/null >/dev/null 2>&1
mkdir -p /srv/www && cd /srv/www && echo up > index.html
nohup python3 -m http.server 8080 >/dev/null 2>&1 &
""")
    http_get(f"http://{fixed_ip(server)}:8080/", expect="up")
    assert len(host_processes_with(f"sleep\0{marker}")) >= 2
    assert len(netns_pids(server.id)) >= 4  # launcher, init, sleeps, http server

    cloud.conn.compute.stop_server(server)
    cloud.conn.compute.wait_for_server(server, status="SHUTOFF", interval=0.2, wait=60)
    assert host_processes_with(f"sleep\0{marker}") == []
    assert netns_pids(server.id) == []

    cloud.teardown()
    assert_nothing_left(cloud)


def test_vm_whose_processes_die_becomes_shutoff(cloud):
    """Killing the VM's init from the host (a power cut) kills all its processes, and Nova
    shows SHUTOFF within seconds (the driver emits a lifecycle event); start boots it."""
    net, _ = cloud.network("10.199.33.0/24")
    server = cloud.server(net, """#!/bin/sh
cat > /etc/rc.local <<'EOF'
#!/bin/sh
mkdir -p /srv/www && cd /srv/www && echo alive > index.html
nohup python3 -m http.server 8080 >/dev/null 2>&1 &
EOF
chmod +x /etc/rc.local && /etc/rc.local
""")
    url = f"http://{fixed_ip(server)}:8080/"
    http_get(url, expect="alive")
    t0 = time.monotonic()
    assert vms.power_cut(PATHS, server.id) is True
    cloud.conn.compute.wait_for_server(server, status="SHUTOFF", interval=0.2, wait=60)
    took = time.monotonic() - t0
    assert took < 15, f"SHUTOFF only after {took:.1f}s"
    assert http_refused(url)

    cloud.conn.compute.start_server(server)
    cloud.conn.compute.wait_for_server(server, status="ACTIVE", interval=0.2, wait=60)
    assert http_get(url, expect="alive").strip() == "alive"

    cloud.teardown()
    assert_nothing_left(cloud)


def test_kill_1_inside_the_vm_powers_it_off(cloud):
    """``kill -TERM 1`` from inside (the init is PID 1 of the VM) is a clean poweroff."""
    net, _ = cloud.network("10.199.35.0/24")
    server = cloud.server(net, """#!/bin/sh
mkdir -p /srv/www && cd /srv/www && echo up > index.html
nohup python3 -m http.server 8080 >/dev/null 2>&1 &
(sleep 2; kill -TERM 1) &
""")
    cloud.conn.compute.wait_for_server(server, status="SHUTOFF", interval=0.2, wait=30)
    assert netns_pids(server.id) == []

    cloud.teardown()
    assert_nothing_left(cloud)


def test_two_servers_on_one_network_reach_each_other(cloud):
    net, _ = cloud.network("10.199.34.0/24")
    a = cloud.server(net, """#!/bin/sh
mkdir -p /srv/www && cd /srv/www && echo "from a" > index.html
nohup python3 -m http.server 8080 >/dev/null 2>&1 &
""", what="a")
    http_get(f"http://{fixed_ip(a)}:8080/", expect="from a")
    b = cloud.server(net, f"""#!/bin/sh
mkdir -p /srv/www && cd /srv/www
python3 -c "import urllib.request as u; print(u.urlopen('http://{fixed_ip(a)}:8080/').read().decode())" > fetched
nohup python3 -m http.server 8080 >/dev/null 2>&1 &
""", what="b")  # noqa: E501
    assert http_get(f"http://{fixed_ip(b)}:8080/fetched").strip() == "from a"

    cloud.teardown()
    assert_nothing_left(cloud)


# ================================================================================ plumbing
@pytest.fixture
def plumbing(tmp_path):
    net = vms.plumbing(PATHS)
    made: list = []
    yield net, tmp_path / "data", made
    for vm in made:
        net.destroy(vm)


def test_plumbing_alone_boot_volume_hot_attach_stop_destroy(plumbing):
    """Without Nova: a VM from a VIF-like dict serves its page at its fixed IP; a volume
    mounted into the running VM receives its writes; destroy leaves nothing."""
    net, data, made = plumbing
    uid, port = str(uuid.uuid4()), str(uuid.uuid4())
    vm = net.Vm(data, uid)
    vif = net.vif_from_network_info({
        "id": port, "address": "fa:16:3e:39:00:05",
        "network": {"id": str(uuid.uuid4()), "meta": {"mtu": 1450}, "subnets": [{
            "cidr": "10.199.39.0/24", "gateway": {"address": "10.199.39.1"},
            "ips": [{"address": "10.199.39.5"}], "dns": []}]},
    }, "eth0")  # fmt: skip
    vm.state = {"uuid": uid, "hostname": "plumb", "vifs": [vif], "volumes": {}}
    vm.prepare_dirs()
    plan = net.parse_user_data(b"""#!/bin/sh
mkdir -p /srv/www && cd /srv/www && hostname > index.html
nohup python3 -m http.server 80 >/dev/null 2>&1 &
""")
    (vm.dir / "boot.json").write_text(json.dumps(plan))
    vm.save()
    made.append(vm)
    t0 = time.monotonic()
    net.ensure_network(vm)
    # the host reaches the VM through a port of its own on the network (no Neutron here)
    net.plug_host_port(data, vif["network_id"], ["10.199.39.2/24"], 1450)
    launcher = net.start(vm)
    assert http_get("http://10.199.39.5/", timeout=10).strip() == "plumb"
    assert time.monotonic() - t0 < 5

    vol = f"vol-{uuid.uuid4().hex[:8]}"
    net.attach_live(vm, vol, "/dev/vdc")
    subprocess.run(["nsenter", "-t", str(vm.state["init_pid"]), "-m", "sh", "-c",
                    f"echo hot > /mnt/vdc/f && cat /mnt/volumes/{vol}/f > /mnt/vdc/g"],
                   check=True)
    assert (data / "volumes" / vol / "g").read_text() == "hot\n"
    net.detach_live(vm, vol, "/dev/vdc")
    ls = subprocess.run(["nsenter", "-t", str(vm.state["init_pid"]), "-m", "ls", "/mnt"],
                        capture_output=True, text=True, check=True).stdout.split()
    assert "vdc" not in ls

    assert net.stop(vm, grace=5) is True
    assert launcher.wait(5) == 0
    assert not net.is_running(vm)
    net.destroy(vm)
    net.unplug_host_port(data, vif["network_id"])
    made.clear()
    assert not vm.dir.exists()
    assert f"fxvm-{uid}" not in vms.leftovers(PATHS)["netns"]
    assert net.veth_name(port) not in vms.leftovers(PATHS)["links"]
    assert net.bridge_name(vif["network_id"]) not in vms.leftovers(PATHS)["links"]
    assert (data / "volumes" / vol / "g").exists()  # volumes outlive their servers


def test_user_data_formats():
    net = vms.plumbing(PATHS)
    plan = net.parse_user_data(b"""#cloud-config
bootcmd:
  - echo early
write_files:
  - path: /etc/x
    content: hi
runcmd:
  - [echo, "a b"]
  - echo c
packages: [nginx]
""")
    assert plan["bootcmd"] == "#!/bin/sh\necho early\n"
    assert plan["scripts"] == ["#!/bin/sh\necho 'a b'\necho c\n"]
    assert base64.b64decode(plan["write_files"][0]["content_b64"]) == b"hi"
    assert any("packages" in n for n in plan["notes"])
    assert net.parse_user_data(b"#!/bin/bash\necho hi\n")["scripts"] == ["#!/bin/bash\necho hi\n"]
    mime = (b'Content-Type: multipart/mixed; boundary="XX"\nMIME-Version: 1.0\n\n--XX\n'
            b'Content-Type: text/x-shellscript\n\necho part\n--XX--\n')
    assert net.parse_user_data(mime)["scripts"] == ["#!/bin/sh\necho part"]
