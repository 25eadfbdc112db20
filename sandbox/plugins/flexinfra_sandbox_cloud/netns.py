"""Namespaces, bridges and mounts behind the sandbox's process "VMs". Stdlib only, no nova.

Nova's virt driver (``virt.py``) and ``flexinfra sandbox down`` (which has no nova) both use
this module; it is also a small CLI run as a separate process (``python3 netns.py launch|
inject|eject ...``), because entering namespaces needs a single-threaded process and
nova-compute is multi-threaded.

One VM is:

* a **network namespace** ``fxvm-<instance uuid>`` with one veth per Neutron port (``eth0``,
  ``eth1``... inside, the port's MAC, fixed IPv4s, MTU and a default route via the subnet's
  gateway); the host end ``fxve-<port id[:10]>`` sits on a Linux bridge per Neutron network,
  ``fxbr-<network id[:10]>`` (names <= 15 characters: the kernel's limit). The bridge holds
  no address: the subnet's gateway is the Neutron router's port (the L3 agent's ``qr-``
  device, plugged by ``l3.py`` the same way), and the host is on the network through a port
  of its own (``plug_host_port``: a veth whose bridge end is a port like a VM's, so security
  groups filter the host's traffic as they filter a neighbour's), which is how the host
  reaches every VM at its fixed IP;
* a **long-lived init** (PID 1 of its own PID namespace, with its own mount and UTS
  namespaces) that holds the VM together: killing it kills every process of the VM (a
  ``setsid`` or double fork inside cannot escape), and its mount namespace is where volumes
  are mounted while the VM runs. It is started by a small "launcher" process that stays its
  parent and reaps it (the machine's PID 1 here reaps nothing). The launcher calls
  ``setsid`` so a supervisor stopping nova-compute's process group does not take the VMs
  with it: like real guests, VMs outlive a nova-compute restart;
* a **private filesystem view**: overlays over ``/etc``, ``/var``, ``/usr`` and ``/opt`` (the
  host is the VM's "image": it sees the host's files, its writes land in its own upper
  dirs); fresh tmpfs on ``/run``, ``/tmp`` and ``/dev/shm`` at every boot (as on a real
  VM, so stale pid files never block a restart); persistent private, initially empty
  ``/var/lib``, ``/var/log``, ``/srv``, ``/mnt``, ``/root`` and ``/home``; its own
  ``/proc`` and ``/sys``; and the rest of the root filesystem **read-only**, so no write a VM
  makes can land on the host;
* **volumes**: ``<state>/data/volumes/<volume id>/``, a plain directory that outlives
  servers, bind-mounted at ``/mnt/volumes/<volume id>`` and at ``/mnt/<device>`` (``/mnt/vdb``
  for Nova's ``/dev/vdb``).

Boot: at every boot the init runs cloud-config ``bootcmd`` and, if it existed when the boot
began, an executable ``/etc/rc.local``; at the first boot of an instance only it writes
``write_files`` and runs the user_data script or ``runcmd`` (cloud-init's per-instance
semantics: a reboot or stop/start does not re-run user_data; a service that must come back
after a reboot is started from ``/etc/rc.local`` or ``bootcmd``, exactly as on a real cloud
image). Output goes to ``<vm dir>/console.log`` (Nova's console log).

Isolation is network, mounts, PIDs and hostname only: VMs run the host's binaries as root.

One module of ~1,100 lines on purpose: it is also the standalone script that launches a VM's
init and enters its namespaces (``python3 netns.py launch|inject|eject|cleanup``), run with
the host's system Python from a path (not a package: the VM's Python does not see the
OpenStack venv), so everything it needs must stand in this one stdlib-only file.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import email
import fcntl
import gzip
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

NETNS_PREFIX = "fxvm-"
#: the Neutron L3 agent's router namespaces (their devices are plugged by ``l3.py``)
ROUTER_NETNS_PREFIX = "qrouter-"
BRIDGE_PREFIX = "fxbr-"
VETH_PREFIX = "fxve-"
#: the host's own port on a network: its end (with the host's addresses) and the bridge's end
HOST_PORT_PREFIX = "fxhp-"
HOST_PORT_PEER_PREFIX = "fxhb-"
#: every link the sandbox makes: `down` deletes them (veths first, bridges last)
LINK_PREFIXES = (VETH_PREFIX, HOST_PORT_PREFIX, HOST_PORT_PEER_PREFIX, BRIDGE_PREFIX)
IFNAME_MAX = 15

#: overlaid: the VM sees the host's files, its writes go to ``<vm dir>/upper/<name>``
OVERLAY_DIRS = ("etc", "var", "usr", "opt")
#: private, persistent, start empty: ``<vm dir>/priv/<name with / as ->``
PRIVATE_DIRS = ("var/lib", "var/log", "srv", "mnt", "root", "home")
#: fresh at every boot
TMPFS_DIRS = (("run", "0755"), ("tmp", "1777"), ("dev/shm", "1777"))

VM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: the init waits this long for the VM's processes after a TERM it got from inside the VM
INTERNAL_STOP_GRACE = 30.0

_net_lock = threading.Lock()


class VmError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------
# layout and state


def default_data_dir() -> Path:
    """``<state>/data``: ``FLEXINFRA_SANDBOX_STATE`` (set by the sandbox for every service that
    plugs devices) or the sandbox's default state dir."""
    state = os.environ.get("FLEXINFRA_SANDBOX_STATE")
    return Path(state) / "data" if state else Path.home() / ".local/state/flexinfra/sandbox/data"


