"""Cleanup of the sandbox's process "VMs" after nova-compute is stopped.

The VMs are namespaces and processes that outlive nova-compute on purpose (like qemu
guests), so ``flexinfra sandbox down`` must end them explicitly: every VM's processes are
killed, and every network namespace, veth and bridge carrying the sandbox's name prefixes
(``fxvm-``, ``fxve-``, ``fxbr-``) is deleted. The VMs' mounts live only in their own mount
namespaces and vanish with their processes. VM and volume directories under
``<state>/data`` stay (``down --wipe`` removes the state), so a later ``up`` can boot the
same servers again.

The plumbing is the Nova driver's own nova-free module (``sandbox/plugins/flexinfra_sandbox_cloud/
netns.py``), loaded here by path: the operator's venv has no nova and one implementation
serves both.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

from flexinfra_sandbox.paths import SandboxPaths


def plumbing(paths: SandboxPaths) -> ModuleType:
    """The driver's ``netns`` module, imported from the repository by path."""
    name = "flexinfra_sandbox_netns"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(paths.files) / "plugins" / "flexinfra_sandbox_cloud" / "netns.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def cleanup(paths: SandboxPaths) -> dict[str, list[str]]:
    """Kill every VM, delete the sandbox's namespaces, veths and bridges. Idempotent.

    Returns what was removed (``vms``, ``netns``, ``links``). Needs root, as the sandbox
    does; without root (or without iproute2) there is nothing this sandbox could have made.
    """
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return {"vms": [], "netns": [], "links": []}
    return plumbing(paths).cleanup_all(paths.data)


def leftovers(paths: SandboxPaths) -> dict[str, list[str]]:
    """Namespaces and interfaces with the sandbox's prefixes that exist now (for tests)."""
    net = plumbing(paths)
    netns_dir = Path("/run/netns")
    names = sorted(os.listdir(netns_dir)) if netns_dir.is_dir() else []
    return {
        "netns": [n for n in names if n.startswith(net.NETNS_PREFIX)],
        "links": sorted(
            n
            for n in os.listdir("/sys/class/net")
            if n.startswith((net.VETH_PREFIX, net.BRIDGE_PREFIX))
        ),
    }


def power_cut(paths: SandboxPaths, server_id: str) -> bool:
    """Pull the plug of a running VM: SIGKILL its init, which takes every process of the
    VM with it. Nova then shows the server SHUTOFF within about a second (the driver's
    lifecycle event), as after a crashed hypervisor guest; ``start`` boots it again.

    For fault-injection tests (a Galera or Gluster node dying). Returns False when the VM
    was not running.
    """
    net = plumbing(paths)
    vm = net.Vm(paths.data, server_id)
    if not vm.exists():
        return False
    return net.stop(vm.load(), grace=0)
