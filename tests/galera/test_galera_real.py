"""The agent and ``decide`` against real MariaDB 10.11 + galera-4: three nodes in network
namespaces, each run by the agent from the zipapp bytes, driven only through the agent API
(mTLS + token). The scenarios run in order on one cluster; each leaves it healthy.

Timings are printed (``pytest -m galera -s``) and written to ``$FXGT_TIMINGS`` when set.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from flexinfra.galera import decide as d
from flexinfra.galera.client import AgentClient, AgentError, AgentUnreachable, client_context
from flexinfra.galera.credentials import ClusterCredentials
from tests.galera.drive import (
    DB,
    PASSWORD,
    USER,
    Driver,
    RowWriter,
    assert_no_reversed_history,
    assert_rows_everywhere,
    connect,
)
from tests.galera.lab import API_PORT, HEALTH_PORT, Lab

pytestmark = [
    pytest.mark.galera,
    pytest.mark.timeout(300),
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not (shutil.which("mariadbd") or os.path.exists("/usr/sbin/mariadbd"))
                       or not os.path.exists("/usr/lib/galera/libgalera_smm.so"),
                       reason="mariadb-server and galera-4 are not installed"),
]

TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def lab():
    lab = Lab()
    try:
        lab.start(settings=(("innodb_buffer_pool_size", "32M"),))
        yield lab
    finally:
        lab.close()
        print("\ngalera timings:", json.dumps(TIMINGS, indent=1))
        if os.environ.get("FXGT_TIMINGS"):
            with open(os.environ["FXGT_TIMINGS"], "w") as f:
                json.dump(TIMINGS, f, indent=1)


@pytest.fixture(scope="module")
def driver(lab):
    return Driver(lab)


def health(node) -> int:
    try:
        with urllib.request.urlopen(f"http://{node.address}:{HEALTH_PORT}/health",
                                    timeout=3) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def kill9(node) -> int:
    pid = node.mariadbd_pid()
    assert pid, f"{node.name}: no mariadbd running"
    os.kill(pid, signal.SIGKILL)
    return pid


# --- refusals -------------------------------------------------------------------------------

def test_refusals(lab):
    n = lab.nodes[0]
    assert n.client.status()["node"] == "db-0"   # the right cert and token pass
    # a wrong token: 401, whatever the certificate
    bad_token = AgentClient(n.address, n.client._ctx, "x" * 43, port=API_PORT)
    with pytest.raises(AgentError) as e:
        bad_token.status()
    assert e.value.status == 401
    no_token = AgentClient(n.address, n.client._ctx, "", port=API_PORT)
    with pytest.raises(AgentError) as e:
        no_token.status()
    assert e.value.status == 401
    # no client certificate: the handshake fails
    ctx = ssl.create_default_context(cadata=lab.creds.ca_cert)
    with pytest.raises(AgentUnreachable):
        AgentClient(n.address, ctx, lab.creds.token, port=API_PORT).status()
    # a client certificate from another CA (even with the right token): refused
    other = ClusterCredentials.generate("other")
    ctx = client_context(lab.creds.ca_cert, other.client_cert, other.client_key)
    with pytest.raises(AgentUnreachable):
        AgentClient(n.address, ctx, lab.creds.token, port=API_PORT).status()
    # and the client refuses an agent whose certificate another CA signed
    ctx = client_context(other.ca_cert, other.client_cert, other.client_key)
    with pytest.raises(AgentUnreachable):
        AgentClient(n.address, ctx, lab.creds.token, port=API_PORT).status()
    # plain HTTP on the API port: no answer
    conn = http.client.HTTPConnection(n.address, API_PORT, timeout=5)
    with pytest.raises((http.client.HTTPException, OSError)):
        conn.request("GET", "/v1/status")
        conn.getresponse()
    conn.close()
    # the health port says 503 (nothing runs yet) and nothing else exists there
    assert health(n) == 503
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://{n.address}:{HEALTH_PORT}/v1/status", timeout=3)
    assert e.value.code == 404
    # the agent's log shows the refusals but never the token
    log = (n.root / "agent.log").read_text()
    assert "bad or missing token" in log and lab.creds.token not in log


# --- scenarios ------------------------------------------------------------------------------

def test_new_cluster_three_synced(lab, driver):
    t0 = time.monotonic()
    first = d.decide(driver.observe())
    assert [type(a) for a in first.actions] == [d.BootstrapNewCluster]
    driver.run_until(driver.healthy, 120, "3 Synced nodes")
    TIMINGS["bootstrap_to_3_synced_s"] = round(time.monotonic() - t0, 1)
    # the writer may have moved off db-0 while it was an rsync donor (blocked for writes)
    assert driver.writer in ("db-0", "db-1", "db-2")
    kinds = " | ".join(driver.log)
    assert "BootstrapNewCluster db-0" in kinds and "StartJoiner db-1" in kinds
    assert all(health(n) == 200 for n in lab.nodes)
    # a database for the test client, through the agent of the writer
    driver.node(driver.writer).client.ensure_database(DB, USER, PASSWORD, "%")
    with pytest.raises(AgentError) as e:  # a non-writer refuses nothing valid, but bad names
        driver.node("db-1").client.ensure_database("bad name", USER, PASSWORD)
    assert e.value.status in (400, 404)
    conn = connect(driver.node(driver.writer))
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, writer VARCHAR(16), "
                    "at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))")
    conn.close()
    status = lab.nodes[1].status()
    assert status["wsrep"]["cluster_size"] == 3 and status["desired"] == "member"
    assert PASSWORD not in json.dumps(status)
    rss = {}
    for n in lab.nodes:
        with open(f"/proc/{n.agent.pid}/status") as f:
            rss[n.name] = next(int(x.split()[1]) for x in f if x.startswith("VmRSS"))
    TIMINGS["agent_rss_kib"] = max(rss.values())
    TIMINGS["zipapp_bytes"] = len(lab.zipapp)


def test_kill9_non_writer_heals_without_operator(lab, driver):
    victim = next(n for n in lab.nodes if n.name != driver.writer)
    before = victim.status()["mariadbd"]["auto_starts"]
    with RowWriter(driver, start_id=1) as w:
        w.wait_rows(50)
        t0 = time.monotonic()
        kill9(victim)
        lab.wait(lambda: health(victim) == 503, 10, "victim's health 503")
        w.wait_rows(20, timeout=30)          # the writer keeps committing
        lab.wait(lambda: lab.all_synced(), 90, "victim back and 3 Synced")
        TIMINGS["kill9_non_writer_to_synced_s"] = round(time.monotonic() - t0, 1)
        w.wait_rows(50)
    st = victim.status()
    assert st["mariadbd"]["auto_starts"] == before + 1
    assert st["mariadbd"]["last_exit"]["code"] == -9
    assert health(victim) == 200
    log = victim.error_log.read_text(errors="replace")
    tail = log[log.rfind("Recovered position"):] if "Recovered position" in log else log
    assert "IST received" in tail, "the restarted node should catch up by IST"
    TIMINGS["kill9_non_writer_rows_acked"] = len(w.acked)
    assert_rows_everywhere(lab, w.acked)
    test_kill9_non_writer_heals_without_operator.acked = w.acked


def test_kill9_writer_moves_the_writer(lab, driver):
    """The operator's part of a writer failure: ``SetWriter`` to a Synced node (the load
    balancer's health check does the same on its own), the agent brings the old writer back."""
    acked = list(getattr(test_kill9_non_writer_heals_without_operator, "acked", []))
    old = driver.writer
    with RowWriter(driver, start_id=50_000) as w:
        w.wait_rows(50)
        t0 = time.monotonic()
        kill9(driver.node(old))
        driver.run_until(lambda dec: driver.writer != old, 30, "a new writer")
        TIMINGS["kill9_writer_to_set_writer_s"] = round(time.monotonic() - t0, 1)
        n_before = len(w.acked)
        lab.wait(lambda: len(w.acked) > n_before, 30, "a commit on the new writer")
        TIMINGS["kill9_writer_to_first_commit_s"] = round(time.monotonic() - t0, 1)
        driver.run_until(driver.healthy, 90, "3 Synced again")
        TIMINGS["kill9_writer_to_3_synced_s"] = round(time.monotonic() - t0, 1)
        w.wait_rows(50)
    set_writer = next(a for a, _ in reversed(driver.actions) if isinstance(a, d.SetWriter))
    assert set_writer.node == driver.writer
    assert old in set_writer.evidence and "stopped" in set_writer.evidence[old]
    assert health(driver.node(old)) == 200
    acked += w.acked
    assert_rows_everywhere(lab, acked)
    test_kill9_non_writer_heals_without_operator.acked = acked