def vms_root(data_dir: Path) -> Path:
    return Path(data_dir) / "vms"


def volumes_root(data_dir: Path) -> Path:
    return Path(data_dir) / "volumes"


def netns_name(uuid: str) -> str:
    return NETNS_PREFIX + uuid


def bridge_name(network_id: str) -> str:
    return (BRIDGE_PREFIX + network_id.replace("-", ""))[:IFNAME_MAX]


def veth_name(port_id: str) -> str:
    return (VETH_PREFIX + port_id.replace("-", ""))[:IFNAME_MAX]


class Vm:
    """One VM's directory ``<data>/vms/<uuid>/`` and its ``state.json``.

    The state file is the only memory the driver has (FakeDriver keeps servers in memory
    only): it lets a restarted nova-compute, and the sandbox's cleanup, find every VM.
    """

    def __init__(self, data_dir: Path, uuid: str):
        self.data_dir = Path(data_dir)
        self.uuid = uuid
        self.dir = vms_root(self.data_dir) / uuid
        self.state: dict = {}

    # --- persistence ----------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def console(self) -> Path:
        return self.dir / "console.log"

    @property
    def netns(self) -> str:
        return netns_name(self.uuid)

    def exists(self) -> bool:
        return self.state_file.exists()

    def load(self) -> Vm:
        self.state = json.loads(self.state_file.read_text())
        return self

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1, sort_keys=True))
        tmp.replace(self.state_file)

    @classmethod
    def all(cls, data_dir: Path) -> list[Vm]:
        root = vms_root(Path(data_dir))
        out = []
        if root.is_dir():
            for d in sorted(root.iterdir()):
                vm = cls(data_dir, d.name)
                if vm.exists():
                    with contextlib.suppress(OSError, ValueError):
                        out.append(vm.load())
        return out

    # --- convenience ------------------------------------------------------------------
    @property
    def vifs(self) -> list[dict]:
        return self.state.setdefault("vifs", [])

    @property
    def volumes(self) -> dict[str, str]:
        """volume id -> device name (``vdb``)."""
        return self.state.setdefault("volumes", {})

    def prepare_dirs(self) -> None:
        for d in OVERLAY_DIRS:
            (self.dir / "upper" / d).mkdir(parents=True, exist_ok=True)
            (self.dir / "work" / d).mkdir(parents=True, exist_ok=True)
        for d in PRIVATE_DIRS:
            p = self.dir / "priv" / d.replace("/", "-")
            p.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir / "priv" / "root", 0o700)
        os.chmod(self.dir / "priv" / "mnt", 0o755)


# --------------------------------------------------------------------------------------
# networking (host side, via iproute2)


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise VmError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def netns_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


@contextlib.contextmanager
def net_lock(data_dir: Path):
    """Bridges are shared by the VMs of one network: create/delete them under one lock,
    across threads (parallel builds) and processes (nova-compute and the cleanup)."""
    lock_path = vms_root(Path(data_dir)) / ".net.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with _net_lock, open(lock_path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def vif_from_network_info(vif: dict, ifname: str) -> dict:
    """The part of one Nova VIF (``nova.network.model.VIF``, a dict) a VM needs, as JSON.

    IPv4 only: the host reaches VMs through the bridge's gateway address.
    """
    network = vif.get("network") or {}
    meta = network.get("meta") or {}
    addresses, gateways, default_gw, dns = [], [], None, []
    for subnet in network.get("subnets") or []:
        cidr = subnet.get("cidr")
        if not cidr or ipaddress.ip_network(cidr).version != 4:
            continue
        prefix = ipaddress.ip_network(cidr).prefixlen
        for ip in subnet.get("ips") or []:
            addresses.append(f"{ip['address']}/{prefix}")
        gw = (subnet.get("gateway") or {}).get("address")
        if gw:
            gateways.append(f"{gw}/{prefix}")
            default_gw = default_gw or gw
        dns += [d["address"] for d in subnet.get("dns") or [] if d.get("address")]
    return {
        "port_id": vif["id"],
        "mac": vif.get("address"),
        "network_id": network.get("id") or "unknown",
        "mtu": int(meta.get("mtu") or network.get("mtu") or 1500),
        "ifname": ifname,
        "addresses": addresses,
        "gateways": gateways,
        "default_gw": default_gw,
        "dns": dns,
    }


def ensure_netns(name: str) -> None:
    if not netns_exists(name):
        _run(["ip", "netns", "add", name])
    _run(["ip", "-n", name, "link", "set", "lo", "up"])


def host_route_conflict(cidr: str) -> str | None:
    """A network the host is directly on (a connected route of a link not ours) that
    ``cidr`` overlaps, or None.

    A tenant subnet such as the host's LAN would put an address of the host's LAN on one of
    our links and cut the machine off the network: such a subnet's VMs boot, but the host
    gets no address on it (they are unreachable from the host). Routes *via* a gateway are
    no conflict: a more specific one (the package registries' /32 inside the external range,
    see ``dataplane.py``) keeps its few addresses going there, as intended.
    """
    net = ipaddress.ip_network(cidr, strict=False)
    if net.overlaps(ipaddress.ip_network("127.0.0.0/8")):
        return "127.0.0.0/8 (loopback)"
    out = _run(["ip", "-4", "-o", "route", "show", "table", "main"], check=False).stdout
    for line in out.splitlines():
        parts = line.split()
        if not parts or parts[0] in ("default", "unreachable", "blackhole", "prohibit"):
            continue
        if "via" in parts:
            continue
        dev = parts[parts.index("dev") + 1] if "dev" in parts else ""
        if dev.startswith(LINK_PREFIXES):
            continue
        with contextlib.suppress(ValueError):
            if ipaddress.ip_network(parts[0], strict=False).overlaps(net):
                return line.strip()
    return None


