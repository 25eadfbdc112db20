"""GaleraCluster: a MariaDB Galera cluster whose failed nodes are replaced and whose total
outages are recovered from the most advanced node, never losing a commit."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, field_validator

from flexinfra.api.base import ApiModel, Cidr, CloudRef, K8sName, StatusModel
from flexinfra.api.conditions import Condition


class SstMethod(StrEnum):
    RSYNC = "rsync"
    MARIABACKUP = "mariabackup"


class NodeState(StrEnum):
    PENDING = "Pending"
    JOINING = "Joining"
    DONOR = "Donor"
    SYNCED = "Synced"
    NON_PRIMARY = "NonPrimary"
    DOWN = "Down"
    RECOVERING = "Recovering"
    REPLACING = "Replacing"


class GaleraNetwork(ApiModel):
    cidr: Cidr | None = Field(default=None, description="The cluster's own network.")
    existing_network: str | None = Field(default=None, description="Or join this network.")
    external_network: str = Field(default="public", description="For the router gateway.")


class WriterEndpoint(ApiModel):
    enabled: bool = Field(default=True, description="An Octavia pool with one active member.")
    port: int = Field(default=3306, ge=1, le=65535)
    allowed_cidrs: list[Cidr] = Field(
        default_factory=list, description="Who may connect (empty: the cluster's network only)."
    )


class FailoverSpec(ApiModel):
    node_failure_seconds: int = Field(
        default=30, ge=5, le=3600,
        description="A node unreachable this long is replaced (its volume is kept and reused).",
    )
    auto_recover_full_outage: bool = Field(
        default=True,
        description="After a total outage, bootstrap from the most advanced node automatically.",
    )


class BackupSpec(ApiModel):
    schedule: str | None = Field(
        default=None, pattern=r"^(\S+\s+){4}\S+$", description="Cron schedule, e.g. `0 3 * * *`."
    )
    retention: int = Field(default=7, ge=1, le=365, description="Backups kept.")


class GaleraClusterSpec(ApiModel):
    cloud: CloudRef
    replicas: int = Field(default=3, ge=3, le=9, description="Nodes; odd, at least 3.")
    flavor: str = Field(min_length=1, description="Nova flavor of the nodes.")
    image: str = Field(min_length=1, description="Glance image of the nodes.")
    availability_zones: list[str] = Field(default_factory=list, max_length=8)
    volume_size_gb: int = Field(default=10, ge=1, le=16384, description="Data volume per node.")
    volume_type: str | None = None
    mariadb_version: str = Field(default="10.11", pattern=r"^[0-9]+\.[0-9]+$")
    root_password_secret: K8sName | None = Field(
        default=None, description="Secret with key `password`; generated when absent."
    )
    sst_method: SstMethod = SstMethod.RSYNC
    network: GaleraNetwork
    writer: WriterEndpoint = Field(default_factory=WriterEndpoint)
    failover: FailoverSpec = Field(default_factory=FailoverSpec)
    backups: BackupSpec = Field(default_factory=BackupSpec)

    @field_validator("replicas")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("replicas must be odd (3, 5, 7 or 9) so a majority always exists")
        return v


class GaleraNodeStatus(StatusModel):
    name: str
    server: str | None = None
    address: str | None = None
    state: NodeState | None = None
    seqno: int | None = None
    safe_to_bootstrap: bool | None = None
    volume: str | None = None


class RecoveryStatus(StatusModel):
    phase: str | None = Field(default=None, description="e.g. CollectingPositions, Bootstrapping.")
    bootstrap_node: str | None = None
    reason: str | None = None
    started_at: str | None = None


class GaleraClusterStatus(StatusModel):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    nodes: list[GaleraNodeStatus] = Field(default_factory=list)
    cluster_size: int | None = None
    cluster_status: str | None = Field(default=None, description="Primary / non-Primary.")
    writer: str | None = Field(default=None, description="Node receiving writes.")
    endpoint: str | None = None
    recovery: RecoveryStatus | None = None
