"""Three lab "VMs" booted from the operator's real user_data, the way the sandbox's VMs are:
each a network namespace ``fxgt-n<i>`` plus a PID/mount/UTS namespace whose init
(``vminit.py``) lays out the VM's filesystems, writes ``write_files`` and runs ``runcmd`` at the
first boot, ``/etc/rc.local`` at the next ones. Power-off is SIGKILL to that init: every process
of the VM dies at once, as in a hypervisor's hard stop.

The user_data is parsed by the sandbox's own parser (``sandbox/plugins/flexinfra_sandbox_cloud``),
so what boots here is what would boot there.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
from pathlib import Path

from flexinfra.galera.client import AgentClient
from flexinfra.galera.mycnf import ServerLayout
from flexinfra.galera.userdata import NodeBoot, render_user_data
from tests.galera.lab import API_PORT, PREFIX, PYTHON, Lab, Node, make_network

REPO = Path(__file__).resolve().parents[2]
VMINIT = Path(__file__).with_name("vminit.py")


def sandbox_parser():
    path = REPO / "sandbox/plugins/flexinfra_sandbox_cloud/netns.py"
    spec = importlib.util.spec_from_file_location("fxgt_sandbox_netns", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.parse_user_data


class VmLab(Lab):
    """Same helpers as :class:`Lab`; nodes are VMs booted from user_data."""

    def start(self, settings: tuple[tuple[str, str], ...] = ()) -> VmLab:
        parse = sandbox_parser()
        addresses = tuple(f"10.250.0.{20 + i}" for i in range(1, self.size + 1))
        self.user_data_sizes = {}
        for i, addr in enumerate(addresses, start=1):
            root = self.dir / f"vm{i}"
            for sub in ("upper/etc", "upper/usr", "upper/var", "work/etc", "work/usr",
                        "work/var", "priv/var-lib", "priv/var-log", "priv/mnt", "priv/root",
                        "volume"):
                (root / sub).mkdir(parents=True, exist_ok=True)
            node = Node(name=f"db-{i - 1}", index=i, address=addr, netns=f"{PREFIX}-n{i}",
                        root=root, layout=ServerLayout(
                            log_error=str(root / "priv/var-log/mysql/error.log")))
            self.nodes.append(node)
            self.creds.ensure_node(node.name, [addr])
            text = render_user_data(NodeBoot(cluster=self.cluster, node=node.name,
                                             address=addr, addresses=addresses,
                                             settings=settings), self.creds, self.zipapp)
            self.user_data_sizes[node.name] = len(text)
            plan = parse(text.encode())
            assert not plan["notes"], plan["notes"]
            (root / "boot.json").write_text(json.dumps(plan))
            node.client = AgentClient(addr, self._ctx, self.creds.token, port=API_PORT,
                                      timeout=10.0)
        make_network(self.nodes)
        for n in self.nodes:
            self.power_on(n)
        for n in self.nodes:
            self.wait(lambda n=n: self._answers(n), 30, f"agent of VM {n.name} answering")
        return self

    def power_on(self, n: Node) -> None:
        n.agent = subprocess.Popen(
            ["ip", "netns", "exec", n.netns, "unshare", "--mount", "--pid", "--uts",
             "--kill-child", "--propagation", "private", PYTHON, str(VMINIT), str(n.root),
             str(n.root / "boot.json"), n.name],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)

    def power_off(self, n: Node) -> None:
        """A hard stop: SIGKILL to unshare, which SIGKILLs the VM's init (``--kill-child``);
        the kernel then kills every process of the VM's PID namespace."""
        if n.agent is not None:
            n.agent.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                n.agent.wait(10)
            n.agent = None
        self.wait(lambda: not subprocess.run(["ip", "netns", "pids", n.netns],
                                             capture_output=True, text=True).stdout.strip(),
                  15, f"every process of {n.name} gone")

    def console(self, n: Node) -> str:
        path = n.root / "priv/var-log/console.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def agent_pid(self, n: Node) -> int | None:
        """The agent's PID as the host sees it (for its RSS)."""
        out = subprocess.run(["ip", "netns", "pids", n.netns], capture_output=True,
                             text=True).stdout.split()
        for pid in out:
            with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"agent.pyz" in f.read() and b"sh\0-c" not in Path(
                        f"/proc/{pid}/cmdline").read_bytes():
                    return int(pid)
        return None

    def tails(self, lines: int = 30) -> str:
        out = []
        for n in self.nodes:
            for f in (n.root / "priv/var-log/flexinfra/agent.log", n.error_log,
                      n.root / "priv/var-log/console.log"):
                if f.exists():
                    text = f.read_text(errors="replace").splitlines()[-lines:]
                    out.append(f"==> {f}\n" + "\n".join(text))
        return "\n".join(out)

    def close(self) -> None:
        for n in self.nodes:
            if n.agent is not None and n.agent.poll() is None:
                n.agent.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    n.agent.wait(10)
        super().close()
