"""``flexinfra.galera.decide``: every rule, and properties over many random clusters."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flexinfra.galera.decide import (
    ACTIVE,
    BOOTSTRAPS,
    ERROR,
    FORCE_FIELD,
    SHUTOFF,
    ZERO_UUID,
    BootstrapFrom,
    BootstrapNewCluster,
    ClusterObs,
    GraState,
    NeedsHuman,
    NodeObs,
    PcBootstrap,
    Policy,
    Position,
    RebootServer,
    RecoverPositions,
    ReplaceServer,
    SetWriter,
    StartJoiner,
    StartServer,
    StopNode,
    Wait,
    decide,
)

U = "5f0e2c1a-0000-4000-8000-000000000001"
U2 = "5f0e2c1a-0000-4000-8000-000000000002"


def primary(name, state="Synced", size=3, lc=100, uuid=U, ready=True):
    return NodeObs(name=name, agent_reachable=True, mariadbd_running=True, wsrep_state=state,
                   cluster_status="Primary", cluster_size=size, wsrep_ready=ready,
                   cluster_state_uuid=uuid, last_committed=lc, cluster_status_for=60,
                   grastate=GraState(uuid, -1, False), datadir_initialised=True)


def nonprimary(name, lc=100, for_=30.0, uuid=U):
    return NodeObs(name=name, agent_reachable=True, mariadbd_running=True,
                   wsrep_state="Initialized", cluster_status="non-Primary", cluster_size=1,
                   wsrep_ready=False, cluster_state_uuid=uuid, last_committed=lc,
                   cluster_status_for=for_, grastate=GraState(uuid, -1, False),
                   datadir_initialised=True)


def stopped(name, seqno=-1, safe=False, recovered=None, uuid=U):
    return NodeObs(name=name, agent_reachable=True, mariadbd_running=False,
                   grastate=GraState(uuid, seqno, safe), datadir_initialised=True,
                   recovered=Position(uuid, recovered) if recovered is not None else None)


def down(name, status=SHUTOFF, volume_intact=None):
    return NodeObs.unreachable(name, status, 100.0, volume_intact=volume_intact)


def silent(name, for_):
    return NodeObs.unreachable(name, ACTIVE, for_)


def run(*nodes, writer="db-0", **kw):
    policy = kw.pop("policy", Policy(node_failure_timeout=30, non_primary_grace=5))
    return decide(ClusterObs(nodes=tuple(nodes), writer=writer, policy=policy, **kw))


def kinds(decision):
    return [(type(a).__name__, a.node) for a in decision.actions]


# --- rule 1: a Primary component exists --------------------------------------------------------

def test_healthy_cluster_waits():
    dec = run(primary("db-0"), primary("db-1"), primary("db-2"))
    assert kinds(dec) == [("Wait", None)]
    assert dec.actions[0].reason.startswith("healthy")


def test_joining_node_is_waited_for_not_called_healthy():
    joining = NodeObs(name="db-2", agent_reachable=True, mariadbd_running=True,
                      wsrep_state="Joining", cluster_status=None)
    dec = run(primary("db-0"), primary("db-1"), joining)
    assert kinds(dec) == [("Wait", None)]
    assert "db-2" in dec.actions[0].reason and "healthy" not in dec.actions[0].reason


def test_writer_moves_off_a_donor():
    dec = run(primary("db-0", state="Donor/Desynced"), primary("db-1"), primary("db-2"))
    assert kinds(dec) == [("SetWriter", "db-1")]


def test_writer_moves_first_then_the_dead_writer_is_repaired():
    dec = run(down("db-0", SHUTOFF), primary("db-1", size=2), primary("db-2", size=2))
    assert kinds(dec) == [("SetWriter", "db-1"), ("StartServer", "db-0")]


def test_no_synced_node_keeps_the_writer_and_repairs():
    dec = run(primary("db-0", state="Donor/Desynced", size=2), down("db-1"),
              primary("db-2", state="Joined", size=2), writer="db-1")
    assert kinds(dec) == [("StartServer", "db-1")]


@pytest.mark.parametrize(("node", "expected"), [
    (down("db-2", ERROR), ("RebootServer", "db-2")),
    (down("db-2", None, volume_intact=True), ("ReplaceServer", "db-2")),
    (down("db-2", None, volume_intact=False), ("ReplaceServer", "db-2")),
    (down("db-2", None, volume_intact=None), ("Wait", "db-2")),
    (stopped("db-2"), ("StartJoiner", "db-2")),
    (silent("db-2", 31), ("RebootServer", "db-2")),
])
def test_repairs_outside_the_primary_component(node, expected):
    dec = run(primary("db-0", size=2), primary("db-1", size=2), node)
    assert kinds(dec) == [expected]
    if expected[0] == "ReplaceServer":
        assert dec.actions[0].keep_volume is node.volume_intact


def test_stopped_node_whose_agent_rejoins_is_left_to_it():
    node = NodeObs(**{**stopped("db-2").__dict__, "agent_rejoins": True})
    dec = run(primary("db-0", size=2), primary("db-1", size=2), node)
    assert kinds(dec) == [("Wait", "db-2")]


def test_suspect_agent_is_given_time():
    dec = run(primary("db-0", size=2), primary("db-1", size=2), silent("db-2", 5))
    assert kinds(dec) == [("Wait", None)]


def test_silent_node_still_in_the_primary_view_is_not_rebooted():
    # the view has 3 members and only 2 answer: the silent one may be a healthy member the
    # operator cannot reach
    dec = run(primary("db-0", size=3), primary("db-1", size=3), silent("db-2", 300))
    assert kinds(dec) == [("Wait", "db-2")]


def test_two_primary_histories_need_a_human():
    dec = run(primary("db-0", uuid=U), primary("db-1", uuid=U2), stopped("db-2"))
    assert kinds(dec) == [("NeedsHuman", None)]


# --- rule 2/3: survivors ------------------------------------------------------------------------

def test_survivor_first_recovers_the_stopped_positions():
    dec = run(nonprimary("db-0", lc=120), stopped("db-1"), stopped("db-2"))
    assert kinds(dec) == [("RecoverPositions", None)]
    assert dec.actions[0].nodes == ("db-1", "db-2")


def test_survivor_pc_bootstrap_when_it_is_the_most_advanced():
    dec = run(nonprimary("db-0", lc=120), stopped("db-1", recovered=118),
              stopped("db-2", recovered=120))
    assert kinds(dec) == [("PcBootstrap", "db-0")]
    assert set(dec.actions[0].evidence) == {"db-0", "db-1", "db-2"}


def test_survivor_is_given_a_grace_before_pc_bootstrap():
    dec = run(nonprimary("db-0", lc=120, for_=1.0), stopped("db-1", recovered=1),
              stopped("db-2", recovered=1))
    assert kinds(dec) == [("Wait", None)]


def test_most_advanced_of_two_survivors():
    dec = run(nonprimary("db-0", lc=90), nonprimary("db-1", lc=95), stopped("db-2", seqno=80))
    assert kinds(dec) == [("PcBootstrap", "db-1")]


def test_stale_survivor_is_stopped_when_a_stopped_node_is_ahead():
    # db-0 was cut off before db-1/db-2 went on committing, then crashed
    dec = run(nonprimary("db-0", lc=100), stopped("db-1", recovered=150),
              stopped("db-2", recovered=149))
    assert kinds(dec) == [("StopNode", "db-0")]


def test_survivor_waits_for_down_servers_to_report():
    dec = run(nonprimary("db-0"), down("db-1", SHUTOFF), down("db-2", ERROR))
    assert kinds(dec) == [("StartServer", "db-1"), ("RebootServer", "db-2"), ("Wait", None)]


def test_survivor_with_a_node_whose_volume_is_lost_needs_a_human():
    dec = run(nonprimary("db-0"), stopped("db-1", recovered=10),
              down("db-2", None, volume_intact=False))
    assert kinds(dec) == [("NeedsHuman", None)]
    assert FORCE_FIELD in dec.actions[0].reason


@pytest.mark.parametrize("other", [silent("db-2", 3),
                                   NodeObs(name="db-2", agent_reachable=True,
                                           mariadbd_running=True)])
def test_survivor_waits_for_unconfirmed_nodes(other):
    dec = run(nonprimary("db-0"), stopped("db-1", recovered=10), other)
    assert kinds(dec) == [("Wait", None)]


def test_survivor_reboots_a_lost_node_but_does_not_bootstrap():
    dec = run(nonprimary("db-0"), stopped("db-1", recovered=10), silent("db-2", 60))
    assert kinds(dec) == [("RebootServer", "db-2"), ("Wait", None)]


# --- rule 4: full outage ------------------------------------------------------------------------

def test_full_outage_recovers_every_position_first():
    dec = run(stopped("db-0"), stopped("db-1"), stopped("db-2"))
    assert kinds(dec) == [("RecoverPositions", None)]
    assert dec.actions[0].nodes == ("db-0", "db-1", "db-2")


def test_full_outage_bootstraps_the_highest_seqno():
    dec = run(stopped("db-0", recovered=10), stopped("db-1", recovered=12),
              stopped("db-2", recovered=11))
    [a] = dec.actions
    assert isinstance(a, BootstrapFrom) and a.node == "db-1"
    assert a.position == Position(U, 12) and a.set_safe_to_bootstrap


def test_full_outage_clean_grastate_needs_no_recovery():
    dec = run(stopped("db-0", seqno=10), stopped("db-1", seqno=12, safe=True),
              stopped("db-2", seqno=11))
    [a] = dec.actions
    assert isinstance(a, BootstrapFrom) and a.node == "db-1" and not a.set_safe_to_bootstrap


def test_full_outage_tie_prefers_safe_to_bootstrap():
    dec = run(stopped("db-0", seqno=12), stopped("db-1", seqno=12),
              stopped("db-2", seqno=12, safe=True))
    [a] = dec.actions
    assert a.node == "db-2" and not a.set_safe_to_bootstrap


def test_full_outage_tie_without_safe_flag_takes_the_first_name():
    dec = run(stopped("db-2", recovered=12), stopped("db-1", recovered=12),
              stopped("db-0", recovered=11))
    [a] = dec.actions
    assert a.node == "db-1" and a.set_safe_to_bootstrap and "tied" in a.reason


def test_full_outage_empty_node_is_ignored():
    empty = NodeObs(name="db-2", agent_reachable=True, mariadbd_running=False,
                    datadir_initialised=False)
    dec = run(stopped("db-0", recovered=10), stopped("db-1", recovered=9), empty)
    assert kinds(dec) == [("BootstrapFrom", "db-0")]


def test_full_outage_different_histories_need_a_human():
    dec = run(stopped("db-0", recovered=10), stopped("db-1", recovered=50, uuid=U2),
              stopped("db-2", recovered=9))
    assert kinds(dec) == [("NeedsHuman", None)]


def test_full_outage_starts_servers_before_anything():
    dec = run(stopped("db-0", recovered=10), down("db-1"), down("db-2", None, True))
    assert kinds(dec) == [("StartServer", "db-1"), ("ReplaceServer", "db-2"), ("Wait", None)]


def test_full_outage_with_a_lost_volume_needs_a_human():
    dec = run(stopped("db-0", recovered=10), stopped("db-1", recovered=12),
              down("db-2", None, volume_intact=False))
    assert kinds(dec) == [("NeedsHuman", None)]
    assert FORCE_FIELD in dec.actions[0].reason


def test_new_cluster_bootstraps_the_first_node():
    empty = [NodeObs(name=f"db-{i}", agent_reachable=True, mariadbd_running=False,
                     datadir_initialised=False) for i in range(3)]
    assert kinds(run(*empty, writer=None, created=False)) == [("BootstrapNewCluster", "db-0")]
    assert kinds(run(*empty, writer=None, created=True)) == [("NeedsHuman", None)]


def test_no_agent_answers_needs_a_human_and_restarts_nothing():
    dec = run(silent("db-0", 300), silent("db-1", 300), silent("db-2", 300))
    assert kinds(dec) == [("NeedsHuman", None)]


def test_full_power_outage_powers_the_servers_on_and_decides_nothing_else():
    """Every server SHUTOFF, no agent answers: Nova's word suffices to start them; no
    bootstrap, no recovery until their agents report."""
    dec = run(down("db-0"), down("db-1"), down("db-2", "ERROR"))
    assert kinds(dec) == [("StartServer", "db-0"), ("StartServer", "db-1"),
                          ("RebootServer", "db-2"), ("Wait", None)]


def test_silent_agents_beside_down_servers_only_start_the_down_ones():
    dec = run(down("db-0"), silent("db-1", 300), silent("db-2", 5))
    assert kinds(dec) == [("StartServer", "db-0"), ("Wait", None)]


# --- bootstraps in flight and the escape hatch --------------------------------------------------

def test_bootstrap_in_flight_is_waited_for():
    starting = NodeObs(name="db-1", agent_reachable=True, mariadbd_running=True)
    dec = run(stopped("db-0", recovered=10), starting, stopped("db-2", recovered=9),
              bootstrap_in_flight="db-1")
    assert kinds(dec) == [("Wait", "db-1")]


def test_failed_bootstrap_is_not_retried_elsewhere():
    dec = run(stopped("db-0", recovered=10), stopped("db-1", recovered=12),
              stopped("db-2", recovered=9), bootstrap_in_flight="db-1")
    assert kinds(dec) == [("NeedsHuman", None)]


def force(name):
    return Policy(node_failure_timeout=30, non_primary_grace=5, force_bootstrap_node=name)


def test_force_bootstraps_the_named_node_even_if_behind():
    dec = run(stopped("db-0", recovered=10), stopped("db-1", recovered=12),
              down("db-2", None, False), policy=force("db-0"))
    [a] = dec.actions
    assert isinstance(a, BootstrapFrom) and a.node == "db-0" and a.set_safe_to_bootstrap
    assert FORCE_FIELD in a.reason


def test_force_never_applies_while_a_primary_exists():
    dec = run(primary("db-1", size=2), primary("db-2", size=2), stopped("db-0"),
              policy=force("db-0"))
    assert not dec.of(BOOTSTRAPS[0]) and not dec.of(PcBootstrap)
    assert kinds(dec) == [("SetWriter", "db-1"), ("StartJoiner", "db-0")]


@pytest.mark.parametrize(("nodes", "expected"), [
    ((nonprimary("db-0"), down("db-1"), down("db-2")), [("PcBootstrap", "db-0")]),
    ((stopped("db-0"), down("db-1"), down("db-2")), [("RecoverPositions", None)]),
    ((stopped("db-0", recovered=3), nonprimary("db-1"), down("db-2")),
     [("StopNode", "db-1")]),
    ((silent("db-0", 5), stopped("db-1"), down("db-2")), [("NeedsHuman", None)]),
])
def test_force_paths(nodes, expected):
    assert kinds(run(*nodes, policy=force("db-0"))) == expected


def test_force_naming_no_node():
    assert kinds(run(stopped("db-0"), policy=force("db-9"))) == [("NeedsHuman", None)]


# --- mapping the agent's status -----------------------------------------------------------------

def test_from_agent_status():
    status = {
        "mariadbd": {"running": True, "pid": 42},
        "grastate": {"uuid": U, "seqno": -1, "safe_to_bootstrap": False},
        "recovered": None, "datadir_initialised": True,
        "wsrep": {"local_state_comment": "Synced", "cluster_status": "Primary",
                  "cluster_size": 3, "ready": True, "last_committed": 7,
                  "cluster_state_uuid": U, "cluster_status_since": 100.0, "at": 112.5},
    }
    n = NodeObs.from_agent_status("db-0", ACTIVE, status, volume_intact=True)
    assert n.cluster_status == "Primary" and n.cluster_status_for == 12.5
    assert n.last_committed == 7 and n.grastate == GraState(U, -1, False)
    assert n.volume_intact is True and n.agent_reachable and not n.agent_rejoins
    down_member = {**status, "desired": "member", "mariadbd": {"running": False}}
    assert NodeObs.from_agent_status("db-0", ACTIVE, down_member).agent_rejoins


# --- properties ---------------------------------------------------------------------------------

UUIDS = [U, U2, ZERO_UUID]
STATES = [None, "Synced", "Donor/Desynced", "Joining", "Joined", "Initialized"]
STATUSES = [None, "Primary", "non-Primary", "Disconnected"]
SERVERS = [ACTIVE, SHUTOFF, ERROR, None, "BUILD", "REBOOT"]


def _node(r: random.Random, name: str) -> NodeObs:
    reachable = r.random() < 0.75
    uuid = r.choice([U, U, U, U2, ZERO_UUID])
    gs = None if r.random() < 0.15 else GraState(uuid, r.choice([-1, -1, r.randint(0, 30)]),
                                                 r.random() < 0.3)
    return NodeObs(
        name=name, server_status=r.choice(SERVERS), agent_reachable=reachable,
        agent_unreachable_for=0.0 if reachable else r.choice([1.0, 10.0, 29.9, 30.0, 500.0]),
        mariadbd_running=r.choice([True, False, None]) if reachable else None,
        wsrep_state=r.choice(STATES), cluster_status=r.choice(STATUSES),
        cluster_status_for=r.choice([None, 0.0, 3.0, 10.0]),
        cluster_size=r.choice([None, 1, 2, 3]), wsrep_ready=r.choice([None, True, False]),
        cluster_state_uuid=r.choice([None, uuid]), last_committed=r.choice(
            [None, -1, r.randint(0, 30)]),
        grastate=gs,
        recovered=None if r.random() < 0.5 else Position(uuid, r.randint(-1, 30)),
        datadir_initialised=r.choice([True, True, False, None]),
        volume_intact=r.choice([None, True, False]),
    )


def _cluster(r: random.Random, with_force: bool) -> ClusterObs:
    size = r.choice([3, 3, 5])
    nodes = tuple(_node(r, f"db-{i}") for i in range(size))
    names = [n.name for n in nodes]
    return ClusterObs(
        nodes=nodes, writer=r.choice([None, *names]),
        policy=Policy(node_failure_timeout=30, non_primary_grace=5,
                      force_bootstrap_node=r.choice([None, *names]) if with_force else None),
        bootstrap_in_flight=r.choice([None, None, None, *names]),
        created=r.random() < 0.8,
    )


def _known_seqno(n: NodeObs) -> int | None:
    """Written independently of decide.known_position: what a person would take as proof.
    A position under the all-zero UUID is no history at all (-1)."""
    def seq(uuid, seqno):
        return -1 if uuid == ZERO_UUID else seqno

    if (n.agent_reachable and n.mariadbd_running and n.cluster_status is not None
            and n.cluster_state_uuid and n.last_committed is not None):
        return seq(n.cluster_state_uuid, n.last_committed)   # live beats any older proof
    if n.recovered is not None:
        return seq(n.recovered.uuid, n.recovered.seqno)
    if n.grastate is not None and n.grastate.seqno >= 0:
        return seq(n.grastate.uuid, n.grastate.seqno)
    return None


def _is_primary(n: NodeObs) -> bool:
    return bool(n.agent_reachable and n.mariadbd_running and n.cluster_status == "Primary")


def check_invariants(obs: ClusterObs) -> None:
    dec = decide(obs)
    assert dec.actions, "a decision always has an action"
    for a in dec.actions:
        assert a.reason
    boots = [a for a in dec.actions if isinstance(a, BOOTSTRAPS)]
    assert len(boots) <= 1, f"two bootstraps: {dec.reason}"
    if not boots:
        return
    [b] = boots
    by_name = {n.name: n for n in obs.nodes}
    target = by_name[b.node]
    assert not any(_is_primary(n) for n in obs.nodes), f"bootstrap beside a Primary: {b}"
    assert obs.bootstrap_in_flight is None, "bootstrap while another is in flight"
    assert set(b.evidence) == set(by_name), "a bootstrap records every node's evidence"
    if isinstance(b, PcBootstrap):
        assert target.agent_reachable and target.mariadbd_running
        assert target.cluster_status in ("non-Primary", "Disconnected")
    if isinstance(b, BootstrapFrom):
        assert target.agent_reachable and not target.mariadbd_running
        assert b.position.seqno == _known_seqno(target)
    if isinstance(b, BootstrapNewCluster):
        assert not obs.created
    if obs.policy.force_bootstrap_node:
        assert b.node == obs.policy.force_bootstrap_node
        return
    # evidence complete: every other node answered, confirmed not Primary, position known
    mine = b.position.seqno if isinstance(b, BootstrapFrom) else _known_seqno(target)
    for n in obs.nodes:
        if n is target:
            continue
        assert n.agent_reachable, f"bootstrap of {b.node} while {n.name} is silent"
        assert not n.mariadbd_running or n.cluster_status in ("non-Primary", "Disconnected")
        other = _known_seqno(n)
        if n.datadir_initialised is not False:
            assert other is not None, f"{n.name}'s position unknown at {b.describe()}"
        if other is not None and mine is not None:
            assert mine >= other, f"bootstrap of {b.node} at {mine} < {n.name} at {other}"


def _outage_cluster(r: random.Random) -> ClusterObs:
    """Consistent clusters without a Primary component (where bootstraps happen): every node
    survived (running non-Primary), stopped (position recovered or not), or is down/silent."""
    nodes = []
    for i in range(r.choice([3, 3, 5])):
        name, seqno = f"db-{i}", r.randint(90, 100)
        kind = r.choices(["nonprimary", "stopped", "stopped-recovered", "down", "silent",
                          "empty"], weights=[4, 2, 6, 1, 1, 1])[0]
        if kind == "nonprimary":
            nodes.append(nonprimary(name, lc=seqno, for_=r.choice([1.0, 10.0])))
        elif kind == "stopped":
            nodes.append(stopped(name, seqno=r.choice([-1, seqno]), safe=r.random() < 0.3))
        elif kind == "stopped-recovered":
            nodes.append(stopped(name, recovered=seqno, safe=r.random() < 0.2))
        elif kind == "down":
            nodes.append(down(name, r.choice([SHUTOFF, ERROR, None]),
                              volume_intact=r.choice([True, False, None])))
        elif kind == "silent":
            nodes.append(silent(name, r.choice([3.0, 60.0])))
        else:
            nodes.append(NodeObs(name=name, agent_reachable=True, mariadbd_running=False,
                                 datadir_initialised=False))
    return ClusterObs(nodes=tuple(nodes), writer="db-0",
                      policy=Policy(node_failure_timeout=30, non_primary_grace=5))


def test_invariants_over_random_clusters():
    """Hand-rolled enumeration, fixed seed (reproducible): 20 000 arbitrary clusters (any mix
    of fields, a third with forceBootstrapNode) and 20 000 consistent outages."""
    r = random.Random(9)
    boots = {"BootstrapFrom": 0, "PcBootstrap": 0}
    for i in range(20_000):
        for obs in (_cluster(r, with_force=i % 3 == 0), _outage_cluster(r)):
            check_invariants(obs)
            for a in decide(obs).actions:
                if not obs.policy.force_bootstrap_node and type(a).__name__ in boots:
                    boots[type(a).__name__] += 1
    assert min(boots.values()) > 300, f"the generators should reach bootstraps: {boots}"


node_st = st.builds(
    NodeObs,
    name=st.just("x"),
    server_status=st.sampled_from(SERVERS),
    agent_reachable=st.booleans(),
    agent_unreachable_for=st.sampled_from([0.0, 5.0, 30.0, 600.0]),
    mariadbd_running=st.sampled_from([True, False, None]),
    wsrep_state=st.sampled_from(STATES),
    cluster_status=st.sampled_from(STATUSES),
    cluster_status_for=st.sampled_from([None, 0.0, 4.9, 5.0, 60.0]),
    cluster_size=st.sampled_from([None, 1, 2, 3]),
    wsrep_ready=st.sampled_from([None, True, False]),
    cluster_state_uuid=st.sampled_from([None, U, U2]),
    last_committed=st.one_of(st.none(), st.integers(-1, 20)),
    grastate=st.one_of(st.none(), st.builds(GraState, st.sampled_from(UUIDS),
                                            st.integers(-1, 20), st.booleans())),
    recovered=st.one_of(st.none(), st.builds(Position, st.sampled_from(UUIDS),
                                             st.integers(-1, 20))),
    datadir_initialised=st.sampled_from([True, False, None]),
    volume_intact=st.sampled_from([True, False, None]),
)


@st.composite
def clusters(draw):
    raw = draw(st.lists(node_st, min_size=3, max_size=5))
    nodes = tuple(NodeObs(**{**n.__dict__, "name": f"db-{i}"}) for i, n in enumerate(raw))
    names = [n.name for n in nodes]
    return ClusterObs(
        nodes=nodes, writer=draw(st.sampled_from([None, *names])),
        policy=Policy(node_failure_timeout=30, non_primary_grace=5,
                      force_bootstrap_node=draw(st.sampled_from([None, None, *names]))),
        bootstrap_in_flight=draw(st.sampled_from([None, None, None, *names])),
        created=draw(st.booleans()),
    )


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters())
def test_invariants_hypothesis(obs):
    check_invariants(obs)


def test_action_types_are_distinct_and_named():
    names = {cls.kind for cls in (Wait, SetWriter, StartServer, RebootServer, ReplaceServer,
                                  StartJoiner, StopNode, RecoverPositions, BootstrapFrom,
                                  BootstrapNewCluster, PcBootstrap, NeedsHuman)}
    assert len(names) == 12
