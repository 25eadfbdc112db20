"""The sandbox's data plane: the external range kept on this machine, Neutron's agents, and
the host's presence on every network.

Routers, SNAT and floating IPs are Neutron's own L3 agent (``neutron-l3-agent``) with the
sandbox's interface driver (``plugins/.../l3.py``); security groups are Neutron's iptables
firewall driven by the sandbox's small L2 agent (``plugins/.../agent.py``); both get their
work over RPC from ``neutron-rpc-server``. See ``sandbox/README.md`` for what is real Neutron
code and what is the sandbox's own.

Traffic must stay on this machine: the external network's range (203.0.113.0/24) gets an
``unreachable`` route of low priority that stays when the sandbox is down, so no packet for
it ever takes the default route; while the sandbox runs, the host's port on the external
network (holding the range's gateway address) gives the range a more specific, connected
route. ``up`` refuses to go on if the range would still leave the machine.

One exception, found on these machines: their package registries (Debian, PyPI, npm) answer
at an address *inside* that documentation range (``/etc/hosts`` and DNS map
deb.debian.org, pypi.org... to it), reached through the default gateway. Owning the whole
range would cut the machine off its packages (``make`` and CI install from them). So each
address of the range that a registry name resolves to keeps a /32 route via the default
gateway (installed before, and kept with, the unreachable route), and is taken out of the
external subnet's allocation pools: no floating IP, VIP or router gateway can ever be given
one, so no traffic meant for the cloud can reach it.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
from pathlib import Path

from flexinfra_sandbox.openstack_conf import EXTERNAL_CIDR
from flexinfra_sandbox.paths import SandboxPaths
from flexinfra_sandbox.supervisor import SandboxError

#: the unreachable route's metric: above the kernel's connected route (0), so the host's port
#: on the external network wins while it exists
UNREACHABLE_METRIC = 4242
#: a few addresses of the range that must resolve locally (first, a floating IP's, last)
PROBES = ("203.0.113.1", "203.0.113.86", "203.0.113.254")

SUDO_SHIM = """#!/bin/sh
# flexinfra sandbox: the OpenStack services run as root already. Neutron's agents and privsep
# call `sudo <command>` (their root helper): run the command, dropping sudo's own options.
while [ $# -gt 0 ]; do
  case "$1" in
    -E|-n|-H|-S) shift ;;
    --) shift; break ;;
    *) break ;;
  esac
done
exec "$@"
"""


def _ip(*args: str, check: bool = True) -> str:
    p = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise SandboxError(f"ip {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


def default_gateways() -> set[str]:
    out = _ip("-4", "route", "show", "default", check=False)
    return {line.split()[2] for line in out.splitlines() if line.split()[:2] == ["default", "via"]}


def route_leaves_machine(address: str) -> str | None:
    """The route ``address`` would take if it goes off this machine (via a default gateway),
    else None (local, on one of our links, or unreachable)."""
    p = subprocess.run(["ip", "-4", "route", "get", address], capture_output=True, text=True)
    if p.returncode != 0:  # "Network is unreachable": nothing is sent
        return None
    words = p.stdout.split()
    via = words[words.index("via") + 1] if "via" in words else None
    return p.stdout.strip() if via and via in default_gateways() else None


#: names of this machine's package registries (apt, pip, npm)
REGISTRY_NAMES = (
    "deb.debian.org", "security.debian.org", "pypi.org", "files.pythonhosted.org",
    "registry.npmjs.org",
)  # fmt: skip


def _hosts_file_names() -> set[str]:
    names: set[str] = set()
    try:
        for line in Path("/etc/hosts").read_text().splitlines():
            parts = line.split("#", 1)[0].split()
            names.update(parts[1:])
    except OSError:
        pass
    return names


def registry_addresses(cidr: str = EXTERNAL_CIDR) -> list[str]:
    """Addresses of ``cidr`` that this machine's package registries resolve to (see the
    module doc): they must keep leaving through the default gateway."""
    net = ipaddress.ip_network(cidr)
    found = set()
    for name in {*REGISTRY_NAMES, *(n for n in _hosts_file_names() if "." in n)}:
        try:
            infos = socket.getaddrinfo(name, 443, socket.AF_INET, socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            continue
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if address in net:
                found.add(str(address))
    return sorted(found, key=ipaddress.ip_address)


def keep_external_range_local(cidr: str = EXTERNAL_CIDR) -> list[str]:
    """Install the ``unreachable`` route for the range (idempotent), keep the registries'
    addresses on the default route, and check that nothing else of the range leaves.
    Returns the registries' addresses (to keep out of the allocation pools)."""
    net = str(ipaddress.ip_network(cidr))
    registries = registry_addresses(cidr)
    gateways = sorted(default_gateways())
    if registries and gateways:
        for address in registries:
            _ip("-4", "route", "replace", f"{address}/32", "via", gateways[0])
    _ip("-4", "route", "replace", "unreachable", net, "metric", str(UNREACHABLE_METRIC))
    leaks = [r for r in (route_leaves_machine(a) for a in PROBES if a not in registries) if r]
    if leaks:
        raise SandboxError(
            f"{net} would leave this machine ({leaks[0]}): a more specific route sends it to "
            "the default gateway. Remove that route before starting the sandbox."
        )
    return registries


