"""The Galera step's translation of decisions into acts, with stand-ins for the agents and
Nova: who is called, what is recorded (Events, status.recovery, metrics), when the cluster
is Ready, and that no password leaves the Secrets."""

from __future__ import annotations

import json

import pytest

from flexinfra.api.galera import GaleraClusterSpec
from flexinfra.core.errors import CloudError, ErrorCode
from flexinfra.core.kinds import Kind
from flexinfra.core.objects import CloudObject
from flexinfra.core.reasons import Reason
from flexinfra.core.tags import Owner
from flexinfra.galera.credentials import ClusterCredentials
from flexinfra.galera.fleet import AgentFleet
from flexinfra.kinds import galera_probe, galera_step
from flexinfra.kinds.galera import GALERA, Secrets
from flexinfra.planning.galera import ObservedGalera
from flexinfra.reconcile.driver import Converged, KindStatus

U = "0c4a3d58-f00d-11f1-9a8e-2a4a1c0e5f11"
OWNER = Owner("uid-s", "ns", "db", "GaleraCluster")
N = [f"{OWNER.prefix}-db-{i}" for i in range(3)]
ROOT, PROBE = "root-password-canary-0123", "probe-password-canary-456"


def synced(name, size=3, seqno=100):
    return {"desired": "member", "mariadbd": {"running": True}, "datadir_initialised": True,
            "wsrep": {"local_state_comment": "Synced", "cluster_status": "Primary",
                      "cluster_size": size, "ready": True, "cluster_state_uuid": U,
                      "last_committed": seqno, "cluster_status_since": 0.0, "at": 50.0},
            "grastate": {"uuid": U, "seqno": -1, "safe_to_bootstrap": False}}


def stopped(seqno, desired="stopped"):
    return {"desired": desired, "mariadbd": {"running": False}, "datadir_initialised": True,
            "grastate": {"uuid": U, "seqno": -1, "safe_to_bootstrap": False},
            "recovered": {"uuid": U, "seqno": seqno, "at": 1.0}}


class Agent:
    def __init__(self, status):
        self._status = status
        self.calls = []

    def status(self):
        if self._status is None:
            from flexinfra.galera.client import AgentUnreachable
            raise AgentUnreachable("down")
        return self._status

    def __getattr__(self, name):
        def call(*args, **kw):
            self.calls.append((name, args))
            return {"started": True, "synced": True, "mode": name}
        return call


class Nova:
    def __init__(self, refuse=None):
        self.calls = []
        self.refuse = refuse

    def _do(self, what, sid):
        if self.refuse:
            raise CloudError("busy", code=self.refuse)
        self.calls.append((what, sid))

    def start(self, sid):
        self._do("start", sid)

    def reboot(self, sid):
        self._do("reboot", sid)

    def delete(self, sid):
        self._do("delete", sid)


@pytest.fixture
def env(monkeypatch):
    creds = ClusterCredentials.generate(OWNER.prefix)
    spec = GaleraClusterSpec.model_validate({
        "cloud": {"secretName": "t", "cloudName": "demo"}, "flavor": "f", "image": "i",
        "network": {"cidr": "10.70.1.0/24"}})
    intent = GALERA.intent(OWNER, spec, secrets=Secrets(creds, ROOT, PROBE),
                           status={"writer": N[0], "bootstrapped": True})
    probes = []
    monkeypatch.setattr(galera_probe, "ensure_accounts", lambda st, i, w: None)
    monkeypatch.setattr(galera_probe, "write_probe",
                        lambda ep, pw, owner=None: probes.append(ep))
    galera_step.forget(OWNER.uid)

    def run(statuses, servers=None, nova=None, members_online=True):
        agents = {n: Agent(s) for n, s in zip(N, statuses, strict=True)}
        st = galera_step._registry.setdefault(OWNER.uid, galera_step.ClusterState(
            fleet=AgentFleet({}), writer=intent.writer_hint, bootstrapped=True))
        st.fleet.clients = agents
        st.addresses = {n: f"10.70.1.{10 + i}" for i, n in enumerate(N)}
        obs = ObservedGalera()
        if members_online:
            obs.lb.pools[3306] = CloudObject(Kind.POOL, "pool", attrs={
                "operating_status": "ONLINE"})
            obs.lb.members[3306] = [CloudObject(Kind.MEMBER, f"m{i}", attrs={
                "address": f"10.70.1.{10 + i}"}) for i in range(3)]
        nodes = [{"name": n, "server": f"srv-{i}", "address": f"10.70.1.{10 + i}"}
                 for i, n in enumerate(N)]
        ctx = Converged(OWNER, intent, obs, KindStatus(resources={
            "nodes": nodes, "endpoint": "10.70.1.5:3306"}))
        servers = servers or {n: "ACTIVE" for n in N}
        result = galera_step._pass(ctx, st, servers,
                                   {n: f"srv-{i}" for i, n in enumerate(N) if servers.get(n)},
                                   {n: True for n in N}, nova or Nova())
        return result, st, agents

    return run, probes


def test_healthy_cluster_is_ready_only_after_a_write_through_the_endpoint(env):
    run, probes = env
    result, _st, _ = run([synced(n) for n in N])
    assert result.done and probes == ["10.70.1.5:3306"]
    assert "takes writes" in result.ready_message
    assert result.status["clusterSize"] == 3 and result.status["writer"] == N[0]
    assert all("seqno" not in n for n in result.status["nodes"])  # stable while healthy
    assert not result.events


def test_a_new_cluster_without_a_writer_yet_becomes_ready(env):
    run, _probes = env
    galera_step._registry[OWNER.uid] = galera_step.ClusterState(fleet=AgentFleet({}),
                                                                bootstrapped=True)
    result, st, _ = run([synced(n) for n in N])
    assert result.done and st.writer == N[0] and not result.events


