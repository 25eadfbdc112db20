"""A three-node Galera lab on this machine: each node a network namespace ``fxgt-n<i>`` on the
bridge ``fxgtbr0`` (10.250.0.0/24; the host is 10.250.0.1, nodes .11, .12, .13), running the
real agent from the zipapp bytes with ``/usr/bin/python3``, which runs the real mariadbd.

Everything the lab creates carries the ``fxgt`` prefix and is removed by :meth:`Lab.close`,
which is safe to call after any failure (and at start, for leftovers of a killed run).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from flexinfra.agent.bundle import build_zipapp
from flexinfra.galera.client import AgentClient, AgentUnreachable, client_context
from flexinfra.galera.credentials import ClusterCredentials
from flexinfra.galera.mycnf import GaleraNodeConfig, ServerLayout, render_my_cnf

PREFIX = "fxgt"
BRIDGE = "fxgtbr0"
HOST_ADDR = "10.250.0.1"
SUBNET_PREFIX = 24
PYTHON = "/usr/bin/python3"
API_PORT, HEALTH_PORT = 8443, 9200


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def cleanup_leftovers() -> None:
    """Remove every fxgt namespace (killing what runs inside), veth and bridge."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(f"{PREFIX}-"):
            for pid in _ip("netns", "pids", name, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _ip("netns", "del", name, check=False)
    for name in sorted(os.listdir("/sys/class/net")):
        if name.startswith(PREFIX) and name != BRIDGE:
            _ip("link", "del", name, check=False)
    if os.path.exists(f"/sys/class/net/{BRIDGE}"):
        _ip("link", "del", BRIDGE, check=False)


def make_network(nodes) -> None:
    """The bridge (host at 10.250.0.1) and one namespace + veth per node."""
    cleanup_leftovers()
    _ip("link", "add", BRIDGE, "type", "bridge")
    _ip("addr", "add", f"{HOST_ADDR}/{SUBNET_PREFIX}", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")
    for n in nodes:
        host_end, vm_end = f"{PREFIX}v{n.index}", f"{PREFIX}p{n.index}"
        _ip("netns", "add", n.netns)
        _ip("link", "add", host_end, "type", "veth", "peer", "name", vm_end)
        _ip("link", "set", host_end, "master", BRIDGE)
        _ip("link", "set", host_end, "up")
        _ip("link", "set", vm_end, "netns", n.netns)
        _ip("-n", n.netns, "link", "set", vm_end, "name", "eth0")
        _ip("-n", n.netns, "addr", "add", f"{n.address}/{SUBNET_PREFIX}", "dev", "eth0")
        _ip("-n", n.netns, "link", "set", "eth0", "up")
        _ip("-n", n.netns, "link", "set", "lo", "up")


@dataclass
class Node:
    name: str
    index: int
    address: str
    netns: str
    root: Path
    layout: ServerLayout
    agent: subprocess.Popen | None = None
    client: AgentClient | None = None

    @property
    def error_log(self) -> Path:
        return Path(self.layout.log_error)

    def status(self) -> dict:
        return self.client.status()

    def mariadbd_pid(self) -> int | None:
        return (self.status().get("mariadbd") or {}).get("pid")


class Lab:
    def __init__(self, size: int = 3, cluster: str = "fxgt", recover_on_exit: bool = False):
        self.size = size
        self.recover_on_exit = recover_on_exit
        self.cluster = cluster
        self.dir = Path(tempfile.mkdtemp(prefix="fxgt-lab-"))
        self.dir.chmod(0o755)  # mariadbd runs as mysql: it must reach its datadir
        self.creds = ClusterCredentials.generate(cluster)
        self.zipapp = build_zipapp()
        (self.dir / "agent.pyz").write_bytes(self.zipapp)
        self.nodes: list[Node] = []
        self._ctx = client_context(self.creds.ca_cert, self.creds.client_cert,
                                   self.creds.client_key)

    # --- network ------------------------------------------------------------------------
    def _network(self) -> None:
        make_network(self.nodes)

    # --- nodes --------------------------------------------------------------------------
    def start(self, settings: tuple[tuple[str, str], ...] = (),
              provider_options: tuple[tuple[str, str], ...] = (),
              sst_method: str = "rsync") -> Lab:
        addresses = tuple(f"10.250.0.{10 + i}" for i in range(1, self.size + 1))
        for i, addr in enumerate(addresses, start=1):
            root = self.dir / f"n{i}"
            layout = ServerLayout(datadir=str(root / "vdb/mysql"),
                                  socket=str(root / "run/mysqld.sock"),
                                  pid_file=str(root / "run/mariadbd.pid"),
                                  log_error=str(root / "log/error.log"),
                                  tmpdir=str(root / "tmp"))
            node = Node(name=f"db-{i - 1}", index=i, address=addr, netns=f"{PREFIX}-n{i}",
                        root=root, layout=layout)
            self.nodes.append(node)
            self.creds.ensure_node(node.name, [addr])
            for sub in ("vdb", "run", "log", "tmp", "etc", "state"):
                (root / sub).mkdir(parents=True, exist_ok=True)
            cnf = GaleraNodeConfig(cluster=self.cluster, node=node.name, address=addr,
                                   addresses=addresses, layout=layout, settings=settings,
                                   gcache_size="64M", provider_options=provider_options,
                                   sst_method=sst_method)
            (root / "etc/my.cnf").write_text(render_my_cnf(cnf))
            cert, key = self.creds.nodes[node.name]
            files = {"ca.pem": self.creds.ca_cert, "node.pem": cert, "node.key": key,
                     "token": self.creds.token}
            for fname, text in files.items():
                path = root / "etc" / fname
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(text)
            cfg = {
                "node": node.name, "address": addr,
                "peers": [a for a in addresses if a != addr],
                "listen": addr, "api_port": API_PORT, "health_port": HEALTH_PORT,
                "ca_file": str(root / "etc/ca.pem"), "cert_file": str(root / "etc/node.pem"),
                "key_file": str(root / "etc/node.key"), "token_file": str(root / "etc/token"),
                "defaults_file": str(root / "etc/my.cnf"), "state_dir": str(root / "vdb/agent"),
                # positions are recovered when the operator decides so (RecoverPositions);
                # the VM lab keeps the default (recovered right after a crash)
                "recover_on_exit": self.recover_on_exit,
            }
            (root / "etc/agent.json").write_text(json.dumps(cfg, indent=1))
            node.client = AgentClient(addr, self._ctx, self.creds.token, port=API_PORT,
                                      timeout=10.0)
        self._network()
        for n in self.nodes:
            self.start_agent(n)
        for n in self.nodes:
            self.wait(lambda n=n: self._answers(n), 20, f"agent {n.name} answering")
        return self

    def start_agent(self, n: Node) -> None:
        out = open(n.root / "agent.log", "ab")  # noqa: SIM115
        n.agent = subprocess.Popen(
            ["ip", "netns", "exec", n.netns, PYTHON, str(self.dir / "agent.pyz"),
             "--config", str(n.root / "etc/agent.json")],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        out.close()

    @staticmethod
    def _answers(n: Node) -> bool:
        try:
            n.client.status()
            return True
        except AgentUnreachable:
            return False

    def close(self) -> None:
        for n in self.nodes:
            if n.agent and n.agent.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(n.agent.pid, signal.SIGTERM)
        for n in self.nodes:
            if n.agent:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    n.agent.wait(5)
        cleanup_leftovers()   # kills mariadbd (it runs inside the namespaces) and the rest
        for n in self.nodes:
            if n.agent:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    n.agent.wait(5)
        if os.environ.get("FXGT_KEEP"):
            print(f"lab kept in {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- helpers ------------------------------------------------------------------------
    @staticmethod
    def wait(pred, timeout: float, what: str, interval: float = 0.2):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = pred()
            except AgentUnreachable as e:
                last = e
                last = None
            if last:
                return last
            time.sleep(interval)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")

    def synced(self, n: Node) -> bool:
        st = n.status()
        w = st.get("wsrep") or {}
        return (w.get("local_state_comment") == "Synced" and w.get("cluster_status") == "Primary"
                and w.get("ready") is True)

    def all_synced(self, size: int | None = None) -> bool:
        size = size or self.size
        for n in self.nodes:
            st = n.status()
            w = st.get("wsrep") or {}
            if not (w.get("local_state_comment") == "Synced" and w.get("ready")
                    and w.get("cluster_status") == "Primary" and w.get("cluster_size") == size):
                return False
        return True

    def tails(self, lines: int = 30) -> str:
        out = []
        for n in self.nodes:
            for f in (n.root / "agent.log", n.error_log):
                if f.exists():
                    text = f.read_text(errors="replace").splitlines()[-lines:]
                    out.append(f"==> {f}\n" + "\n".join(text))
        return "\n".join(out)