def test_partitioned_writer_is_replaced_and_heals_by_ist(lab, driver):
    """The writer's link goes down (its veth on the bridge): the majority keeps the Primary
    component, ``decide`` moves the writer, the cut-off node goes non-Primary and refuses
    writes; once the link is back it catches up by IST. Nobody bootstraps anything."""
    acked = list(getattr(test_kill9_non_writer_heals_without_operator, "acked", []))
    old = driver.node(driver.writer)
    first_action = len(driver.actions)
    saved = driver.policy
    driver.policy = d.Policy(node_failure_timeout=120, non_primary_grace=2)
    link = f"fxgtv{old.index}"
    try:
        with RowWriter(driver, start_id=70_000) as w:
            w.wait_rows(50)
            t0 = time.monotonic()
            subprocess.run(["ip", "link", "set", link, "down"], check=True)
            driver.run_until(lambda dec: driver.writer != old.name, 30, "a new writer")
            n_before = len(w.acked)
            lab.wait(lambda: len(w.acked) > n_before, 30, "a commit on the new writer")
            TIMINGS["partition_writer_to_first_commit_s"] = round(time.monotonic() - t0, 1)
            time.sleep(3)
            subprocess.run(["ip", "link", "set", link, "up"], check=True)
            t1 = time.monotonic()
            driver.run_until(driver.healthy, 90, "the cut-off node Synced again")
            TIMINGS["partition_heal_to_3_synced_s"] = round(time.monotonic() - t1, 1)
            w.wait_rows(50)
    finally:
        subprocess.run(["ip", "link", "set", link, "up"], check=False)
        driver.policy = saved
    assert not any(isinstance(a, d.BOOTSTRAPS) for a, _ in driver.actions[first_action:])
    log = old.error_log.read_text(errors="replace")
    assert "non-Primary" in log or "NON_PRIM" in log
    acked += w.acked
    assert_rows_everywhere(lab, acked)
    assert_no_reversed_history(lab)
    test_kill9_non_writer_heals_without_operator.acked = acked


