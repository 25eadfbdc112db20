"""Drive a lab cluster the way the operator will: observe every agent, ``decide``, execute
the actions through the agent API. Also a client that commits numbered rows, and the
checks that every acknowledged row is on every node."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field

import pymysql

from flexinfra.galera import decide as d
from flexinfra.galera.client import AgentError
from flexinfra.galera.fleet import AGENT_ACTIONS, AgentFleet
from tests.galera.lab import Lab, Node

DB, USER, PASSWORD = "fxtest", "fxtest", "fxtest-password-0123456789"


@dataclass
class Driver:
    """What the operator's loop will do, minus OpenStack: observe through ``AgentFleet``,
    ``decide``, execute. ``SetWriter`` moves this lab's writer (the load balancer's job)."""

    lab: Lab
    writer: str | None = None
    created: bool = False
    policy: d.Policy = field(default_factory=lambda: d.Policy(node_failure_timeout=10,
                                                             non_primary_grace=2))
    in_flight: str | None = None
    log: list[str] = field(default_factory=list)
    actions: list[tuple[d.Action, d.ClusterObs]] = field(default_factory=list)
    fleet: AgentFleet | None = None

    def __post_init__(self):
        self.fleet = AgentFleet({n.name: n.client for n in self.lab.nodes})

    def node(self, name: str) -> Node:
        return next(n for n in self.lab.nodes if n.name == name)

    def observe(self) -> d.ClusterObs:
        obs = self.fleet.observe({n.name: d.ACTIVE for n in self.lab.nodes},
                                 writer=self.writer, policy=self.policy,
                                 bootstrap_in_flight=self.in_flight, created=self.created)
        if self.in_flight and any(x.cluster_status == "Primary" for x in obs.nodes):
            self.in_flight = None
            obs = d.ClusterObs(nodes=obs.nodes, writer=obs.writer, policy=obs.policy,
                               created=obs.created)
        return obs

    def step(self) -> d.Decision:
        obs = self.observe()
        decision = d.decide(obs)
        for a in decision.actions:
            self.log.append(a.describe())
            self.actions.append((a, obs))
            self.execute(a)
        return decision

    def execute(self, a: d.Action) -> None:
        try:
            if isinstance(a, d.Wait):
                time.sleep(0.3)
            elif isinstance(a, d.SetWriter):
                self.writer = a.node
            elif isinstance(a, AGENT_ACTIONS):
                if isinstance(a, d.BOOTSTRAPS):
                    self.in_flight = a.node
                self.fleet.execute(a, wait=60)
                if isinstance(a, d.BootstrapNewCluster):
                    self.created = True
            else:
                raise AssertionError(f"the lab cannot execute {a.describe()}")
        except AgentError as e:
            # 409 = the node's state moved on (e.g. the agent is already rejoining): the next
            # observation will show it
            self.log.append(f"  -> agent said {e.status}: {e.message}")
            if e.status != 409:
                raise

    def run_until(self, done, timeout: float, what: str) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            decision = self.step()
            if done(decision):
                return time.monotonic() - t0
        raise TimeoutError(f"{what} not reached in {timeout:.0f}s; decisions:\n"
                           + "\n".join(self.log[-40:]) + "\n" + self.lab.tails(20))

    def healthy(self, decision: d.Decision) -> bool:
        return (len(decision.actions) == 1 and isinstance(decision.actions[0], d.Wait)
                and decision.actions[0].reason.startswith("healthy")
                and self.lab.all_synced())


# --- SQL from the host ----------------------------------------------------------------------

def connect(node: Node, timeout: float = 3.0) -> pymysql.connections.Connection:
    return pymysql.connect(host=node.address, port=3306, user=USER, password=PASSWORD,
                           database=DB, connect_timeout=timeout, read_timeout=timeout * 2,
                           write_timeout=timeout * 2, autocommit=True)


class RowWriter:
    """Commits numbered rows on the current writer until stopped; remembers which commits were
    acknowledged. Bounded: at most ``max_rows`` rows and ``max_seconds`` seconds."""

    def __init__(self, driver: Driver, start_id: int, max_rows: int = 20000,
                 max_seconds: float = 240.0, pause: float = 0.005):
        self.driver = driver
        self.next_id = start_id
        self.max_rows, self.max_seconds, self.pause = max_rows, max_seconds, pause
        self.acked: list[int] = []
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RowWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def wait_rows(self, n: int, timeout: float = 20.0) -> None:
        target = len(self.acked) + n
        deadline = time.monotonic() + timeout
        while len(self.acked) < target and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.acked) >= target, f"writer committed {len(self.acked)} rows only"

    def _run(self) -> None:
        t0 = time.monotonic()
        conn = None
        while (not self._stop.is_set() and time.monotonic() - t0 < self.max_seconds
               and len(self.acked) + self.failed < self.max_rows):
            try:
                if conn is None:
                    conn = connect(self.driver.node(self.driver.writer))
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO t (id, writer) VALUES (%s, %s)",
                                (self.next_id, self.driver.writer))
                self.acked.append(self.next_id)
            except pymysql.MySQLError:
                self.failed += 1
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
                self._stop.wait(0.2)
            self.next_id += 1
            if self.pause:
                self._stop.wait(self.pause)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def table_state(node: Node) -> tuple[int, int, set[int]]:
    conn = connect(node, timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute("CHECKSUM TABLE t")
            checksum = cur.fetchone()[1]
            cur.execute("SELECT id FROM t")
            ids = {r[0] for r in cur.fetchall()}
        return checksum, len(ids), ids
    finally:
        conn.close()


def assert_rows_everywhere(lab: Lab, acked: list[int]) -> dict:
    """Every acknowledged row on every node, and the same table everywhere."""
    # a node answers Synced before its applier has caught up with the last commit: read
    # after a wsrep_sync_wait on each node
    states = {}
    for n in lab.nodes:
        conn = connect(n, timeout=10)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION wsrep_sync_wait = 1")
                cur.execute("SELECT COUNT(*) FROM t")
        finally:
            conn.close()
        states[n.name] = table_state(n)
    missing = {name: sorted(set(acked) - ids)[:10] for name, (_, _, ids) in states.items()
               if set(acked) - ids}
    assert not missing, f"acknowledged rows missing: {missing}"
    checksums = {name: (c, count) for name, (c, count, _) in states.items()}
    assert len({v for v in checksums.values()}) == 1, f"tables differ: {checksums}"
    return checksums


def assert_no_reversed_history(lab: Lab) -> None:
    for n in lab.nodes:
        text = n.error_log.read_text(errors="replace") if n.error_log.exists() else ""
        assert "Reversing history" not in text, f"{n.name}: Galera reports reversed history"
