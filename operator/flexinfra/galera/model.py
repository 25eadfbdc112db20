"""The data ``decide`` works on: what the operator observed (``ClusterObs`` of ``NodeObs``)
and what it should do (``Action`` subclasses, each with its reason and evidence). Plain frozen
dataclasses, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

ZERO_UUID = "00000000-0000-0000-0000-000000000000"
FORCE_FIELD = "spec.recovery.forceBootstrapNode"

# Nova server statuses (``None`` = no server: deleted or never created)
ACTIVE, SHUTOFF, ERROR = "ACTIVE", "SHUTOFF", "ERROR"


# --- input ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Position:
    uuid: str
    seqno: int

    @property
    def has_data(self) -> bool:
        return self.seqno >= 0 and self.uuid != ZERO_UUID

    def __str__(self) -> str:
        return f"{self.uuid}:{self.seqno}"


@dataclass(frozen=True)
class GraState:
    uuid: str
    seqno: int
    safe_to_bootstrap: bool


@dataclass(frozen=True)
class NodeObs:
    """One node as seen by the operator: Nova's word and its agent's report."""

    name: str
    server_status: str | None = ACTIVE      # Nova status; None: the server is gone
    agent_reachable: bool = False
    agent_unreachable_for: float = 0.0      # seconds without an answer (0 when reachable)
    mariadbd_running: bool | None = None
    wsrep_state: str | None = None          # wsrep_local_state_comment
    cluster_status: str | None = None       # Primary / non-Primary / Disconnected
    cluster_status_for: float | None = None  # seconds the cluster status has held
    cluster_size: int | None = None
    wsrep_ready: bool | None = None
    cluster_state_uuid: str | None = None
    last_committed: int | None = None
    grastate: GraState | None = None
    recovered: Position | None = None
    datadir_initialised: bool | None = None
    volume_intact: bool | None = None       # Cinder volume present and usable (None: unknown)
    #: the agent wants mariadbd running and will start it as a joiner itself as soon as a
    #: Primary peer has dropped this node from its view (agent status: desired "member")
    agent_rejoins: bool = False

    @classmethod
    def from_agent_status(cls, name: str, server_status: str | None, status: dict,
                          volume_intact: bool | None = None) -> NodeObs:
        """From an agent's ``/v1/status`` (see ``flexinfra.agent.supervisor.status``)."""
        m = status.get("mariadbd") or {}
        w = status.get("wsrep") or {}
        gs = status.get("grastate")
        rec = status.get("recovered")
        since, at = w.get("cluster_status_since"), w.get("at")
        return cls(
            name=name, server_status=server_status, agent_reachable=True,
            mariadbd_running=bool(m.get("running")),
            wsrep_state=w.get("local_state_comment"), cluster_status=w.get("cluster_status"),
            cluster_status_for=(at - since) if (since is not None and at is not None) else None,
            cluster_size=w.get("cluster_size"), wsrep_ready=w.get("ready"),
            cluster_state_uuid=w.get("cluster_state_uuid"),
            last_committed=w.get("last_committed"),
            grastate=GraState(gs["uuid"], gs["seqno"], gs["safe_to_bootstrap"]) if gs else None,
            recovered=Position(rec["uuid"], rec["seqno"]) if rec else None,
            datadir_initialised=status.get("datadir_initialised"),
            volume_intact=volume_intact,
            agent_rejoins=status.get("desired") == "member" and not m.get("running"),
        )

    @classmethod
    def unreachable(cls, name: str, server_status: str | None, for_seconds: float,
                    volume_intact: bool | None = None) -> NodeObs:
        return cls(name=name, server_status=server_status, agent_reachable=False,
                   agent_unreachable_for=for_seconds, volume_intact=volume_intact)


@dataclass(frozen=True)
class Policy:
    node_failure_timeout: float = 30.0      # agent silent this long (server ACTIVE) = dead
    non_primary_grace: float = 5.0          # survivors non-Primary this long before pc.bootstrap
    force_bootstrap_node: str | None = None  # spec.recovery.forceBootstrapNode


@dataclass(frozen=True)
class ClusterObs:
    nodes: tuple[NodeObs, ...]
    writer: str | None = None
    policy: Policy = field(default_factory=Policy)
    #: a bootstrap (or pc.bootstrap) was sent to this node and it is not Primary yet
    #: (from status.recovery): no other bootstrap may be decided meanwhile
    bootstrap_in_flight: str | None = None
    #: the cluster has been bootstrapped once (status says so): empty everywhere is then a
    #: loss, not a new cluster
    created: bool = True


# --- output ---------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Action:
    kind: ClassVar[str] = "Action"
    reason: str
    evidence: Mapping[str, str] = field(default_factory=dict, compare=False)
    node: str | None = None

    def describe(self) -> str:
        target = f" {self.node}" if self.node else ""
        return f"{self.kind}{target}: {self.reason}"


@dataclass(frozen=True, kw_only=True)
class Wait(Action):
    kind: ClassVar[str] = "Wait"


@dataclass(frozen=True, kw_only=True)
class SetWriter(Action):
    kind: ClassVar[str] = "SetWriter"


@dataclass(frozen=True, kw_only=True)
class StartServer(Action):
    kind: ClassVar[str] = "StartServer"


@dataclass(frozen=True, kw_only=True)
class RebootServer(Action):
    kind: ClassVar[str] = "RebootServer"


@dataclass(frozen=True, kw_only=True)
class ReplaceServer(Action):
    kind: ClassVar[str] = "ReplaceServer"
    keep_volume: bool


@dataclass(frozen=True, kw_only=True)
class StartJoiner(Action):
    kind: ClassVar[str] = "StartJoiner"


@dataclass(frozen=True, kw_only=True)
class StopNode(Action):
    kind: ClassVar[str] = "StopNode"


@dataclass(frozen=True, kw_only=True)
class RecoverPositions(Action):
    kind: ClassVar[str] = "RecoverPositions"
    nodes: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class BootstrapNewCluster(Action):
    kind: ClassVar[str] = "BootstrapNewCluster"


@dataclass(frozen=True, kw_only=True)
class BootstrapFrom(Action):
    kind: ClassVar[str] = "BootstrapFrom"
    position: Position
    set_safe_to_bootstrap: bool


@dataclass(frozen=True, kw_only=True)
class PcBootstrap(Action):
    kind: ClassVar[str] = "PcBootstrap"


@dataclass(frozen=True, kw_only=True)
class NeedsHuman(Action):
    kind: ClassVar[str] = "NeedsHuman"


BOOTSTRAPS = (BootstrapFrom, PcBootstrap, BootstrapNewCluster)


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]
    evidence: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def reason(self) -> str:
        return "; ".join(a.describe() for a in self.actions)

    def of(self, kind: type[Action]) -> list[Action]:
        return [a for a in self.actions if isinstance(a, kind)]