def test_two_killed_survivor_pc_bootstrap(lab, driver):
    survivor = driver.node(driver.writer)
    others = [n for n in lab.nodes if n is not survivor]
    acked = list(getattr(test_kill9_non_writer_heals_without_operator, "acked", []))
    with RowWriter(driver, start_id=100_000) as w:
        w.wait_rows(50)
        t0 = time.monotonic()
        for n in others:
            kill9(n)
        lab.wait(lambda: (survivor.status()["wsrep"] or {}).get("cluster_status")
                 == "non-Primary", 30, "the survivor non-Primary")
        TIMINGS["two_killed_survivor_non_primary_s"] = round(time.monotonic() - t0, 1)
        # the dead nodes' agents must not restart anything: no Primary peer exists
        time.sleep(1)
        for n in others:
            st = n.status()
            assert not st["mariadbd"]["running"] and st["rejoin"]["waiting"]
        seen = []

        def pc_bootstrapped(decision):
            seen.extend(type(a).__name__ for a in decision.actions)
            return "PcBootstrap" in seen
        driver.run_until(pc_bootstrapped, 60, "a PcBootstrap decision")
        assert [a for a in driver.log if a.startswith("PcBootstrap")][-1].startswith(
            f"PcBootstrap {survivor.name}"), driver.log[-5:]
        # the stopped nodes' positions were recovered first, then compared
        assert "RecoverPositions" in seen and seen.index("RecoverPositions") < seen.index(
            "PcBootstrap"), seen
        pc = next(obs for a, obs in driver.actions if isinstance(a, d.PcBootstrap))
        assert all(n.recovered for n in pc.nodes if n.name != survivor.name)
        assert not any(s.startswith("Bootstrap") for s in seen)
        lab.wait(lambda: survivor.status()["healthy"], 10, "the survivor Primary again")
        TIMINGS["two_killed_to_writer_primary_s"] = round(time.monotonic() - t0, 1)
        w.wait_rows(20, timeout=30)
        driver.run_until(driver.healthy, 120, "3 Synced after pc.bootstrap")
        TIMINGS["two_killed_to_3_synced_s"] = round(time.monotonic() - t0, 1)
        w.wait_rows(20)
    acked += w.acked
    assert_rows_everywhere(lab, acked)
    test_two_killed_survivor_pc_bootstrap.acked = acked


