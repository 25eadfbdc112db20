"""What the GaleraCluster e2e tests and the benchmark share: the manifest, a bounded client
that commits numbered rows through the writer endpoint, VM-side actions (kill -9 of a
node's mariadbd, its server's link down), and the after-checks (every acknowledged row on
every node, equal ``CHECKSUM TABLE``, no "Reversing history" in any node's log).

Every connection goes to an address on this machine (``traffic.check_local``); every loop
is bounded in count and time."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from dataclasses import dataclass, field

import pymysql

from flexinfra_sandbox import traffic
from flexinfra_sandbox.paths import SandboxPaths
from tests.e2e.harness import wait_for

PLURAL = "galeraclusters"


def cluster(ns: str, name: str, cidr: str, **spec) -> dict:
    return {
        "apiVersion": "flexinfra.io/v1alpha1", "kind": "GaleraCluster",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"cloud": {"secretName": "tenant", "cloudName": "demo"}, "replicas": 3,
                 "flavor": "m1.tiny", "image": "cirros", "availabilityZones": ["az1", "az2"],
                 "volume": {"sizeGb": 1}, "network": {"cidr": cidr},
                 "deletionPolicy": "Delete", **spec},
    }


def root_password(kube, ns: str, name: str) -> str:
    import base64

    secret = kube.core.read_namespaced_secret(f"{name}-root", ns)
    return base64.b64decode(secret.data["password"]).decode()


def connect(address: str, port: int, password: str, database: str | None = None,
            timeout: float = 3) -> pymysql.connections.Connection:
    traffic.check_local(address)
    return pymysql.connect(host=address, port=port, user="root", password=password,
                           database=database, connect_timeout=timeout, read_timeout=timeout,
                           write_timeout=timeout, autocommit=True)


@dataclass
class Writes:
    """Numbered rows committed through the endpoint; what was acknowledged, what failed."""

    acked: list[int] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)  # (t since start, error)
    acked_at: list[float] = field(default_factory=list)

    def first_ack_after(self, t: float) -> float | None:
        return next((a for a in self.acked_at if a > t), None)

    def outage_after(self, t: float) -> float | None:
        """From ``t`` (the fault) to the first commit after the longest silence that follows
        it: a commit already in flight when the fault struck may still be acknowledged just
        after it, which is not the service coming back."""
        prev, worst = None, None
        for a in self.acked_at:
            if prev is not None and a > t and (worst is None or a - max(prev, t) > worst[0]):
                worst = (a - max(prev, t), a)
            prev = a
        return worst[1] - t if worst else None

    def summary(self) -> str:
        return f"{len(self.acked)} rows acknowledged, {len(self.failures)} failed attempts"


class RowWriter:
    """Commits rows (id, t) into ``fxtest.numbered`` through ``endpoint`` one at a time, at most
    ``count`` rows, until ``deadline`` seconds or ``stop()``; reconnects after a failure."""

    def __init__(self, endpoint: str, password: str, count: int = 20000, interval: float = 0.05,
                 deadline: float = 600.0, start_id: int = 1):
        self.host, port = endpoint.rsplit(":", 1)
        self.port = int(port)
        self.password = password
        self.count, self.interval, self.deadline = count, interval, deadline
        self.next_id = start_id
        self.result = Writes()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = 0.0

    def prepare(self) -> None:
        c = connect(self.host, self.port, self.password, timeout=5)
        with c.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS fxtest")
            cur.execute("CREATE TABLE IF NOT EXISTS fxtest.numbered (id INT PRIMARY KEY, "
                        "t DOUBLE NOT NULL) ENGINE=InnoDB")
        c.close()

    def start(self) -> RowWriter:
        self.prepare()
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        conn = None
        end = self.started + self.deadline
        while not self._stop.is_set() and time.monotonic() < end and \
                len(self.result.acked) < self.count:
            try:
                if conn is None:
                    conn = connect(self.host, self.port, self.password, "fxtest", timeout=2)
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO numbered (id, t) VALUES (%s, %s)",
                                (self.next_id, time.time()))
                self.result.acked.append(self.next_id)
                self.result.acked_at.append(time.monotonic() - self.started)
                self.next_id += 1
            except pymysql.MySQLError as e:
                if isinstance(e, pymysql.IntegrityError) and e.args and e.args[0] == 1062:
                    # the commit went through but its answer was lost: the row is there
                    self.result.acked.append(self.next_id)
                    self.result.acked_at.append(time.monotonic() - self.started)
                    self.next_id += 1
                    continue
                self.result.failures.append((time.monotonic() - self.started, str(e)[:120]))
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
                time.sleep(0.1)
            time.sleep(self.interval)
        if conn is not None:
            conn.close()

    def stop(self) -> Writes:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        return self.result

    def now(self) -> float:
        return time.monotonic() - self.started


# --- the VMs --------------------------------------------------------------------------------
def vm_pid(server_id: str) -> int:
    state = json.loads((SandboxPaths.from_env().data / "vms" / server_id / "state.json")
                       .read_text())
    return int(state["init_pid"])


def in_vm(server_id: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", "-t", str(vm_pid(server_id)), "-a", *cmd],
                          capture_output=True, text=True, check=check, timeout=60)


def kill_mariadbd(server_id: str) -> None:
    """kill -9 of the node's mariadbd (its agent and VM keep running)."""
    in_vm(server_id, "pkill", "-9", "-x", "mariadbd")


