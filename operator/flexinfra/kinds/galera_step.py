"""The Galera step: after the cloud part of a GaleraCluster converged, observe every node's
agent, ``decide``, and carry the decision out. Patroni's habit: every action is logged and
posted as an Event with its reason and every node's evidence, and recorded in
``status.recovery``; an action that could lose data is only ever decided on complete
evidence (``galera.decide``), and when evidence is missing the cluster says so and names
``spec.recovery.forceBootstrapNode``.

Who does what:

* agent actions (recover, bootstrap, pc.bootstrap, start a joiner, stop) go through the
  cluster's ``AgentFleet``, kept across passes in ``registry`` so that its silence timers
  (how long an agent has not answered: ``nodeFailureTimeout``) survive from pass to pass;
* ``StartServer`` / ``RebootServer`` are Nova calls; ``ReplaceServer`` deletes the server
  and the fleet planner re-creates it on the same port (same address) and, when intact, the
  same volume (IST; a lost volume gets a new one: SST);
* ``SetWriter`` changes the writer kept here; the next pass's plan turns it into member
  option updates (the new writer normal, the others ``backup``). The health monitor has
  already moved connections by then (the old writer's agent answers 503);
* ``NeedsHuman`` makes the cluster not Ready with reason NeedsHuman and the decision's
  words, which name the escape hatch.

Ready means the database takes writes: every node Synced in one Primary component of
``replicas`` nodes, the writer's load balancer member ONLINE, and a probe row written
through the writer endpoint (as the probe user, over the same network path as a client).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from flexinfra.api.conditions import Reason, now_rfc3339
from flexinfra.cloud.adapters import adapter
from flexinfra.core.errors import ErrorCode, FlexinfraError
from flexinfra.core.kinds import Kind
from flexinfra.galera.client import AgentClient, AgentError, AgentUnreachable, client_context
from flexinfra.galera.decide import Decision, decide
from flexinfra.galera.fleet import AGENT_ACTIONS, AgentFleet
from flexinfra.galera.model import (
    BOOTSTRAPS,
    Action,
    ClusterObs,
    NeedsHuman,
    RebootServer,
    ReplaceServer,
    SetWriter,
    StartServer,
    Wait,
)
from flexinfra.metrics import (
    GALERA_ACTIONS,
    GALERA_CLUSTER_SIZE,
    GALERA_FAILOVERS,
    GALERA_NODE_SYNCED,
    GALERA_RECOVERY_SECONDS,
)
from flexinfra.planning.galera import HEALTH_PORT, volumes_intact
from flexinfra.planning.load_balancer import member_health
from flexinfra.planning.servers import server_views
from flexinfra.reconcile.driver import Converged, StepResult

log = logging.getLogger(__name__)

#: agents' status calls: a dead node must not hold a pass for long
STATUS_TIMEOUT = 2.5
#: a bootstrap waits this long for its node to be Primary before the pass goes on
BOOTSTRAP_WAIT = 30.0
#: the same Nova action on the same node is not repeated sooner (a reboot takes time)
NOVA_COOLDOWN = 60.0
#: status.recovery keeps this many steps
MAX_STEPS = 20


class NovaActions(Protocol):
    def start(self, server_id: str) -> None: ...
    def reboot(self, server_id: str) -> None: ...
    def delete(self, server_id: str) -> None: ...


class GatewayNova:
    """Nova's side of the step, through the gateway (throttled, counted, classified)."""

    def __init__(self, gateway: Any):
        self.gw = gateway
        self.server = adapter(Kind.SERVER)

    def start(self, server_id: str) -> None:
        self.server.start(self.gw, server_id)

    def reboot(self, server_id: str) -> None:
        self.server.reboot(self.gw, server_id, hard=True)

    def delete(self, server_id: str) -> None:
        self.server.delete(self.gw, server_id)


@dataclass
class ClusterState:
    """What the operator keeps per cluster between passes (in memory; what must survive a
    restart is in status: writer, bootstrapped, recovery)."""

    fleet: AgentFleet
    addresses: dict[str, str] = field(default_factory=dict)
    token_digest: str = ""
    writer: str | None = None
    bootstrap_in_flight: str | None = None
    bootstrapped: bool = False
    recovery: dict[str, Any] = field(default_factory=dict)
    unhealthy_since: float | None = None
    nova_done: dict[str, tuple[str, float]] = field(default_factory=dict)
    applied: dict[str, str] = field(default_factory=dict)  # what -> password fingerprint
    healthy: bool | None = None  # every node Synced at the last look
    lock: threading.Lock = field(default_factory=threading.Lock)


_registry: dict[str, ClusterState] = {}
_registry_lock = threading.Lock()