def ensure_bridge(name: str, mtu: int) -> None:
    """A network's bridge: a plain switch, no address of the host on it (see the module doc)."""
    if not link_exists(name):
        _run(["ip", "link", "add", "name", name, "mtu", str(mtu), "type", "bridge"])
        # no IPv6 autoconf noise on a data plane that is IPv4 only
        with contextlib.suppress(OSError):
            Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6").write_text("1")
    _run(["ip", "link", "set", name, "up"])


def _veth_to_bridge(host_end: str, peer: str, bridge: str, mtu: int, port_id: str,
                    peer_netns: str | None = None) -> None:
    """A veth pair whose ``host_end`` is a port of ``bridge``; ``peer`` goes into
    ``peer_netns`` (or stays on the host). The port id goes into the host end's alias, so
    ``ip -d link`` says which Neutron port a device is."""
    if not link_exists(host_end):
        if peer_netns:
            # a leftover peer (half-done plug) would block the name
            _run(["ip", "-n", peer_netns, "link", "del", peer], check=False)
            _run(["ip", "link", "add", host_end, "mtu", str(mtu), "type", "veth",
                  "peer", "name", peer, "netns", peer_netns])
        else:
            _run(["ip", "link", "del", peer], check=False)
            _run(["ip", "link", "add", host_end, "mtu", str(mtu), "type", "veth",
                  "peer", "name", peer])
        with contextlib.suppress(OSError):
            Path(f"/proc/sys/net/ipv6/conf/{host_end}/disable_ipv6").write_text("1")
        _run(["ip", "link", "set", host_end, "alias", port_id], check=False)
    _run(["ip", "link", "set", host_end, "master", bridge, "up"])


def plug_vif(data_dir: Path, netns: str, vif: dict, primary: bool) -> None:
    """Idempotent: veth pair, addresses, routes, bridge.

    The guest's side is configured when the NIC is new only: once plugged, it is the
    guest's (an amphora's agent moves its VIP NIC into a namespace of its own), and a
    hypervisor re-plugging after a restart does not touch it."""
    host, inner = veth_name(vif["port_id"]), vif["ifname"]
    with net_lock(data_dir):
        ensure_bridge(bridge_name(vif["network_id"]), vif["mtu"])
        existed = link_exists(host)
        _veth_to_bridge(host, inner, bridge_name(vif["network_id"]), vif["mtu"],
                        vif["port_id"], peer_netns=netns)
    if existed:
        return
    ns = ["ip", "-n", netns]
    if vif.get("mac"):
        _run([*ns, "link", "set", inner, "address", vif["mac"]])
    _run([*ns, "link", "set", inner, "mtu", str(vif["mtu"]), "up"])
    for addr in vif["addresses"]:
        _run([*ns, "addr", "replace", addr, "dev", inner])
    if primary and vif.get("default_gw"):
        _run([*ns, "route", "replace", "default", "via", vif["default_gw"], "dev", inner])


def plug_namespace_port(data_dir: Path, network_id: str, port_id: str, netns: str,
                        ifname: str, mac: str | None, mtu: int) -> None:
    """A port of a namespace that is not a VM (a router's ``qr-``/``qg-`` device): plugged
    like a VM's; its addresses are the owner's business (the L3 agent sets them)."""
    ensure_netns(netns)
    with net_lock(data_dir):
        ensure_bridge(bridge_name(network_id), mtu)
        _veth_to_bridge(veth_name(port_id), ifname, bridge_name(network_id), mtu, port_id,
                        peer_netns=netns)
    if mac:
        _run(["ip", "-n", netns, "link", "set", ifname, "address", mac])
    _run(["ip", "-n", netns, "link", "set", ifname, "mtu", str(mtu), "up"])


def unplug_port(data_dir: Path, port_id: str, network_id: str | None = None) -> None:
    """Remove a port's veth (both ends go together); the bridge goes when it is empty."""
    with net_lock(data_dir):
        host = veth_name(port_id)
        if link_exists(host):
            _run(["ip", "link", "del", host], check=False)
        if network_id:
            _delete_bridge_if_unused(bridge_name(network_id))


def host_port_names(network_id: str) -> tuple[str, str]:
    """(host end, bridge end) of the host's port on a network."""
    key = network_id.replace("-", "")
    return (HOST_PORT_PREFIX + key)[:IFNAME_MAX], (HOST_PORT_PEER_PREFIX + key)[:IFNAME_MAX]


