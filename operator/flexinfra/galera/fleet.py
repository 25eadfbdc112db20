"""The operator's edge towards one cluster's agents: ask them all at once, turn their answers
(and Nova's) into ``decide``'s input, and carry out the actions that are the agents' to do.

Nova-side actions (``StartServer``, ``RebootServer``, ``ReplaceServer``) and ``SetWriter``
(the load balancer's members) belong to the reconcile machinery; :meth:`AgentFleet.execute`
refuses them so that nothing is silently skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from flexinfra.galera.client import AgentClient, AgentError, AgentUnreachable
from flexinfra.galera.model import (
    Action,
    BootstrapFrom,
    BootstrapNewCluster,
    ClusterObs,
    NodeObs,
    PcBootstrap,
    Policy,
    RecoverPositions,
    StartJoiner,
    StopNode,
)

AGENT_ACTIONS = (RecoverPositions, BootstrapNewCluster, BootstrapFrom, PcBootstrap, StartJoiner,
                 StopNode)


class AgentFleet:
    def __init__(self, clients: Mapping[str, AgentClient],
                 clock: Callable[[], float] = time.monotonic):
        self.clients = dict(clients)
        self._clock = clock
        self._silent_since: dict[str, float] = {}
        self.last_status: dict[str, dict | None] = {}

    def statuses(self) -> dict[str, dict | None]:
        """Every agent's status, asked in parallel; None for an agent that did not answer."""
        def ask(name: str) -> dict | None:
            try:
                return self.clients[name].status()
            except (AgentUnreachable, AgentError):
                return None

        names = sorted(self.clients)
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            answers = dict(zip(names, pool.map(ask, names), strict=True))
        now = self._clock()
        for name, st in answers.items():
            if st is None:
                self._silent_since.setdefault(name, now)
            else:
                self._silent_since.pop(name, None)
        self.last_status = answers
        return answers

    def forget_silence(self, name: str) -> None:
        """Time this agent's silence afresh (its server was just rebooted)."""
        self._silent_since.pop(name, None)

    def observe(self, servers: Mapping[str, str | None], *, writer: str | None,
                policy: Policy, volumes_intact: Mapping[str, bool | None] | None = None,
                bootstrap_in_flight: str | None = None, created: bool = True) -> ClusterObs:
        """``servers``: Nova's status per node (None when the server is gone)."""
        answers = self.statuses()
        now = self._clock()
        vols = volumes_intact or {}
        nodes = []
        for name in sorted(self.clients):
            st = answers[name]
            if st is not None:
                nodes.append(NodeObs.from_agent_status(name, servers.get(name), st,
                                                       volume_intact=vols.get(name)))
            else:
                nodes.append(NodeObs.unreachable(name, servers.get(name),
                                                 now - self._silent_since[name],
                                                 volume_intact=vols.get(name)))
        return ClusterObs(nodes=tuple(nodes), writer=writer, policy=policy,
                          bootstrap_in_flight=bootstrap_in_flight, created=created)

    def execute(self, action: Action, wait: float = 60.0) -> dict:
        """Carry out an agent-side action; returns what the agent(s) answered. Raises
        ``AgentError`` (409: the node's state moved on; observe again) or
        ``AgentUnreachable``."""
        c = self.clients.get(action.node) if action.node else None
        match action:
            case RecoverPositions():
                names = list(action.nodes)
                with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
                    return dict(zip(names, pool.map(lambda n: self.clients[n].recover(), names),
                                    strict=True))
            case BootstrapNewCluster():
                return c.start_new_cluster(wait=wait)
            case BootstrapFrom():
                return c.start_bootstrap(action.position.uuid, action.position.seqno,
                                         action.set_safe_to_bootstrap, wait=wait)
            case PcBootstrap():
                return c.pc_bootstrap(wait=min(wait, 30.0))
            case StartJoiner():
                return c.start_joiner()
            case StopNode():
                return c.stop()
        raise ValueError(f"{action.kind} is not an agent action")