def writer_of(intent: Any) -> str | None:
    """The writer the plan should put in front: the step's last choice, else the status'."""
    st = _registry.get(intent.owner.uid)
    return (st.writer if st is not None and st.writer else None) or intent.writer_hint


def all_synced(intent: Any) -> bool:
    """Every node Synced at the last look (unknown before the first: True, nothing to hold)."""
    st = _registry.get(intent.owner.uid)
    return st is None or st.healthy is not False


def forget(uid: str) -> None:
    with _registry_lock:
        _registry.pop(uid, None)


def state_for(intent: Any, addresses: Mapping[str, str]) -> ClusterState:
    """The cluster's state, its agent clients built (again) when addresses or credentials
    changed; the fleet object, hence its silence timers, is kept."""
    creds = intent.secrets.creds
    digest = hashlib.sha256((creds.token + creds.client_cert).encode()).hexdigest()
    with _registry_lock:
        st = _registry.get(intent.owner.uid)
        if st is None:
            st = ClusterState(fleet=AgentFleet({}), writer=intent.writer_hint,
                              bootstrapped=intent.bootstrapped,
                              bootstrap_in_flight=intent.bootstrap_hint,
                              recovery=dict(intent.recovery_hint or {}))
            _registry[intent.owner.uid] = st
    if st.addresses != dict(addresses) or st.token_digest != digest:
        ctx = client_context(creds.ca_cert, creds.client_cert, creds.client_key)
        st.fleet.clients = {name: AgentClient(addr, ctx, creds.token, timeout=STATUS_TIMEOUT,
                                              server_name=name)
                            for name, addr in addresses.items()}
        st.addresses, st.token_digest = dict(addresses), digest
    return st


# --- the step ---------------------------------------------------------------------------------
def galera(ctx: Converged) -> StepResult:
    intent, obs = ctx.intent, ctx.observed
    names = intent.cloud.node_names
    views = {v.index: v for v in server_views(obs.fleet.servers, obs.fleet.ports)}
    addresses, servers, server_ids = {}, {}, {}
    for n, name in enumerate(names):
        port = obs.fleet.ports.get(n)
        fixed = (port.get("fixed_ips") or [{}])[0].get("ip_address") if port else None
        if fixed:
            addresses[name] = fixed
        v = views.get(n)
        servers[name] = v.status if v is not None else None
        if v is not None:
            server_ids[name] = v.obj.id
    intact = volumes_intact(obs, len(names))
    st = state_for(intent, addresses)
    with st.lock:
        return _pass(ctx, st, servers, server_ids, {names[n]: intact[n] for n in intact},
                     GatewayNova(ctx.gateway) if ctx.gateway is not None else None)


def _pass(ctx: Converged, st: ClusterState, servers: dict, server_ids: dict,
          intact: dict, nova: NovaActions | None) -> StepResult:
    intent, owner = ctx.intent, ctx.intent.owner
    if st.writer is None:  # a new cluster: the endpoint starts with the first node normal
        st.writer = intent.cloud.node_name(0)
    cobs = st.fleet.observe(servers, writer=st.writer,
                            policy=intent.policy, volumes_intact=intact,
                            bootstrap_in_flight=st.bootstrap_in_flight,
                            created=st.bootstrapped)
    if any(n.cluster_status == "Primary" for n in cobs.nodes):
        st.bootstrapped, st.bootstrap_in_flight = True, None
    decision = decide(cobs)
    events = carry_out(owner, st, decision, server_ids, nova)
    healthy = st.healthy = is_healthy(cobs, intent.cloud.replicas, st.writer)
    needs_human = decision.of(NeedsHuman)
    _metrics(owner, cobs)
    result = StepResult(done=False, events=events)
    if needs_human:
        _record(st, "NeedsHuman", decision)
        result.reason, result.message = Reason.NEEDS_HUMAN, needs_human[0].reason
        result.requeue_after = 5.0
    elif not healthy or any(not isinstance(a, Wait) for a in decision.actions):
        phase = ("Bootstrapping" if st.bootstrap_in_flight else
                 "Repairing" if any(n.cluster_status == "Primary" for n in cobs.nodes)
                 else "Recovering")
        _record(st, phase, decision)
        result.reason = Reason.RECOVERING
        result.message = f"{phase.lower()}: {decision.reason}"
        result.requeue_after = 1.0
    else:
        ready, message, reason = writable(ctx, st, cobs)
        if ready:
            if st.unhealthy_since is not None:
                GALERA_RECOVERY_SECONDS.labels(owner.namespace, owner.name).observe(
                    time.monotonic() - st.unhealthy_since)
            st.unhealthy_since = None
            if st.recovery.get("phase") not in (None, "Healthy"):
                st.recovery["phase"] = "Healthy"
                st.recovery.pop("bootstrapNode", None)
            result.done, result.ready_message = True, message
        else:
            result.reason, result.message, result.requeue_after = reason, message, 2.0
    if not result.done and st.unhealthy_since is None:
        st.unhealthy_since = time.monotonic()
    result.status = status_fields(ctx, st, cobs)
    return result


