"""Galera failover and recovery decisions: ``decide(observed) -> Decision``. Pure: plain data in
(what Nova and the node agents said), plain data out (actions, each with its reason and the
evidence that made it safe). No I/O, no clock: the caller passes durations.

The rules (issue 9), in the order they are applied:

1. **A Primary component exists.** First the writer: it must be a Synced, ready member of the
   Primary component, else ``SetWriter`` moves it to one that is. Then repairs of the nodes
   outside it: ``StartServer`` (SHUTOFF), ``RebootServer`` (ERROR, or agent unreachable for
   ``node_failure_timeout``), ``ReplaceServer`` (server gone; keeping its volume when intact),
   ``StartJoiner`` (agent up, mariadbd down, unless the agent rejoins it by itself).
2. **No Primary component: gather evidence first.** Every node must answer through its agent
   with mariadbd confirmed stopped or non-Primary: servers that are down are started
   (SHUTOFF), rebooted (ERROR, or agent silent for ``node_failure_timeout``) or replaced on
   their intact volume; ``RecoverPositions`` on stopped nodes whose position is unknown. This
   is stricter than "confirmed down by Nova": a survivor cut off *before* the others crashed
   is behind them, and only their positions show it.
3. **Survivors (nodes still running, non-Primary).** ``PcBootstrap`` on the most advanced
   survivor once they have been non-Primary for ``non_primary_grace`` (Galera may still be
   merging) and no stopped node holds a higher seqno; else ``StopNode`` the survivors and
   rule 4 applies.
4. **Full outage (nothing runs).** ``BootstrapFrom`` the highest seqno (tie:
   ``safe_to_bootstrap: 1``, then name). The others become joiners by rule 1 once it is
   Primary.
5. Never a bootstrap while any node is Primary or a bootstrap is in flight; never two in one
   decision; never a node with a lower seqno than another node's known seqno; never on
   incomplete evidence: ``NeedsHuman`` names ``spec.recovery.forceBootstrapNode``, the escape
   hatch by which a person takes responsibility for choosing the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from flexinfra.galera.model import (
    ACTIVE,
    BOOTSTRAPS,
    ERROR,
    FORCE_FIELD,
    SHUTOFF,
    ZERO_UUID,
    Action,
    BootstrapFrom,
    BootstrapNewCluster,
    ClusterObs,
    Decision,
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
)

__all__ = [
    "ACTIVE", "BOOTSTRAPS", "ERROR", "FORCE_FIELD", "SHUTOFF", "ZERO_UUID", "Action",
    "BootstrapFrom", "BootstrapNewCluster", "ClusterObs", "Decision", "GraState", "Kind",
    "NeedsHuman", "NodeObs", "PcBootstrap", "Policy", "Position", "RebootServer",
    "RecoverPositions", "ReplaceServer", "SetWriter", "StartJoiner", "StartServer", "StopNode",
    "Wait", "classify", "decide", "known_position",
]


# --- classification -------------------------------------------------------------------------

class Kind(StrEnum):
    PRIMARY = "primary"          # agent: running, in a Primary component
    NON_PRIMARY = "non-primary"  # agent: running, non-Primary/Disconnected (confirmed)
    STARTING = "starting"        # agent: running, wsrep state not known yet
    STOPPED = "stopped"          # agent: mariadbd not running (confirmed)
    NOVA_DOWN = "nova-down"      # agent silent, server SHUTOFF/ERROR/gone (confirmed)
    SUSPECT = "suspect"          # agent silent for less than node_failure_timeout
    LOST = "lost"                # agent silent for node_failure_timeout, server not down

    @property
    def confirmed_not_primary(self) -> bool:
        return self in (Kind.NON_PRIMARY, Kind.STOPPED, Kind.NOVA_DOWN)


def classify(n: NodeObs, policy: Policy) -> Kind:
    if n.agent_reachable:
        if not n.mariadbd_running:
            return Kind.STOPPED
        if n.cluster_status == "Primary":
            return Kind.PRIMARY
        if n.cluster_status in ("non-Primary", "Disconnected"):
            return Kind.NON_PRIMARY
        return Kind.STARTING
    if n.server_status in (SHUTOFF, ERROR, None):
        return Kind.NOVA_DOWN
    if n.agent_unreachable_for >= policy.node_failure_timeout:
        return Kind.LOST
    return Kind.SUSPECT


def known_position(n: NodeObs) -> Position | None:
    """The node's last committed position, when some evidence gives it: a running node's live
    wsrep position, else the one ``--wsrep-recover`` found, else a clean grastate.dat."""
    if n.agent_reachable and n.mariadbd_running and n.cluster_state_uuid \
            and n.last_committed is not None and n.cluster_status is not None:
        return Position(n.cluster_state_uuid, n.last_committed)
    if n.recovered is not None:
        return n.recovered
    if n.grastate is not None and n.grastate.seqno >= 0:
        return Position(n.grastate.uuid, n.grastate.seqno)
    if n.agent_reachable and n.datadir_initialised is False:
        return Position(ZERO_UUID, -1)          # an empty datadir holds nothing
    return None


def _say(n: NodeObs, k: Kind) -> str:
    pos = known_position(n)
    bits = [k.value, f"server {n.server_status or 'gone'}"]
    if not n.agent_reachable:
        bits.append(f"agent silent {n.agent_unreachable_for:.0f}s")
    elif n.mariadbd_running:
        bits.append(f"wsrep {n.wsrep_state}/{n.cluster_status}"
                    + (f" for {n.cluster_status_for:.0f}s" if n.cluster_status_for else ""))
    if pos is not None:
        bits.append(f"position {pos}")
    if n.grastate is not None:
        bits.append(f"safe_to_bootstrap {int(n.grastate.safe_to_bootstrap)}")
    return ", ".join(bits)


# --- the decision ---------------------------------------------------------------------------

def decide(obs: ClusterObs) -> Decision:
    kinds = {n.name: classify(n, obs.policy) for n in obs.nodes}
    evidence = {n.name: _say(n, kinds[n.name]) for n in obs.nodes}
    ctx = _Ctx(obs, kinds, evidence)
    if any(k is Kind.PRIMARY for k in kinds.values()):
        actions = ctx.with_primary()
    else:
        actions = ctx.without_primary()
    return Decision(tuple(actions), evidence)


@dataclass
class _Ctx:
    obs: ClusterObs
    kinds: dict[str, Kind]
    evidence: dict[str, str]

    @property
    def nodes(self) -> tuple[NodeObs, ...]:
        return self.obs.nodes

    def of(self, *kinds: Kind) -> list[NodeObs]:
        return [n for n in self.nodes if self.kinds[n.name] in kinds]

    def ev(self, *names: str) -> dict[str, str]:
        return {k: v for k, v in self.evidence.items() if not names or k in names}

    # --- rule 1 ---------------------------------------------------------------------------
    def with_primary(self) -> list[Action]:
        primaries = self.of(Kind.PRIMARY)
        uuids = {p.cluster_state_uuid for p in primaries}
        if len(uuids) > 1:
            return [NeedsHuman(reason="nodes report Primary components with different "
                               f"histories ({', '.join(sorted(map(str, uuids)))}): split brain; "
                               "writes must be stopped and one side chosen by a person",
                               evidence=self.ev())]
        actions: list[Action] = []
        synced = [p for p in primaries if p.wsrep_state == "Synced" and p.wsrep_ready]
        writer_ok = any(p.name == self.obs.writer for p in synced)
        if not writer_ok and synced:
            best = synced[0]
            actions.append(SetWriter(
                node=best.name, evidence=self.ev(best.name, self.obs.writer or ""),
                reason=(f"writer {self.obs.writer or '(none)'} is not a Synced member of the "
                        f"Primary component; {best.name} is")))
        size = max((p.cluster_size or 0) for p in primaries)
        view_accounted = size <= len(primaries)
        for n in self.nodes:
            k = self.kinds[n.name]
            if k is Kind.PRIMARY:
                continue
            if k is Kind.LOST and not view_accounted:
                actions.append(Wait(node=n.name, evidence=self.ev(n.name),
                                    reason=f"agent silent but the Primary view has {size} "
                                    f"members and only {len(primaries)} answer: it may be "
                                    "one of them; not rebooting"))
                continue
            repair = self._repair(n, k, primary_exists=True)
            if repair is not None:
                actions.append(repair)
        if not actions:
            behind = [n.name for n in self.nodes if n not in synced]
            if behind:
                actions.append(Wait(evidence=self.ev(), reason=(
                    f"writer {self.obs.writer} Synced; waiting for {', '.join(behind)} "
                    "(joining, donor, or reporting nothing yet)")))
            else:
                actions.append(Wait(evidence=self.ev(), reason=(
                    f"healthy: writer {self.obs.writer} Synced, {len(synced)}/{len(self.nodes)}"
                    " nodes Synced and Primary")))
        return actions

    def _repair(self, n: NodeObs, k: Kind, primary_exists: bool) -> Action | None:
        ev = self.ev(n.name)
        if k is Kind.NOVA_DOWN and not n.agent_reachable:
            if n.server_status == SHUTOFF:
                return StartServer(node=n.name, evidence=ev, reason="server is SHUTOFF")
            if n.server_status == ERROR:
                return RebootServer(node=n.name, evidence=ev,
                                    reason="server is in ERROR: hard reboot")
            if n.volume_intact:
                return ReplaceServer(node=n.name, keep_volume=True, evidence=ev,
                                     reason="server is gone; its volume is intact: a new "
                                     "server on it rejoins by IST")
            if primary_exists and n.volume_intact is False:
                return ReplaceServer(node=n.name, keep_volume=False, evidence=ev,
                                     reason="server and volume are gone: a new server on a "
                                     "new volume rejoins by SST")
            if primary_exists:
                return Wait(node=n.name, evidence=ev,
                            reason="server is gone and the state of its volume is unknown")
            return None
        if k is Kind.LOST:
            return RebootServer(node=n.name, evidence=ev, reason=(
                f"agent silent for {n.agent_unreachable_for:.0f}s "
                f"(>= nodeFailureTimeout {self.obs.policy.node_failure_timeout:.0f}s) "
                f"while the server is {n.server_status}"))
        if k is Kind.STOPPED and primary_exists:
            if n.agent_rejoins:
                # starting it now, while the Primary view may still hold its old incarnation,
                # only makes the join slower (seen: 16 s instead of 10)
                return Wait(node=n.name, evidence=ev, reason=(
                    "mariadbd is down; its agent starts it as a joiner once the Primary "
                    "component has dropped its old incarnation"))
            return StartJoiner(node=n.name, evidence=ev,
                               reason="mariadbd is down while a Primary component exists")
        return None

    # --- rules 2 and 3 --------------------------------------------------------------------
    def without_primary(self) -> list[Action]:
        obs = self.obs
        if obs.bootstrap_in_flight:
            target = next((n for n in self.nodes if n.name == obs.bootstrap_in_flight), None)
            k = self.kinds.get(obs.bootstrap_in_flight)
            if target is not None and k in (Kind.STARTING, Kind.NON_PRIMARY, Kind.SUSPECT):
                return [Wait(node=target.name, evidence=self.ev(),
                             reason="a bootstrap was sent here and is not Primary yet")]
            return [NeedsHuman(evidence=self.ev(), reason=(
                f"the bootstrap sent to {obs.bootstrap_in_flight} did not bring a Primary "
                f"component up (now {k.value if k else 'unknown'}); not bootstrapping "
                f"another node by itself. Set {FORCE_FIELD} to the node to bootstrap"))]
        if not any(n.agent_reachable for n in self.nodes):
            # Nova's word that servers are down (a full power outage: every server SHUTOFF)
            # is enough to power them on again: starting a server decides nothing about the
            # data, its agent only reports. Silent agents on ACTIVE servers are another
            # matter: the operator may be the one cut off
            repairs = [r for n in self.of(Kind.NOVA_DOWN)
                       if (r := self._repair(n, Kind.NOVA_DOWN, primary_exists=False))]
            if repairs:
                return [*repairs, Wait(evidence=self.ev(), reason=(
                    "no node's agent answers and Nova reports servers down: bringing back "
                    + ", ".join(a.node for a in repairs if a.node)))]
            return [NeedsHuman(evidence=self.ev(), reason=(
                "no node's agent answers: the operator may be cut off rather than the nodes "
                f"down; nothing is restarted blindly. Set {FORCE_FIELD} once checked"))]
        if obs.policy.force_bootstrap_node:
            return self._forced(obs.policy.force_bootstrap_node)
        gathering = self._gather_evidence()
        if gathering:
            return gathering
        survivors = self.of(Kind.NON_PRIMARY)
        if survivors:
            return self._survivors(survivors)
        return self._full_outage()

    def _gather_evidence(self) -> list[Action]:
        """Without a Primary component, every node's position must be known before any
        bootstrap: a survivor that was cut off before the others crashed is behind them, and
        only their positions can show it. So servers that are down are started, rebooted or
        replaced first, silent agents waited for (or their servers rebooted after
        nodeFailureTimeout), and stopped nodes' positions recovered."""
        actions: list[Action] = []
        blocked, waiting = [], []
        for n in self.nodes:
            k = self.kinds[n.name]
            if k is Kind.NOVA_DOWN:
                repair = self._repair(n, k, primary_exists=False)
                if repair is None:
                    blocked.append(n.name)
                else:
                    actions.append(repair)
            elif k is Kind.LOST:
                actions.append(self._repair(n, k, primary_exists=False))
                waiting.append(n.name)
            elif k in (Kind.SUSPECT, Kind.STARTING):
                waiting.append(n.name)
        if blocked:
            return [*actions, NeedsHuman(evidence=self.ev(), reason=(
                f"no Primary component and {', '.join(blocked)} cannot report a position "
                "(server gone, its volume lost or in an unknown state): the most advanced node "
                f"cannot be proven; set {FORCE_FIELD} to the node to bootstrap"))]
        if actions or waiting:
            what = [a.node for a in actions if a.node]
            return [*actions, Wait(evidence=self.ev(), reason=(
                "no Primary component: every node's position is needed before any bootstrap"
                + (f"; bringing back {', '.join(what)}" if what else "")
                + (f"; waiting for {', '.join(w for w in waiting if w not in what)}"
                   if set(waiting) - set(what) else "")))]
        unknown = [n for n in self.of(Kind.STOPPED) if known_position(n) is None]
        if unknown:
            return [RecoverPositions(nodes=tuple(n.name for n in unknown), evidence=self.ev(),
                                     reason="no Primary component: recover the stopped "
                                     "nodes' positions before choosing the most advanced node")]
        return []

    def _survivors(self, survivors: list[NodeObs]) -> list[Action]:
        stopped = self.of(Kind.STOPPED)
        grace = self.obs.policy.non_primary_grace
        young = [s for s in survivors if (s.cluster_status_for or 0.0) < grace]
        if young:
            return [Wait(evidence=self.ev(), reason=(
                f"{', '.join(s.name for s in young)} non-Primary for less than {grace:.0f}s: "
                "Galera may still be forming a component"))]
        if any(known_position(s) is None for s in survivors):
            return [Wait(evidence=self.ev(), reason="survivors report no committed position "
                         "yet")]
        best = max(survivors, key=lambda s: (known_position(s).seqno, _neg(s.name)))
        best_pos = known_position(best)
        conflict = self._history_conflict(best_pos)
        if conflict:
            return [conflict]
        ahead = [n for n in stopped if (p := known_position(n)) is not None
                 and p.uuid == best_pos.uuid and p.seqno > best_pos.seqno]
        if ahead:
            return [StopNode(node=s.name, evidence=self.ev(), reason=(
                f"stopped node(s) {', '.join(n.name for n in ahead)} hold a higher seqno than "
                f"the best survivor {best.name} ({best_pos.seqno}): stop the survivors and "
                "bootstrap from the most advanced node")) for s in survivors]
        return [PcBootstrap(node=best.name, evidence=self.ev(), reason=(
            f"no Primary component; every other node is confirmed not Primary and none is "
            f"ahead; {best.name} is the most advanced survivor at {best_pos}"))]

    def _history_conflict(self, ref: Position) -> Action | None:
        other = sorted({p.uuid for n in self.nodes if (p := known_position(n)) is not None
                        and p.has_data and p.uuid != ref.uuid})
        if other:
            return NeedsHuman(evidence=self.ev(), reason=(
                f"nodes hold different histories ({ref.uuid} and {', '.join(other)}): "
                f"choose the node to bootstrap with {FORCE_FIELD}"))
        return None

    def _full_outage(self) -> list[Action]:
        stopped = self.of(Kind.STOPPED)
        positions = {n.name: known_position(n) for n in stopped}
        with_data = [n for n in stopped if positions[n.name].has_data]
        if not with_data:
            if not self.obs.created:
                first = min(stopped, key=lambda n: n.name)
                return [BootstrapNewCluster(node=first.name, evidence=self.ev(),
                                            reason="new cluster: every datadir is empty")]
            return [NeedsHuman(evidence=self.ev(), reason=(
                "every node's datadir is empty although the cluster existed: data lost; "
                "restore from a backup"))]
        best = max(with_data, key=lambda n: (positions[n.name].seqno,
                                             bool(n.grastate and n.grastate.safe_to_bootstrap),
                                             _neg(n.name)))
        conflict = self._history_conflict(positions[best.name])
        if conflict:
            return [conflict]
        pos = positions[best.name]
        safe = bool(best.grastate and best.grastate.safe_to_bootstrap)
        tied = [n.name for n in with_data if n is not best
                and positions[n.name].seqno == pos.seqno]
        return [BootstrapFrom(
            node=best.name, position=pos, set_safe_to_bootstrap=not safe, evidence=self.ev(),
            reason=(f"full outage: {best.name} holds the highest seqno {pos.seqno}"
                    + (f" (tied with {', '.join(tied)}; "
                       f"{'it has safe_to_bootstrap: 1' if safe else 'first by name'})"
                       if tied else "")))]

    # --- the escape hatch -------------------------------------------------------------------
    def _forced(self, name: str) -> list[Action]:
        n = next((x for x in self.nodes if x.name == name), None)
        if n is None:
            return [NeedsHuman(evidence=self.ev(),
                               reason=f"{FORCE_FIELD} names {name}, which is not a node")]
        k = self.kinds[name]
        why = f"{FORCE_FIELD} = {name}: a person chose this node"
        if k is Kind.NON_PRIMARY:
            return [PcBootstrap(node=name, evidence=self.ev(), reason=why)]
        if k is Kind.STOPPED:
            pos = known_position(n)
            if pos is None:
                return [RecoverPositions(nodes=(name,), evidence=self.ev(),
                                         reason=f"{why}; its position is needed first")]
            if not pos.has_data:
                return [NeedsHuman(evidence=self.ev(),
                                   reason=f"{why}, but its datadir holds no data")]
            running = [x.name for x in self.of(Kind.NON_PRIMARY, Kind.STARTING)]
            if running:
                return [StopNode(node=r, evidence=self.ev(), reason=(
                    f"{why}; other nodes still run mariadbd and must stop before a "
                    "bootstrap")) for r in running]
            return [BootstrapFrom(node=name, position=pos, evidence=self.ev(),
                                  set_safe_to_bootstrap=True, reason=why)]
        return [NeedsHuman(evidence=self.ev(), reason=(
            f"{why}, but it is {k.value}: it must be reachable with mariadbd stopped or "
            "running non-Primary"))]


def _neg(name: str) -> tuple[int, ...]:
    """Sort key that makes max() prefer the first name alphabetically."""
    return tuple(-ord(c) for c in name)
