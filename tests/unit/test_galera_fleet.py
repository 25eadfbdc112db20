"""``AgentFleet``: the operator's edge towards the agents (fake clients, fake clock)."""

from __future__ import annotations

import pytest

from flexinfra.galera import decide as d
from flexinfra.galera.client import AgentUnreachable
from flexinfra.galera.fleet import AgentFleet

U = "0c4a3d58-f00d-11f1-9a8e-2a4a1c0e5f11"


class FakeClient:
    def __init__(self, status=None):
        self._status = status
        self.calls = []

    def status(self):
        if self._status is None:
            raise AgentUnreachable("down")
        return self._status

    def __getattr__(self, name):
        def call(*args, **kw):
            self.calls.append((name, args, kw))
            return {"ok": name}
        return call


STOPPED = {"desired": "member", "mariadbd": {"running": False},
           "grastate": {"uuid": U, "seqno": -1, "safe_to_bootstrap": False},
           "recovered": {"uuid": U, "seqno": 7, "at": 1.0}, "datadir_initialised": True}


def test_observe_times_silence_and_maps_statuses():
    now = [100.0]
    clients = {"db-0": FakeClient(STOPPED), "db-1": FakeClient(None)}
    fleet = AgentFleet(clients, clock=lambda: now[0])
    policy = d.Policy(node_failure_timeout=30)
    obs = fleet.observe({"db-0": d.ACTIVE, "db-1": d.SHUTOFF}, writer=None, policy=policy)
    n0, n1 = obs.nodes
    assert n0.agent_reachable and n0.recovered == d.Position(U, 7) and n0.agent_rejoins
    assert not n1.agent_reachable and n1.agent_unreachable_for == 0.0
    now[0] = 145.0
    obs = fleet.observe({"db-0": d.ACTIVE, "db-1": None}, writer=None, policy=policy,
                        volumes_intact={"db-1": True})
    assert obs.nodes[1].agent_unreachable_for == 45.0 and obs.nodes[1].server_status is None
    assert obs.nodes[1].volume_intact is True
    clients["db-1"]._status = STOPPED          # back: the silence is forgotten
    fleet.observe({}, writer=None, policy=policy)
    clients["db-1"]._status = None
    now[0] = 150.0
    assert fleet.observe({}, writer=None, policy=policy).nodes[1].agent_unreachable_for == 0


def test_execute_agent_actions_and_refuse_the_others():
    clients = {f"db-{i}": FakeClient(STOPPED) for i in range(3)}
    fleet = AgentFleet(clients)
    out = fleet.execute(d.RecoverPositions(nodes=("db-0", "db-2"), reason="r"))
    assert set(out) == {"db-0", "db-2"} and not clients["db-1"].calls
    fleet.execute(d.BootstrapFrom(node="db-2", position=d.Position(U, 7),
                                  set_safe_to_bootstrap=True, reason="r"), wait=5)
    assert clients["db-2"].calls[-1] == ("start_bootstrap", (U, 7, True), {"wait": 5})
    fleet.execute(d.PcBootstrap(node="db-1", reason="r"))
    fleet.execute(d.StartJoiner(node="db-1", reason="r"))
    fleet.execute(d.StopNode(node="db-1", reason="r"))
    fleet.execute(d.BootstrapNewCluster(node="db-0", reason="r"))
    assert [c[0] for c in clients["db-1"].calls] == ["pc_bootstrap", "start_joiner", "stop"]
    for action in (d.SetWriter(node="db-0", reason="r"), d.StartServer(node="db-0", reason="r"),
                   d.Wait(reason="r")):
        with pytest.raises(ValueError):
            fleet.execute(action)