def carry_out(owner: Any, st: ClusterState, decision: Decision, server_ids: Mapping[str, str],
              nova: NovaActions | None) -> list[tuple[str, str]]:
    """Do what was decided; every action is logged with its reason and evidence, posted as
    an Event and recorded in ``status.recovery``."""
    events: list[tuple[str, str]] = []
    evidence = "; ".join(f"{k}: {v}" for k, v in sorted(decision.evidence.items()))
    for a in decision.actions:
        if isinstance(a, Wait | NeedsHuman):
            continue
        outcome = _do(owner, st, a, server_ids, nova)
        if outcome is None:
            continue
        _begin(st)
        log.warning("%s/%s: %s -> %s; evidence: %s", owner.namespace, owner.name, a.describe(),
                    outcome, evidence)
        GALERA_ACTIONS.labels(owner.namespace, owner.name, a.kind).inc()
        events.append((a.kind, f"{a.describe()} ({outcome}). Evidence: {evidence}"[:1000]))
        steps = st.recovery.setdefault("steps", [])
        steps.append({"at": now_rfc3339(), "action": a.kind, "node": a.node,
                      "reason": a.reason[:300], "result": outcome[:200]})
        del steps[:-MAX_STEPS]
        st.recovery["reason"] = a.reason[:500]
        st.recovery["evidence"] = [f"{k}: {v}" for k, v in sorted(decision.evidence.items())]
    return events


def _do(owner: Any, st: ClusterState, a: Action, server_ids: Mapping[str, str],
        nova: NovaActions | None) -> str | None:
    """One action; the outcome in words, or None when it was deliberately not repeated."""
    if isinstance(a, SetWriter):
        previous, st.writer = st.writer, a.node
        GALERA_FAILOVERS.labels(owner.namespace, owner.name).inc()
        return f"writer {previous} -> {a.node}"
    if isinstance(a, StartServer | RebootServer | ReplaceServer):
        what = a.kind
        last = st.nova_done.get(a.node or "")
        if last is not None and last[0] == what and time.monotonic() - last[1] < NOVA_COOLDOWN:
            return None
        server_id = server_ids.get(a.node or "")
        if nova is None or (server_id is None and not isinstance(a, ReplaceServer)):
            return None
        try:
            if isinstance(a, StartServer):
                nova.start(server_id)
            elif isinstance(a, RebootServer):
                nova.reboot(server_id)
                st.fleet.forget_silence(a.node or "")  # time its silence from the reboot
            elif server_id is not None:
                nova.delete(server_id)
            else:
                return None  # already gone: the fleet re-creates it
        except FlexinfraError as e:
            if e.code is ErrorCode.CONFLICT:  # 409: Nova is already doing it (powering-on)
                st.nova_done[a.node or ""] = (what, time.monotonic())
                return None
            return f"Nova refused: {e.message}"
        st.nova_done[a.node or ""] = (what, time.monotonic())
        return "asked Nova"
    if isinstance(a, AGENT_ACTIONS):
        if isinstance(a, BOOTSTRAPS):
            _begin(st)
            st.bootstrap_in_flight = a.node
            st.recovery["bootstrapNode"] = a.node
        try:
            answer = st.fleet.execute(a, wait=BOOTSTRAP_WAIT)
        except AgentError as e:
            if isinstance(a, BOOTSTRAPS):
                st.bootstrap_in_flight = None  # refused: nothing started
            return f"agent refused ({e.status}): {e.message}"
        except AgentUnreachable as e:
            return f"agent unreachable: {e}"
        if isinstance(a, BOOTSTRAPS) and isinstance(answer, dict) and answer.get("synced"):
            st.bootstrapped = True
        return "done" if not isinstance(answer, dict) else _short(answer)
    return None


def _short(answer: dict) -> str:
    keys = ("synced", "started", "stopped", "uuid", "seqno", "mode")
    if all(isinstance(v, dict) for v in answer.values()):  # RecoverPositions: per node
        return ", ".join(f"{n}: {v.get('uuid', '?')}:{v.get('seqno', '?')}"
                         for n, v in sorted(answer.items()))
    return ", ".join(f"{k}={answer[k]}" for k in keys if k in answer) or "done"


def is_healthy(cobs: ClusterObs, replicas: int, writer: str | None) -> bool:
    synced = [n for n in cobs.nodes if n.agent_reachable and n.mariadbd_running
              and n.cluster_status == "Primary" and n.wsrep_state == "Synced" and n.wsrep_ready]
    return (len(synced) == replicas == len(cobs.nodes)
            and all(n.cluster_size == replicas for n in synced)
            and len({n.cluster_state_uuid for n in synced}) == 1
            and any(n.name == writer for n in synced))