def plug_host_port(data_dir: Path, network_id: str, addresses: list[str], mtu: int,
                   mac: str | None = None, port_id: str = "") -> list[str]:
    """The host's port on a network, holding exactly ``addresses`` (``a.b.c.d/len``).

    Addresses that overlap a route of the host's own are skipped (returned), so a tenant
    subnet can never take the host's LAN.
    """
    host_end, peer = host_port_names(network_id)
    skipped = []
    with net_lock(data_dir):
        ensure_bridge(bridge_name(network_id), mtu)
        _veth_to_bridge(peer, host_end, bridge_name(network_id), mtu, port_id or network_id)
        if mac:
            _run(["ip", "link", "set", host_end, "address", mac])
        _run(["ip", "link", "set", host_end, "mtu", str(mtu), "up"])
        with contextlib.suppress(OSError):
            Path(f"/proc/sys/net/ipv6/conf/{host_end}/disable_ipv6").write_text("1")
        have = set(_run(["ip", "-4", "-o", "addr", "show", "dev", host_end],
                        check=False).stdout.split())
        wanted = set()
        for addr in addresses:
            conflict = host_route_conflict(addr)
            if conflict:
                sys.stderr.write(f"netns: not putting {addr} on {host_end}: overlaps {conflict}\n")
                skipped.append(addr)
                continue
            wanted.add(addr)
            if addr not in have:
                _run(["ip", "addr", "replace", addr, "dev", host_end])
        out = _run(["ip", "-4", "-o", "addr", "show", "dev", host_end], check=False).stdout
        for line in out.splitlines():
            parts = line.split()
            addr = parts[parts.index("inet") + 1] if "inet" in parts else None
            if addr and addr not in wanted:
                _run(["ip", "addr", "del", addr, "dev", host_end], check=False)
    return skipped


def unplug_host_port(data_dir: Path, network_id: str) -> None:
    _host_end, peer = host_port_names(network_id)
    with net_lock(data_dir):
        if link_exists(peer):
            _run(["ip", "link", "del", peer], check=False)
        _delete_bridge_if_unused(bridge_name(network_id))


def unplug_vif(data_dir: Path, vif: dict) -> None:
    unplug_port(data_dir, vif["port_id"], vif["network_id"])


def _delete_bridge_if_unused(br: str) -> None:
    brif = Path(f"/sys/class/net/{br}/brif")
    if brif.is_dir() and not any(brif.iterdir()):
        _run(["ip", "link", "del", br], check=False)


def ensure_network(vm: Vm) -> None:
    ensure_netns(vm.netns)
    for i, vif in enumerate(vm.vifs):
        plug_vif(vm.data_dir, vm.netns, vif, primary=(i == 0))


def teardown_network(vm: Vm) -> None:
    for vif in vm.vifs:
        unplug_vif(vm.data_dir, vif)
    if netns_exists(vm.netns):
        _run(["ip", "netns", "del", vm.netns], check=False)


def next_ifname(vm: Vm) -> str:
    used = {v["ifname"] for v in vm.vifs}
    i = 0
    while f"eth{i}" in used:
        i += 1
    return f"eth{i}"


# --------------------------------------------------------------------------------------
# processes


def _proc_stat(pid: int, proc_fd: int | None = None) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of ``pid``, or None."""
    try:
        fd = os.open(f"{pid}/stat" if proc_fd is not None else f"/proc/{pid}/stat",
                     os.O_RDONLY, dir_fd=proc_fd)
        with open(fd, "rb") as f:
            stat = f.read().decode()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], int(fields[19])


def process_alive(pid: int | None, start: int | None) -> bool:
    """Alive and the same process (start time guards against PID reuse); zombies are dead."""
    if not pid:
        return False
    st = _proc_stat(pid)
    if st is None or st[0] in ("Z", "X"):
        return False
    return start is None or st[1] == start


def is_running(vm: Vm) -> bool:
    return process_alive(vm.state.get("init_pid"), vm.state.get("init_start"))


def python_for_vm() -> str:
    """The VM's init runs with the host's system Python: the VM sees /usr but neither /root
    (pyenv) nor, necessarily, the venv nova-compute runs from."""
    for candidate in ("/usr/bin/python3", sys.executable):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise VmError("no python3 for the VM init")


def start(vm: Vm, timeout: float = 30.0) -> subprocess.Popen:
    """Boot the VM: its network must exist. Returns the launcher (the caller reaps it).

    Returns once the VM's filesystem is set up; user_data runs afterwards, in the VM.
    """
    if is_running(vm):
        raise VmError(f"VM {vm.uuid} is already running")
    vm.prepare_dirs()
    volumes_root(vm.data_dir).mkdir(parents=True, exist_ok=True)
    for vol in vm.volumes:
        (volumes_root(vm.data_dir) / vol).mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [python_for_vm(), os.path.abspath(__file__), "launch", str(vm.dir)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={"PATH": VM_PATH, "LANG": "C.UTF-8"}, cwd="/",
    )
    line = _readline_timeout(proc, timeout)
    try:
        info = json.loads(line)
    except ValueError:
        proc.wait(5)
        err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
        raise VmError(f"VM {vm.uuid} failed to boot: {err or line or 'no output'}") from None
    vm.state.update(init_pid=info["pid"], init_start=info["start"], launcher_pid=proc.pid,
                    power="running", booted_at=time.time())
    vm.save()
    return proc


def _readline_timeout(proc: subprocess.Popen, timeout: float) -> str:
    out: list[bytes] = []
    t = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    if not out:
        proc.kill()
        raise VmError(f"VM launcher gave no answer in {timeout:.0f}s")
    return out[0].decode(errors="replace").strip()


def stop(vm: Vm, grace: float = 5.0) -> bool:
    """TERM every process of the VM (its init forwards it), KILL after ``grace`` seconds.

    Killing the init, PID 1 of the VM's PID namespace, makes the kernel kill all the rest.
    Returns True when something was running.
    """
    pid, st = vm.state.get("init_pid"), vm.state.get("init_start")
    was = process_alive(pid, st)
    if was:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        deadline = time.monotonic() + grace
        while process_alive(pid, st) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process_alive(pid, st):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while process_alive(pid, st) and time.monotonic() < deadline:
                time.sleep(0.05)
        if process_alive(pid, st):
            raise VmError(f"VM {vm.uuid}: init {pid} survived SIGKILL")
    if vm.state.get("power") != "stopped" or vm.state.get("init_pid"):
        vm.state.update(power="stopped", init_pid=None, init_start=None, launcher_pid=None)
        if vm.dir.exists():
            vm.save()
    return was


def destroy(vm: Vm, keep_dir: bool = False) -> None:
    """Hard power-off, then no namespace, veth, empty bridge or file left."""
    stop(vm, grace=0)
    teardown_network(vm)
    if not keep_dir:
        shutil.rmtree(vm.dir, ignore_errors=True)


# --------------------------------------------------------------------------------------
# images: a Glance image whose data is a tar of files is laid over the host's filesystem

#: where an image declares host paths to bind (read-only) into its VMs
IMAGE_MANIFEST = "etc/flexinfra-sandbox/image.json"


def _image_member_target(vm: Vm, name: str) -> Path | None:
    """Where a file of the image lands in the VM's dirs (None: outside what a VM can hold)."""
    name = name.lstrip("./")
    if ".." in name.split("/"):
        return None
    for d in sorted(PRIVATE_DIRS, key=len, reverse=True):
        if name == d or name.startswith(d + "/"):
            return vm.dir / "priv" / d.replace("/", "-") / name[len(d) + 1:]
    top = name.split("/", 1)[0]
    if top in OVERLAY_DIRS:
        return vm.dir / "upper" / name
    return None