def test_a_failed_probe_is_not_ready(env, monkeypatch):
    run, _ = env
    monkeypatch.setattr(galera_probe, "write_probe",
                        lambda ep, pw, owner=None: "MySQL error 1047: not ready")
    result, _, _ = run([synced(n) for n in N])
    assert not result.done and result.reason == Reason.NOT_WRITABLE
    assert "1047" in result.message


def test_writer_member_not_online_is_not_ready(env):
    run, probes = env
    result, _, _ = run([synced(n) for n in N], members_online=False)
    assert not result.done and result.reason == Reason.WAITING_FOR_HEALTH and not probes


def test_dead_writer_moves_the_writer_and_says_why(env):
    run, _ = env
    result, st, agents = run([stopped(100, desired="member"), synced(N[1], 2),
                              synced(N[2], 2)])
    assert st.writer == N[1]
    assert not result.done and result.reason == Reason.RECOVERING
    (event,) = [e for e in result.events if e[0] == "SetWriter"]
    assert N[1] in event[1] and "Evidence:" in event[1]
    steps = result.status["recovery"]["steps"]
    assert steps[-1]["action"] == "SetWriter" and steps[-1]["node"] == N[1]
    assert result.status["recovery"]["phase"] == "Repairing"
    # the stopped node's agent rejoins by itself: the operator does not start it
    assert not agents[N[0]].calls


def test_shutoff_server_is_started_once_per_cooldown(env):
    run, _ = env
    nova = Nova()
    servers = {N[0]: "ACTIVE", N[1]: "ACTIVE", N[2]: "SHUTOFF"}
    statuses = [synced(N[0], 2), synced(N[1], 2), None]
    run(statuses, servers, nova)
    run(statuses, servers, nova)
    assert nova.calls == [("start", "srv-2")]


def test_nova_conflict_means_under_way(env):
    run, _ = env
    servers = {N[0]: "ACTIVE", N[1]: "ACTIVE", N[2]: "SHUTOFF"}
    result, st, _ = run([synced(N[0], 2), synced(N[1], 2), None], servers,
                        Nova(refuse=ErrorCode.CONFLICT))
    assert not [e for e in result.events if e[0] == "StartServer"]
    assert st.nova_done[N[2]][0] == "StartServer"


def test_gone_server_is_deleted_for_replacement(env):
    run, _ = env
    nova = Nova()
    servers = {N[0]: "ACTIVE", N[1]: "ACTIVE", N[2]: "ERROR"}
    run([synced(N[0], 2), synced(N[1], 2), None], servers, nova)
    assert nova.calls == [("reboot", "srv-2")]


def test_full_outage_bootstraps_the_most_advanced_and_records_it(env):
    run, _ = env
    result, st, agents = run([stopped(7, "member"), stopped(9, "member"),
                              stopped(8, "member")])
    assert agents[N[1]].calls[0][0] == "start_bootstrap"
    assert agents[N[1]].calls[0][1][:2] == (U, 9)
    assert st.recovery["bootstrapNode"] == N[1] and st.bootstrapped
    assert [s["action"] for s in result.status["recovery"]["steps"]] == ["BootstrapFrom"]
    assert {n["name"]: n.get("seqno") for n in result.status["nodes"]} == {
        N[0]: 7, N[1]: 9, N[2]: 8}


def test_incomplete_evidence_asks_for_a_person_naming_the_escape_hatch(env):
    run, _ = env
    servers = {N[0]: "ACTIVE", N[1]: "ACTIVE", N[2]: None}
    galera_step.forget(OWNER.uid)
    result, _, agents = run([stopped(7, "member"), stopped(9, "member"), None], servers)
    # node 2's server is gone with its volume intact: it is replaced first (no bootstrap)
    assert not any(c[0].startswith("start") for a in agents.values() for c in a.calls)
    assert result.reason in (Reason.RECOVERING, Reason.NEEDS_HUMAN)


def test_two_histories_need_a_human(env):
    run, _ = env
    other = synced(N[2], 1)
    other["wsrep"]["cluster_state_uuid"] = "11111111-f00d-11f1-9a8e-2a4a1c0e5f11"
    result, _, _ = run([synced(N[0], 2), synced(N[1], 2), other])
    assert result.reason == Reason.NEEDS_HUMAN and "split brain" in result.message
    assert result.status["recovery"]["phase"] == "NeedsHuman"


def test_every_agent_silent_on_active_servers_asks_for_a_person(env):
    run, _ = env
    nova = Nova()
    result, _, _ = run([None, None, None], nova=nova)
    assert result.reason == Reason.NEEDS_HUMAN
    assert "spec.recovery.forceBootstrapNode" in result.message
    assert not nova.calls


def test_no_password_in_status_or_events(env):
    run, _ = env
    for statuses in ([synced(n) for n in N],
                     [stopped(100, desired="member"), synced(N[1], 2), synced(N[2], 2)]):
        result, _, _ = run(statuses)
        text = json.dumps(result.status) + json.dumps(result.events) + result.message
        assert ROOT not in text and PROBE not in text


def _nulls(value, path=""):
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nulls(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, f"{path}[{i}]")]
    return []


def test_the_status_holds_no_null_the_apiserver_would_drop(env):
    """A null the stored status does not hold makes a patch on every pass."""
    run, _ = env
    for statuses in ([stopped(100, desired="member"), synced(N[1], 2), synced(N[2], 2)],
                     [stopped(7, "member"), stopped(9, "member"), stopped(8, "member")],
                     [synced(n) for n in N]):
        result, _, _ = run(statuses)
        assert _nulls(result.status) == [], _nulls(result.status)
