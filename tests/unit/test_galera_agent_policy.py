"""The agent's restart policy, step by step, with stand-ins for mariadbd and the client (no
root, no MariaDB): the real thing runs in tests/galera."""

from __future__ import annotations

import os
import pwd
import signal
import textwrap
import time
from pathlib import Path

import pytest

from flexinfra.agent.config import AgentConfig
from flexinfra.agent.supervisor import MEMBER, STOPPED, OpError, Supervisor
from flexinfra.galera.mycnf import GaleraNodeConfig, ServerLayout, render_my_cnf

U = "0c4a3d58-f00d-11f1-9a8e-2a4a1c0e5f11"
ME = "10.0.0.3"


def _script(path, body):
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def node(tmp_path):
    data = tmp_path / "data"
    (data / "mysql").mkdir(parents=True)           # an initialised datadir
    (data / "grastate.dat").write_text(f"version: 2.1\nuuid: {U}\nseqno: -1\n"
                                       "safe_to_bootstrap: 0\n")
    calls = tmp_path / "calls"
    status = tmp_path / "wsrep"
    status.write_text("wsrep_cluster_status\tnon-Primary\nwsrep_local_state_comment\t"
                      "Initialized\nwsrep_ready\tOFF\n")
    # a mariadbd stand-in: --wsrep-recover prints a position; otherwise it logs its arguments
    # and lives until killed
    fake_mariadbd = _script(tmp_path / "mariadbd", f"""\
        for a in "$@"; do
          if [ "$a" = "--wsrep-recover" ]; then
            echo "[Note] WSREP: Recovered position: {U}:5" >&2; exit 0
          fi
        done
        echo "$@" >> {calls}
        exec sleep 120
        """)
    fake_client = _script(tmp_path / "mariadb", f"cat {status}\n")
    (tmp_path / "my.cnf").write_text(render_my_cnf(GaleraNodeConfig(
        cluster="t", node="db-2", address=ME, addresses=("10.0.0.1", "10.0.0.2", ME),
        layout=ServerLayout(datadir=str(data), socket=str(tmp_path / "run/s.sock"),
                            pid_file=str(tmp_path / "run/p.pid"),
                            log_error=str(tmp_path / "log/error.log"),
                            tmpdir=str(tmp_path / "tmp")))))
    cfg = AgentConfig(node="db-2", address=ME, peers=("10.0.0.1", "10.0.0.2"),
                      defaults_file=str(tmp_path / "my.cnf"), state_dir=str(tmp_path / "state"),
                      mariadbd=fake_mariadbd, client=fake_client,
                      run_as=pwd.getpwuid(os.getuid()).pw_name, poll_interval=0.05)
    peers_say: dict = {}
    sup = Supervisor(cfg, "t" * 40, survey=lambda: dict(peers_say))
    yield sup, calls, status, peers_say
    if sup.db.pid and sup.running():
        os.kill(sup.db.pid, signal.SIGKILL)


def primary(*addrs):
    return {"wsrep": {"cluster_status": "Primary", "local_state_comment": "Synced",
                      "ready": True, "incoming_addresses": [f"{a}:3306" for a in addrs]}}