def apply_image(vm: Vm, image_file: Path) -> dict:
    """First boot from an image that is a tar: its files go into the VM's overlay and private
    dirs (the VM then sees the host's files with the image's on top, as if the image were
    the root filesystem); returns the image's manifest (``binds``: VM path -> host path).

    Any other image data (the sandbox's ``cirros``: a few bytes) is no filesystem: nothing
    to lay over the host's."""
    import tarfile

    if not tarfile.is_tarfile(image_file):
        return {}
    vm.prepare_dirs()
    manifest: dict = {}
    with tarfile.open(image_file) as tar:
        for member in tar.getmembers():
            target = _image_member_target(vm, member.name)
            if not (member.isfile() or member.isdir() or member.issym()):
                target = None  # no devices, fifos or hard links from an image
            if target is None:
                if member.name.strip("./"):
                    _say_nova(f"image file {member.name} is outside what a VM holds: skipped")
                continue
            if member.name.lstrip("./") == IMAGE_MANIFEST:
                manifest = json.load(tar.extractfile(member))
            member.name = target.name
            # our own images, names checked above (the VMs' Python 3.11.2 has no filters)
            tar.extract(member, path=target.parent)
    return manifest


def _say_nova(msg: str) -> None:
    sys.stderr.write(f"netns: {msg}\n")


# --------------------------------------------------------------------------------------
# volumes


def volume_dir(data_dir: Path, volume_id: str) -> Path:
    return volumes_root(Path(data_dir)) / volume_id


def volume_targets(volume_id: str, device: str | None) -> list[str]:
    targets = [f"/mnt/volumes/{volume_id}"]
    if device:
        targets.insert(0, f"/mnt/{os.path.basename(device)}")
    return targets


def attach_live(vm: Vm, volume_id: str, device: str | None) -> None:
    """Mount a volume into a running VM (its mount namespace, via its init's PID)."""
    src = volume_dir(vm.data_dir, volume_id)
    src.mkdir(parents=True, exist_ok=True)
    _helper("inject", str(vm.state["init_pid"]), str(src), *volume_targets(volume_id, device))


def detach_live(vm: Vm, volume_id: str, device: str | None) -> None:
    _helper("eject", str(vm.state["init_pid"]), *volume_targets(volume_id, device))


def _helper(*args: str) -> None:
    _run([python_for_vm(), os.path.abspath(__file__), *args])


# --------------------------------------------------------------------------------------
# user_data -> boot plan (run in nova-compute; the VM's init needs stdlib only)


def _shellify(cmds) -> str:
    """cloud-init's runcmd/bootcmd: strings are shell lines, lists are argv."""
    lines = ["#!/bin/sh"]
    for c in cmds or []:
        lines.append(" ".join(shlex.quote(str(a)) for a in c) if isinstance(c, list) else str(c))
    return "\n".join(lines) + "\n"


def _decode_file(entry: dict) -> bytes:
    content = entry.get("content", "")
    data = content.encode() if isinstance(content, str) else bytes(content or b"")
    enc = str(entry.get("encoding") or "text").lower()
    if enc in ("b64", "base64", "gz+b64", "gzip+base64", "gz+base64", "gzip+b64"):
        data = base64.b64decode(data)
    if enc.startswith("gz"):
        data = gzip.decompress(data)
    return data


def parse_user_data(raw: bytes | None) -> dict:
    """``#!`` scripts, ``#cloud-config`` (write_files, bootcmd, runcmd), gzip and MIME
    multipart; anything else is reported on the console and ignored."""
    plan: dict = {"write_files": [], "bootcmd": None, "scripts": [], "notes": []}
    if not raw:
        return plan
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    _parse_part(raw, plan)
    return plan