def link(server_id: str, up: bool) -> None:
    """The VM's network link down or up (a partition of that node)."""
    out = in_vm(server_id, "ip", "-o", "link", "show").stdout
    for line in out.splitlines():
        dev = line.split(":")[1].strip().split("@")[0]
        if dev != "lo":
            in_vm(server_id, "ip", "link", "set", dev, "up" if up else "down")


def node_log(server_id: str) -> str:
    return in_vm(server_id, "cat", "/var/log/mysql/error.log", check=False).stdout


# --- the after-checks ------------------------------------------------------------------------
def nodes_of(kube, ns: str, name: str) -> list[dict]:
    return kube.get(PLURAL, ns, name)["status"]["nodes"]


def check_data(kube, ns: str, name: str, writes: Writes, password: str) -> dict[str, str]:
    """Every acknowledged row on every node, the same checksum everywhere, no node's log
    saying "Reversing history". Returns the checksum per node."""
    sums = {}
    acked = set(writes.acked)
    for node in nodes_of(kube, ns, name):
        c = connect(node["address"], 3306, password, "fxtest", timeout=10)
        with c.cursor() as cur:
            cur.execute("SELECT id FROM numbered")
            have = {r[0] for r in cur.fetchall()}
            cur.execute("CHECKSUM TABLE numbered")
            sums[node["name"]] = str(cur.fetchone()[1])
        c.close()
        missing = acked - have
        assert not missing, f"{node['name']} lacks {len(missing)} acknowledged rows: " \
                            f"{sorted(missing)[:10]}"
        assert "Reversing history" not in node_log(node["server"]), node["name"]
    assert len(set(sums.values())) == 1, f"checksums differ: {sums}"
    return sums


def nodes_synced(obj: dict, password: str) -> bool:
    """Ground truth, not the status (which may not show a fault yet): every node answers SQL
    Synced in a Primary component of ``replicas`` nodes."""
    for node in obj["status"]["nodes"]:
        try:
            c = connect(node["address"], 3306, password, timeout=3)
        except pymysql.MySQLError:
            return False
        with c.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state_comment',"
                        " 'wsrep_cluster_size', 'wsrep_cluster_status')")
            got = dict(cur.fetchall())
        c.close()
        if (got.get("wsrep_local_state_comment"), got.get("wsrep_cluster_status"),
                got.get("wsrep_cluster_size")) != ("Synced", "Primary",
                                                   str(obj["spec"]["replicas"])):
            return False
    return True


def wait_ready(kube, ns: str, name: str, timeout: float = 300) -> dict:
    def ready():
        obj = kube.get(PLURAL, ns, name)
        st = obj.get("status") or {}
        cond = next((c for c in st.get("conditions", []) if c["type"] == "Ready"), {})
        return (cond.get("status") == "True" and st.get("clusterSize") == obj["spec"]["replicas"]
                and all(n.get("state") == "Synced" for n in st.get("nodes", []))
                and nodes_synced(obj, root_password(kube, ns, name)) and obj)
    return wait_for(ready, timeout, f"{name} Ready with every node Synced", every=0.5)