def _begin(st: ClusterState) -> None:
    """A recovery starts when the cluster leaves Healthy: a fresh record of its steps."""
    if st.recovery.get("phase") in (None, "Healthy"):
        st.recovery = {"phase": "Repairing", "startedAt": now_rfc3339(), "steps": []}


def _record(st: ClusterState, phase: str, decision: Decision) -> None:
    _begin(st)
    st.recovery["phase"] = phase
    if phase == "NeedsHuman":
        st.recovery["reason"] = decision.reason[:500]
        st.recovery["evidence"] = [f"{k}: {v}" for k, v in sorted(decision.evidence.items())]
    if not st.bootstrap_in_flight:
        st.recovery.pop("bootstrapNode", None)


# --- Ready: the database takes a write --------------------------------------------------------
def writable(ctx: Converged, st: ClusterState, cobs: ClusterObs) -> tuple[bool, str, Reason]:
    from flexinfra.kinds import galera_probe

    intent, obs = ctx.intent, ctx.observed
    writer = st.writer or intent.cloud.node_name(0)
    endpoint = ctx.status.resources.get("endpoint") if ctx.status.resources else None
    problem = galera_probe.ensure_accounts(st, intent, writer)
    if problem:
        return False, problem, Reason.NOT_WRITABLE
    address = st.addresses.get(writer)
    health = member_health(obs.lb.pools, obs.lb.members)
    if not obs.lb.pools or not health.online.get(address, frozenset()) >= {
            intent.cloud.writer_port}:
        return False, (f"writer {writer} ({address}) is Synced but its load balancer member "
                       f"is not ONLINE yet (health check GET /health on {HEALTH_PORT})"), \
            Reason.WAITING_FOR_HEALTH
    if not endpoint:
        return False, "the writer endpoint has no address yet", Reason.NOT_WRITABLE
    error = galera_probe.write_probe(endpoint, intent.secrets.probe_password, owner=intent.owner)
    if error:
        return False, f"a write through the writer endpoint {endpoint} failed: {error}", \
            Reason.NOT_WRITABLE
    n = len(cobs.nodes)
    return True, (f"{n}/{n} nodes Synced in one Primary component; writer {writer}; "
                  f"{endpoint} takes writes"), Reason.RECONCILED


# --- status -----------------------------------------------------------------------------------
def node_state(n: Any) -> str:
    if not n.agent_reachable:
        return "Down" if n.server_status in (None, "SHUTOFF", "ERROR") else "Unreachable"
    if not n.mariadbd_running:
        return "Stopped"
    return n.wsrep_state or "Starting"


def status_fields(ctx: Converged, st: ClusterState, cobs: ClusterObs) -> dict[str, Any]:
    """The Galera part of the status. Stable while healthy (no write per pass): a running
    Primary node's seqno moves with every commit, so it is reported only for nodes outside
    a Primary component, where it is the evidence a recovery reads."""
    from flexinfra.galera.decide import known_position

    by_name = {n.name: n for n in cobs.nodes}
    nodes = []
    for cloud in (ctx.status.resources or {}).get("nodes", []):
        node = {k: v for k, v in cloud.items() if k != "serverStatus"}
        n = by_name.get(node["name"])
        if n is not None:
            node["state"] = node_state(n)
            if n.cluster_status:
                node["clusterStatus"] = n.cluster_status
            pos = known_position(n)
            if n.cluster_status != "Primary" and pos is not None and pos.seqno >= 0:
                node["seqno"] = pos.seqno
        nodes.append(node)
    primary = [n for n in cobs.nodes if n.cluster_status == "Primary"]
    size = max((n.cluster_size or 0) for n in primary) if primary else 0
    out = {
        "nodes": nodes,
        "clusterSize": size,
        "clusterStatus": "Primary" if primary else "non-Primary",
        "writer": st.writer or ctx.intent.cloud.node_name(0),
        "bootstrapped": st.bootstrapped,
        "recovery": {k: v for k, v in st.recovery.items() if v not in (None, [], "")} or None,
    }
    # absent rather than null: a null the stored status does not hold would be a patch on
    # every pass that changes nothing
    return {k: v for k, v in out.items() if v is not None}


def _metrics(owner: Any, cobs: ClusterObs) -> None:
    primary = [n for n in cobs.nodes if n.cluster_status == "Primary"]
    GALERA_CLUSTER_SIZE.labels(owner.namespace, owner.name).set(
        max((n.cluster_size or 0) for n in primary) if primary else 0)
    for n in cobs.nodes:
        GALERA_NODE_SYNCED.labels(owner.namespace, owner.name, n.name).set(
            1 if (n.cluster_status == "Primary" and n.wsrep_state == "Synced") else 0)