def _parse_part(raw: bytes, plan: dict) -> None:
    head = raw.lstrip()[:64].lower()
    if head.startswith(b"#!"):
        plan["scripts"].append(raw.decode(errors="replace"))
    elif head.startswith(b"#cloud-config"):
        import yaml  # only here: the VM init must not need it

        cfg = yaml.safe_load(raw) or {}
        for entry in cfg.get("write_files") or []:
            plan["write_files"].append({
                "path": entry["path"],
                "content_b64": base64.b64encode(_decode_file(entry)).decode(),
                "permissions": str(entry.get("permissions") or "0644"),
                "owner": str(entry.get("owner") or "root:root"),
                "append": bool(entry.get("append")),
            })
        if cfg.get("bootcmd"):
            plan["bootcmd"] = _shellify(cfg["bootcmd"])
        if cfg.get("runcmd"):
            plan["scripts"].append(_shellify(cfg["runcmd"]))
        ignored = sorted(set(cfg) - {"write_files", "bootcmd", "runcmd"})
        if ignored:
            plan["notes"].append(f"cloud-config keys not supported here: {', '.join(ignored)}")
    elif head.startswith(b"content-type:") or head.startswith(b"mime-version:"):
        msg = email.message_from_bytes(raw)
        for part in msg.walk():
            if part.is_multipart():
                continue
            ctype = part.get_content_type()
            body = part.get_payload(decode=True) or b""
            if ctype == "text/x-shellscript" and not body.lstrip().startswith(b"#!"):
                body = b"#!/bin/sh\n" + body
            if ctype in ("text/x-shellscript", "text/cloud-config", "text/plain"):
                _parse_part(body, plan)
            else:
                plan["notes"].append(f"user_data part {ctype} ignored")
    else:
        plan["notes"].append("user_data is neither a #! script nor #cloud-config: ignored")


# --------------------------------------------------------------------------------------
# cleanup (used by `flexinfra sandbox down`, without nova)


def cleanup_all(data_dir: Path | None) -> dict[str, list[str]]:
    """Kill every VM and delete every namespace, veth and bridge with this module's
    prefixes. VM and volume directories stay (``down --wipe`` deletes the state)."""
    done: dict[str, list[str]] = {"vms": [], "netns": [], "links": []}
    if data_dir is not None:
        for vm in Vm.all(data_dir):
            with contextlib.suppress(VmError, OSError):
                if stop(vm, grace=2.0):
                    done["vms"].append(vm.uuid)
    out = _run(["ip", "netns", "list"], check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith((NETNS_PREFIX, ROUTER_NETNS_PREFIX)):
            continue
        pids = _run(["ip", "netns", "pids", name], check=False).stdout.split()
        for p in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(p), signal.SIGKILL)
        _run(["ip", "netns", "del", name], check=False)
        done["netns"].append(name)
    for prefix in LINK_PREFIXES:  # veths first, then the emptied bridges
        for name in sorted(os.listdir("/sys/class/net")):
            if name.startswith(prefix):
                _run(["ip", "link", "del", name], check=False)
                done["links"].append(name)
    return done


# ======================================================================================
# Below: what runs in the launcher and the VM's init (separate processes, stdlib only).

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.syscall.restype = ctypes.c_long

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x4000000, 0x20000000, 0x40000000
SYS_OPEN_TREE, SYS_MOVE_MOUNT = 428, 429  # same number on every architecture
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC, MOVE_MOUNT_F_EMPTY_PATH = 1, os.O_CLOEXEC, 4
AT_EMPTY_PATH = 0x1000


def _check(ret: int, what: str) -> int:
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


def _b(s: str | None) -> bytes | None:
    return s.encode() if s is not None else None


def _mount(src: str | None, target: str, fstype: str | None, flags: int = 0,
           data: str | None = None) -> None:
    _check(_libc.mount(_b(src), _b(target), _b(fstype), flags, _b(data)), f"mount {target}")


def _umount(target: str) -> None:
    _check(_libc.umount2(_b(target), MNT_DETACH), f"umount {target}")


def _mountpoints() -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            out.append(mp.encode().decode("unicode_escape"))
    return out