def settled(sup) -> None:
    """Wait until the stand-in has logged its arguments (it then execs ``sleep``)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{sup.db.pid}/cmdline", "rb") as f:
                if f.read().startswith(b"sleep"):
                    return
        except (OSError, TypeError):
            return
        time.sleep(0.01)


def starts(calls) -> list[str]:
    return calls.read_text().splitlines() if calls.exists() else []


def kill_and_notice(sup):
    settled(sup)
    os.kill(sup.db.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while sup.running() and time.monotonic() < deadline:
        time.sleep(0.02)
    sup.tick()


def test_joiner_start_recovers_its_position_first(node):
    sup, calls, _, _ = node
    assert sup.state["desired"] == STOPPED
    assert sup.start_joiner()["started"]
    assert sup.state["desired"] == MEMBER
    settled(sup)
    [args] = starts(calls)
    assert f"--wsrep_start_position={U}:5" in args and "--wsrep-new-cluster" not in args
    assert sup.start_joiner()["started"] is False      # already running: nothing done


def test_crash_waits_for_a_primary_that_dropped_this_node(node):
    sup, calls, _, peers_say = node
    sup.start_joiner()
    kill_and_notice(sup)
    assert sup.last_exit["code"] == -signal.SIGKILL
    assert sup.recovered == {"uuid": U, "seqno": 5, "at": sup.recovered["at"]}
    # full outage: nobody answers Primary -> nothing starts, however long
    for _ in range(5):
        sup.next_attempt = 0
        sup.tick()
    assert not sup.running() and len(starts(calls)) == 1
    assert "waiting" in sup.status()["rejoin"]["waiting"]
    # a Primary peer that still lists this node: its old incarnation is not evicted yet
    peers_say["10.0.0.1"] = primary("10.0.0.1", "10.0.0.2", ME)
    sup.next_attempt = 0
    sup.tick()
    assert not sup.running()
    # evicted: rejoin, as a joiner, at the recovered position
    peers_say["10.0.0.1"] = primary("10.0.0.1", "10.0.0.2")
    sup.next_attempt = 0
    sup.tick()
    assert sup.running() and sup.auto_starts == 1
    settled(sup)
    assert starts(calls)[-1].endswith(f"--wsrep_start_position={U}:5")
    assert not any("--wsrep-new-cluster" in a for a in starts(calls))


def test_backoff_grows_while_starts_keep_failing(node):
    sup, _, _, peers_say = node
    sup.start_joiner()
    delays = []
    for _ in range(4):
        kill_and_notice(sup)
        delays.append(round(sup.next_attempt - time.time()))
        peers_say["10.0.0.1"] = primary("10.0.0.1")
        sup.next_attempt = 0
        sup.tick()
        assert sup.running()
    assert delays == [1, 2, 4, 8]


def test_a_stopped_node_stays_stopped(node):
    sup, calls, _, peers_say = node
    sup.start_joiner()
    settled(sup)
    out = sup.stop()
    assert out["was_running"] and sup.state["desired"] == STOPPED
    peers_say["10.0.0.1"] = primary("10.0.0.1")
    for _ in range(3):
        sup.next_attempt = 0
        sup.tick()
    assert not sup.running() and len(starts(calls)) == 1
    # and the desired state is what a restarted agent reads
    again = Supervisor(sup.cfg, "t" * 40, survey=dict)
    assert again.state["desired"] == STOPPED


def test_bootstrap_guards(node):
    sup, calls, _, peers_say = node
    with pytest.raises(OpError) as e:       # not this node's position
        sup.start_bootstrap(U, 6, True)
    assert e.value.status == 409 and "position" in e.value.message
    with pytest.raises(OpError) as e:       # safe_to_bootstrap: 0, not asked to set it
        sup.start_bootstrap(U, 5, False)
    assert "safe_to_bootstrap" in e.value.message
    peers_say["10.0.0.1"] = primary("10.0.0.1")
    with pytest.raises(OpError) as e:       # a peer is Primary
        sup.start_bootstrap(U, 5, True)
    assert "report Primary" in e.value.message
    with pytest.raises(OpError) as e:
        sup.start_new_cluster()
    assert "already holds cluster" in e.value.message
    assert not starts(calls)
    grastate = Path(sup.paths.datadir) / "grastate.dat"
    assert "safe_to_bootstrap: 0" in grastate.read_text()
    peers_say.clear()
    out = sup.start_bootstrap(U, 5, True)
    settled(sup)
    assert out["started"] and starts(calls) == [
        f"--defaults-file={sup.cfg.defaults_file} --user={sup.cfg.run_as} "
        f"--wsrep-new-cluster --wsrep_start_position={U}:5"]
    assert "safe_to_bootstrap: 1" in grastate.read_text()
    # a bootstrapped node that crashes comes back as a joiner, never as a bootstrap
    kill_and_notice(sup)
    peers_say["10.0.0.1"] = primary("10.0.0.1")
    sup.next_attempt = 0
    sup.tick()
    settled(sup)
    assert "--wsrep-new-cluster" not in starts(calls)[-1]


def test_health_follows_the_wsrep_status(node):
    sup, _, status, _ = node
    sup.start_joiner()
    sup.tick()
    assert not sup.healthy()
    status.write_text("wsrep_cluster_status\tPrimary\nwsrep_local_state_comment\tSynced\n"
                      "wsrep_ready\tON\nwsrep_cluster_size\t3\n")
    sup.tick()
    assert sup.healthy()
    st = sup.status()
    assert st["wsrep"]["cluster_size"] == 3 and st["healthy"]
    sup.wsrep_at -= 60          # a stale reading is not health
    assert not sup.healthy()


def test_sql_errors_never_carry_the_password(node, tmp_path):
    sup, _, status, _ = node
    status.write_text("wsrep_cluster_status\tPrimary\nwsrep_local_state_comment\tSynced\n"
                      "wsrep_ready\tON\n")
    password = "Secret0123456789-abcdef"
    # a client that answers the status query, and fails the database SQL quoting it back
    client = _script(tmp_path / "mariadb-failing", f"""\
        sql=$(cat)
        case "$sql" in
          *SHOW*) cat {status} ;;
          *) echo "ERROR 1064 (42000) at line 2: syntax error near 'IDENTIFIED BY \
'{password}' x'" >&2; exit 1 ;;
        esac
        """)
    object.__setattr__(sup.cfg, "client", client)
    sup.start_joiner()
    sup.tick()
    with pytest.raises(OpError) as e:
        sup.ensure_database("client_a", "client_a", password, "%")
    assert e.value.status == 500 and "ERROR 1064" in e.value.message
    assert password not in e.value.message and password not in str(e.value.details)