def allocation_pools(cidr: str, gateway: str, excluded: list[str]) -> list[dict[str, str]]:
    """The external subnet's pools: the range minus its gateway, the first ten addresses
    (kept for the host) and ``excluded`` (the registries). Pure."""
    net = ipaddress.ip_network(cidr)
    skip = {ipaddress.ip_address(a) for a in [gateway, *excluded]}
    pools, start, last = [], None, None
    for address in list(net.hosts())[9:]:
        if address in skip:
            if start is not None:
                pools.append({"start": str(start), "end": str(last)})
            start = None
            continue
        start = start or address
        last = address
    if start is not None:
        pools.append({"start": str(start), "end": str(last)})
    return pools


def external_range_status(cidr: str = EXTERNAL_CIDR) -> str:
    """One line for `sandbox status`: where the external range goes."""
    net = str(ipaddress.ip_network(cidr))
    routes = _ip("-4", "route", "show", net, check=False).strip().splitlines()
    registries = registry_addresses(cidr)
    leaks = [r for r in (route_leaves_machine(a) for a in PROBES if a not in registries) if r]
    where = "LEAVES THIS MACHINE: " + leaks[0] if leaks else "stays on this machine"
    kept = f"; package registries at {', '.join(registries)} via the gateway" if registries else ""
    return f"{net}: {where} ({'; '.join(r.strip() for r in routes) or 'no route'}{kept})"


def write_sudo_shim(paths: SandboxPaths) -> Path:
    bindir = paths.state / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    shim = bindir / "sudo"
    if not shim.exists() or shim.read_text() != SUDO_SHIM:
        shim.write_text(SUDO_SHIM)
        os.chmod(shim, 0o755)
    return bindir


def agent_env(paths: SandboxPaths) -> dict[str, str]:
    """Environment of the services that plug devices or run root helpers."""
    bindir = write_sudo_shim(paths)
    venv_bin = paths.openstack_venv / "bin"
    return {
        "FLEXINFRA_SANDBOX_STATE": str(paths.state),
        "PATH": f"{venv_bin}:{bindir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    }


def flush_firewall() -> list[str]:
    """After the L2 agent is stopped: drop its iptables chains from the host (``neutron-*``),
    in every table, and the ipsets it made. The rest of the host's firewall is kept. On a
    machine that never had the sandbox's packages there is nothing to flush."""
    removed: list[str] = []
    for cmd in ("iptables", "ip6tables"):
        if shutil.which(f"{cmd}-save") is None:
            continue
        save = subprocess.run([f"{cmd}-save"], capture_output=True, text=True)
        if save.returncode != 0 or "neutron-" not in save.stdout:
            continue
        kept = [line for line in save.stdout.splitlines() if "neutron-" not in line]
        subprocess.run([f"{cmd}-restore"], input="\n".join(kept) + "\n", text=True, check=False)
        removed.append(cmd)
    if shutil.which("ipset") is None:
        return removed
    sets = subprocess.run(["ipset", "list", "-n"], capture_output=True, text=True)
    for name in sets.stdout.split():
        if name.startswith("NI"):  # neutron's ipset names: NIPv4<sg id>, NIPv6<sg id>
            subprocess.run(["ipset", "destroy", name], capture_output=True, check=False)
            removed.append(name)
    return removed