def test_full_outage_recovers_from_highest_seqno(lab, driver):
    acked = list(getattr(test_two_killed_survivor_pc_bootstrap, "acked", []))
    with RowWriter(driver, start_id=200_000, pause=0) as w:
        w.wait_rows(200)
        for n in lab.nodes:          # the writer last: it holds the newest commits
            if n.name != driver.writer:
                kill9(n)
        kill9(driver.node(driver.writer))
        t0 = time.monotonic()
        time.sleep(0.5)
    acked += w.acked
    assert w.failed >= 1
    # nothing restarts by itself; positions are unknown (grastate says seqno: -1)
    time.sleep(2)
    assert not any(n.status()["mariadbd"]["running"] for n in lab.nodes)
    assert all(n.status()["grastate"]["seqno"] == -1 for n in lab.nodes)
    decision = d.decide(driver.observe())
    assert [type(a) for a in decision.actions] == [d.RecoverPositions], decision.reason
    assert set(decision.actions[0].nodes) == {"db-0", "db-1", "db-2"}
    driver.execute(decision.actions[0])
    # recovering again gives the same answer
    some = lab.nodes[1]
    first = some.status()["recovered"]
    again = some.client.recover()
    assert (again["uuid"], again["seqno"]) == (first["uuid"], first["seqno"])
    decision = d.decide(driver.observe())
    assert [type(a) for a in decision.actions] == [d.BootstrapFrom], decision.reason
    chosen = decision.actions[0]
    target = driver.node(chosen.node)
    # the agent's own guards, on real data: a position that is not the node's is refused, and
    # so is a bootstrap over safe_to_bootstrap: 0 that was not asked to set it
    with pytest.raises(AgentError) as e:
        target.client.start_bootstrap(chosen.position.uuid, chosen.position.seqno + 1, True)
    assert e.value.status == 409 and "position" in e.value.message
    if chosen.set_safe_to_bootstrap:
        with pytest.raises(AgentError) as e:
            target.client.start_bootstrap(chosen.position.uuid, chosen.position.seqno, False)
        assert e.value.status == 409 and "safe_to_bootstrap" in e.value.message
    assert not any(n.status()["mariadbd"]["running"] for n in lab.nodes)
    driver.run_until(driver.healthy, 180, "3 Synced after the full outage")
    TIMINGS["full_outage_to_3_synced_s"] = round(time.monotonic() - t0, 1)
    boots = [(a, obs) for a, obs in driver.actions if isinstance(a, d.BootstrapFrom)]
    assert len(boots) == 1, driver.log
    boot, obs = boots[0]
    # the decision was taken on every node's recovered position, and chose the highest
    recovered = {n.name: n.recovered for n in obs.nodes}
    assert all(p is not None for p in recovered.values()), recovered
    assert boot.position == recovered[boot.node]
    assert all(boot.position.seqno >= p.seqno for p in recovered.values()), recovered
    TIMINGS["full_outage_recovered_seqnos"] = {k: p.seqno for k, p in recovered.items()}
    steps = [a for a in driver.log[-40:] if not a.startswith("Wait")]
    print("full outage decisions:\n  " + "\n  ".join(steps))
    assert_rows_everywhere(lab, acked)
    assert_no_reversed_history(lab)
    TIMINGS["full_outage_rows_acked_total"] = len(acked)


def test_stopped_node_cannot_bootstrap_beside_a_primary(lab, driver):
    """A clean stop, a bootstrap attempt the agent refuses (its peers are Primary), and an
    explicit joiner start that brings it back."""
    n = next(x for x in lab.nodes if x.name != driver.writer)
    assert n.client.stop()["was_running"] is True
    st = n.status()
    assert st["desired"] == "stopped" and st["grastate"]["seqno"] >= 0   # clean: grastate
    time.sleep(2)
    assert not n.status()["mariadbd"]["running"], "a stopped node is not restarted"
    gs = st["grastate"]
    with pytest.raises(AgentError) as e:
        n.client.start_bootstrap(gs["uuid"], gs["seqno"], True)
    assert e.value.status == 409 and "report Primary" in e.value.message
    with pytest.raises(AgentError) as e:
        n.client.pc_bootstrap()
    assert e.value.status == 409
    decision = d.decide(driver.observe())
    assert [(type(a), a.node) for a in decision.actions] == [(d.StartJoiner, n.name)]
    driver.run_until(driver.healthy, 60, "the stopped node back")


def test_refuses_second_bootstrap_and_bad_requests(lab, driver):
    n = driver.node("db-1")
    st = n.status()
    with pytest.raises(AgentError) as e:   # running: no recover, no bootstrap
        n.client.recover()
    assert e.value.status == 409
    with pytest.raises(AgentError) as e:
        n.client.pc_bootstrap()
    assert e.value.status == 409 and "already" in e.value.message
    with pytest.raises(AgentError) as e:
        n.client.start_bootstrap(st["wsrep"]["cluster_state_uuid"], 1, True)
    assert e.value.status == 409
    with pytest.raises(AgentError) as e:
        n.client.ensure_database(DB, USER, "short")
    assert e.value.status == 400
    assert lab.all_synced()