def _setup_filesystem(vmdir: str, state: dict) -> None:
    """Runs as the VM's PID 1, in its fresh mount namespace (still a copy of the host's)."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    # The copy holds every other VM's /run/netns/<name> mount: they would keep those
    # namespaces alive after `ip netns del`. Drop them here.
    for mp in sorted((m for m in _mountpoints() if m.startswith("/run/netns")),
                     key=len, reverse=True):
        with contextlib.suppress(OSError):
            _umount(mp)
    # Sources are reached through file descriptors opened now: the state may live under a
    # directory about to be hidden (/root, /tmp).
    vfd = os.open(vmdir, os.O_PATH | os.O_DIRECTORY)
    v = f"/proc/self/fd/{vfd}"
    data_dir = os.path.dirname(os.path.dirname(os.path.abspath(vmdir)))
    vol_fds = {}
    for vol in state.get("volumes", {}):
        vol_fds[vol] = os.open(os.path.join(data_dir, "volumes", vol), os.O_PATH | os.O_DIRECTORY)
    bind_fds = {}
    for target, source in (state.get("binds") or {}).items():
        with contextlib.suppress(OSError):
            bind_fds[target] = os.open(source, os.O_PATH)
    for d in OVERLAY_DIRS:
        _mount("overlay", f"/{d}", "overlay", 0,
               f"lowerdir=/{d},upperdir={v}/upper/{d},workdir={v}/work/{d}")
    for d, mode in TMPFS_DIRS:
        _mount("tmpfs", f"/{d}", "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode}")
    os.makedirs("/run/lock", mode=0o1777, exist_ok=True)
    os.chmod("/run/lock", 0o1777)
    for d in PRIVATE_DIRS:
        _mount(f"{v}/priv/{d.replace('/', '-')}", f"/{d}", None, MS_BIND)
    for vol, device in state.get("volumes", {}).items():
        for target in volume_targets(vol, device):
            os.makedirs(target, exist_ok=True)
            _mount(f"/proc/self/fd/{vol_fds[vol]}", target, None, MS_BIND)
    for target, fd in bind_fds.items():
        # what the image asked for (its manifest): a host path, read-only in the VM
        os.makedirs(target, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
        _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    for fd in (*vol_fds.values(), *bind_fds.values()):
        os.close(fd)
    _umount("/sys")
    _mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _umount("/proc")
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    hostname = (state.get("hostname") or "vm")[:63]
    socket.sethostname(hostname)
    marker = f"/var/lib/cloud/instances/{state['uuid']}"
    if not os.path.exists(marker):
        _write_identity(hostname, state)
    # The console log is open for writing through the root mount, and a mount with writers
    # cannot become read-only: reopen it through a detached clone of the VM dir (a mount of
    # its own, invisible in the VM).
    tree = _check(_libc.syscall(SYS_OPEN_TREE, vfd, b"",
                                OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH),
                  "open_tree")
    log = os.open("console.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640, dir_fd=tree)
    os.dup2(log, 1)
    os.dup2(log, 2)
    for fd in (log, tree, vfd):
        os.close(fd)
    # Anything not covered above (/, /work, /boot...) is read-only for the VM.
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    os.chdir("/")


def _write_identity(hostname: str, state: dict) -> None:
    """First boot: hostname, hosts and a resolv.conf that fails fast (the host's resolver is
    unreachable from a VM: a lookup would stall 10 s, SANDBOX.md gotcha 2)."""
    ips = [a.split("/")[0] for v in state.get("vifs", []) for a in v.get("addresses", [])]
    files = {
        "/etc/hostname": f"{hostname}\n",
        "/etc/hosts": "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
        + "".join(f"{ip} {hostname}\n" for ip in ips[:1]),
        "/etc/resolv.conf": "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    }
    for path, text in files.items():
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # may be a symlink into the host's /run
        with open(path, "w") as f:
            f.write(text)


def _vm_env(state: dict) -> dict[str, str]:
    return {"PATH": VM_PATH, "HOME": "/root", "USER": "root", "LOGNAME": "root",
            "SHELL": "/bin/sh", "LANG": "C.UTF-8", "INSTANCE_ID": state["uuid"]}


def _say(msg: str) -> None:
    sys.stdout.write(f"[flexinfra-vm {time.strftime('%F %T')}] {msg}\n")
    sys.stdout.flush()


def _boot(state: dict, plan: dict) -> None:
    """The boot sequence, in a child of the init: bootcmd and rc.local every boot,
    write_files and the user_data scripts once per instance."""
    env = _vm_env(state)
    inst = f"/var/lib/cloud/instances/{state['uuid']}"
    first = not os.path.exists(inst)
    rc_local = os.access("/etc/rc.local", os.X_OK)
    _say(f"boot ({'first boot' if first else 'reboot'}) of {state['uuid']}")
    for note in plan.get("notes", []):
        _say(note)
    if plan.get("bootcmd"):
        _run_script(f"{inst}-bootcmd", plan["bootcmd"], env, "bootcmd")
    if first:
        os.makedirs(f"{inst}/scripts", exist_ok=True)
        os.symlink(inst, "/var/lib/cloud/instance.tmp")
        os.replace("/var/lib/cloud/instance.tmp", "/var/lib/cloud/instance")
        for entry in plan.get("write_files", []):
            _write_file(entry)
    if rc_local:
        _say("running /etc/rc.local")
        _spawn(["/etc/rc.local"], env)
    if first:
        for i, script in enumerate(plan.get("scripts", [])):
            _run_script(f"{inst}/scripts/part-{i:03d}", script, env, "user_data")
    _say("boot finished")


def _run_script(path: str, text: str, env: dict, what: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o700)
    _say(f"running {what} ({path})")
    rc = _spawn([path], env)
    _say(f"{what} exited with {rc}")


def _spawn(argv: list[str], env: dict) -> int:
    try:
        return subprocess.call(argv, env=env, cwd="/", stdin=subprocess.DEVNULL)
    except OSError as e:
        _say(f"cannot run {argv[0]}: {e}")
        return 127


def _write_file(entry: dict) -> None:
    import grp
    import pwd

    path = entry["path"]
    try:
        os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
        with open(path, "ab" if entry.get("append") else "wb") as f:
            f.write(base64.b64decode(entry["content_b64"]))
        os.chmod(path, int(entry.get("permissions") or "0644", 8))
        user, _, group = entry.get("owner", "root:root").partition(":")
        os.chown(path, pwd.getpwnam(user).pw_uid, grp.getgrnam(group or user).gr_gid)
        _say(f"wrote {path}")
    except (OSError, KeyError, ValueError) as e:
        _say(f"write_files {path}: {e}")


def _init_main(vmdir: str, ready_fd: int) -> None:
    """PID 1 of the VM. Never returns."""
    code = 0
    try:
        os.setsid()
        log = os.open(os.path.join(vmdir, "console.log"),
                      os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(devnull)
        state = json.loads(Path(vmdir, "state.json").read_text())
        plan = json.loads(Path(vmdir, "boot.json").read_text()) if Path(
            vmdir, "boot.json").exists() else {}
        _setup_filesystem(vmdir, state)
    except BaseException as e:
        os.write(ready_fd, f"error: {e}\n".encode())
        os._exit(1)
    os.write(ready_fd, b"ok\n")
    os.close(ready_fd)

    watched = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    runner = os.fork()
    if runner == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        try:
            _boot(state, plan)
        finally:
            os._exit(0)
    stopping_until = None
    while True:
        # reap everything: orphans of the VM are re-parented to us
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = -1
                if stopping_until is not None:
                    _say("all processes stopped; power off")
                    os._exit(code)
                break
            if pid == 0:
                break
        if stopping_until is not None and time.monotonic() > stopping_until:
            _say("processes still running after the grace period: killed")
            os._exit(code)
        info = signal.sigtimedwait(watched, 1.0 if stopping_until else 60.0)
        stop_signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        if info and info.si_signo in stop_signals and stopping_until is None:
            _say(f"signal {info.si_signo}: stopping the VM's processes")
            stopping_until = time.monotonic() + INTERNAL_STOP_GRACE
            with contextlib.suppress(ProcessLookupError):
                os.kill(-1, signal.SIGTERM)


def _launch(vmdir: str) -> int:
    """Enter the VM's netns, make the PID/mount/UTS namespaces, fork the init, report its host
    PID on stdout as JSON, then stay its parent to reap it."""
    os.setsid()
    state = json.loads(Path(vmdir, "state.json").read_text())
    fd = os.open(f"/run/netns/{netns_name(state['uuid'])}", os.O_RDONLY)
    _check(_libc.setns(fd, CLONE_NEWNET), "setns net")
    os.close(fd)
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWPID), "unshare")
    # the init replaces /proc in the mount namespace we share: keep the host's at hand
    proc_fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _init_main(vmdir, w)
    os.close(w)
    msg = b""
    while chunk := os.read(r, 4096):
        msg += chunk
    os.close(r)
    if not msg.startswith(b"ok"):
        sys.stderr.write(msg.decode(errors="replace"))
        sys.stderr.flush()
        os.waitpid(pid, 0)
        return 1
    st = _proc_stat(pid, proc_fd)
    sys.stdout.write(json.dumps({"pid": pid, "start": st[1] if st else None}) + "\n")
    sys.stdout.flush()
    devnull = os.open("/dev/null", os.O_RDWR)
    for i in (0, 1, 2):
        os.dup2(devnull, i)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while True:
        try:
            os.waitpid(pid, 0)
            return 0
        except ChildProcessError:
            return 0


def _enter_mount_ns(pid: str) -> None:
    fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
    _check(_libc.setns(fd, CLONE_NEWNS), "setns mnt")
    os.close(fd)
    os.chdir("/")


def _vm_mountpoints(pid: str) -> set[str]:
    """Mount points inside a VM, read through the host's /proc (the VM's /proc shows only
    its own PID namespace)."""
    with open(f"/proc/{pid}/mountinfo") as f:
        return {line.split()[4].encode().decode("unicode_escape") for line in f}


def _inject(pid: str, src: str, targets: list[str]) -> None:
    """Bind ``src`` (a host path) at ``targets`` inside a running VM: clone the mount on the
    host side, then enter the VM's mount namespace and move it there (open_tree +
    move_mount: a plain bind cannot cross mount namespaces)."""
    mounted = _vm_mountpoints(pid)
    targets = [t for t in targets if t not in mounted]
    trees = []
    for _ in targets:
        trees.append(_check(_libc.syscall(SYS_OPEN_TREE, -100, _b(src),
                                          OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC), "open_tree"))
    _enter_mount_ns(pid)
    for fd, target in zip(trees, targets, strict=True):
        os.makedirs(target, exist_ok=True)
        _check(_libc.syscall(SYS_MOVE_MOUNT, fd, b"", -100, _b(target),
                             MOVE_MOUNT_F_EMPTY_PATH), f"move_mount {target}")


def _eject(pid: str, targets: list[str]) -> None:
    mounted = _vm_mountpoints(pid)
    _enter_mount_ns(pid)
    for target in targets:
        if target in mounted:
            _umount(target)
        with contextlib.suppress(OSError):
            os.rmdir(target)


def main(argv: list[str]) -> int:
    cmd, args = argv[0], argv[1:]
    if cmd == "launch":
        return _launch(args[0])
    if cmd == "inject":
        _inject(args[0], args[1], args[2:])
        return 0
    if cmd == "eject":
        _eject(args[0], args[1:])
        return 0
    if cmd == "cleanup":
        print(json.dumps(cleanup_all(Path(args[0]) if args else None)))
        return 0
    print(f"usage: {sys.argv[0]} launch VMDIR | inject PID SRC DST... | eject PID DST... | "
          "cleanup [DATA_DIR]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (OSError, VmError) as e:
        print(f"netns: {e}", file=sys.stderr)
        sys.exit(1)
