"""GaleraCluster: a MariaDB Galera cluster on OpenStack servers whose failed nodes are repaired
and whose total outages are recovered from the most advanced node, never losing a commit.

Every field here is carried out by ``kinds/galera.py``; a field that nothing implements is
not accepted (an accepted-but-ignored field is a defect: the user believes it works).
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import Field, field_validator, model_validator

from flexinfra.api.base import ApiModel, Cidr, CloudRef, K8sName, Port, StatusModel
from flexinfra.api.conditions import Condition

#: a MariaDB server variable as my.cnf spells it (``innodb_buffer_pool_size``)
SETTING_NAME = r"^[a-z][a-z0-9_-]{0,63}$"
#: what a my.cnf value may hold: no newline, no quote, no bracket
SETTING_VALUE = r"^[A-Za-z0-9_./:,;= +%@-]{0,200}$"
#: variables the operator owns: a cluster whose settings moved these would not be a cluster
RESERVED_SETTINGS = frozenset({
    "datadir", "socket", "pid-file", "pid_file", "log-error", "log_error", "bind-address",
    "bind_address", "port", "wsrep_on", "wsrep_provider", "wsrep_provider_options",
    "wsrep_cluster_name", "wsrep_cluster_address", "wsrep_node_name", "wsrep_node_address",
    "wsrep_node_incoming_address", "wsrep_sst_method", "binlog_format",
    "innodb_autoinc_lock_mode", "user", "skip-grant-tables", "skip_grant_tables",
})
MIN_VOLUME_GB = 1


class SstMethod(StrEnum):
    RSYNC = "rsync"
    MARIABACKUP = "mariabackup"


class AntiAffinity(StrEnum):
    SOFT = "soft"
    HARD = "hard"


class DeletionPolicy(StrEnum):
    RETAIN = "Retain"
    DELETE = "Delete"


class GaleraNetwork(ApiModel):
    """The cluster's own network (``cidr``) or an existing one it joins."""

    cidr: Cidr | None = Field(default=None, description="CIDR of the cluster's own network.")
    existing_network: str | None = Field(
        default=None, max_length=255,
        description="Name or ID of an existing network (its first IPv4 subnet) to join "
        "instead. A WebSite on the same network reaches the writer endpoint directly.",
    )
    external_network: str = Field(
        default="public", min_length=1, max_length=255,
        description="External network for the router gateway and the writer's floating IP.",
    )

    @model_validator(mode="after")
    def _one(self) -> GaleraNetwork:
        if (self.cidr is None) == (self.existing_network is None):
            raise ValueError("set exactly one of network.cidr and network.existingNetwork")
        return self


class VolumeSpec(ApiModel):
    """Each node's Cinder data volume: its datadir. Kept across server replacement."""

    size_gb: int = Field(
        default=10, ge=MIN_VOLUME_GB, le=16384,
        description="GiB per node; at least 1 (InnoDB's files, the gcache and a margin).",
    )
    type: str | None = Field(default=None, max_length=255, description="Cinder volume type.")


class MariaDBSpec(ApiModel):
    settings: dict[str, str] = Field(
        default_factory=dict, max_length=64,
        description="Extra [mysqld] settings written to each node's my.cnf, e.g. "
        "`innodb_buffer_pool_size: 512M`. Names the operator manages (datadir, wsrep_*, "
        "port, ...) are refused. Changing them replaces the nodes one at a time.",
    )

    @field_validator("settings")
    @classmethod
    def _valid(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not re.match(SETTING_NAME, key):
                raise ValueError(f"setting name {key!r} is not a MariaDB variable name "
                                 "([a-z0-9_-], at most 64)")
            if key in RESERVED_SETTINGS or key.startswith("wsrep"):
                raise ValueError(f"setting {key!r} is managed by the operator")
            if not re.match(SETTING_VALUE, str(value)):
                raise ValueError(f"setting {key!r}: value {value!r} has characters a my.cnf "
                                 "cannot carry safely")
        return v


class SecretKeyRef(ApiModel):
    name: K8sName = Field(description="Secret in the cluster's namespace.")
    key: str = Field(default="password", min_length=1, max_length=253)


class FailoverSpec(ApiModel):
    node_failure_timeout_seconds: int = Field(
        default=30, ge=5, le=3600,
        description="A node whose agent is silent this long (its server ACTIVE) is rebooted. "
        "SHUTOFF, ERROR and deleted servers are acted on at once.",
    )


class WriterSpec(ApiModel):
    """The writer endpoint: an Octavia TCP listener with one normal member (the writer) and
    the other nodes as backups, health-checked on each node's agent (Synced only)."""

    port: Port = Field(default=3306, description="Listener port of the writer endpoint.")
    public_ip: bool = Field(
        default=False, alias="publicIP",
        description="A floating IP on the endpoint, reachable from `allowedFrom` only (the "
        "listener's allowed CIDRs): for clients not on the cluster's network.",
    )


class ReadEndpointSpec(ApiModel):
    enabled: bool = Field(default=False, description="A second listener over every Synced node.")
    port: Port = Field(default=3307)


class RecoverySpec(ApiModel):
    force_bootstrap_node: str | None = Field(
        default=None, max_length=128,
        description="The escape hatch when the operator cannot prove which node is the most "
        "advanced (it says so in the Ready condition): bootstrap this node (a name in "
        "status.nodes). A person takes responsibility for the data on the others. Remove it "
        "once the cluster is Ready.",
    )


class GaleraClusterSpec(ApiModel):
    cloud: CloudRef
    replicas: int = Field(
        default=3, ge=3, le=9, json_schema_extra={"enum": [3, 5, 7, 9]},
        description="Nodes: 3, 5, 7 or 9 (odd, so that a majority always exists).",
    )
    flavor: str = Field(min_length=1, max_length=255, description="Nova flavor of the nodes.")
    image: str = Field(min_length=1, max_length=255, description="Glance image of the nodes.")
    availability_zones: list[str] = Field(default_factory=list, max_length=8)
    anti_affinity: AntiAffinity = Field(
        default=AntiAffinity.SOFT,
        description="soft: nodes on different hosts when possible; hard: refuse otherwise.",
    )
    volume: VolumeSpec = Field(default_factory=VolumeSpec)
    network: GaleraNetwork
    mariadb: MariaDBSpec = Field(default_factory=MariaDBSpec)
    sst_method: SstMethod = Field(default=SstMethod.RSYNC, description="rsync or mariabackup.")
    root_password_secret: SecretKeyRef | None = Field(
        default=None,
        description="Secret holding MariaDB's root password (remote root). When absent the "
        "operator generates `<name>-root` (key `password`); a named Secret that exists "
        "must hold the key.",
    )
    failover: FailoverSpec = Field(default_factory=FailoverSpec)
    allowed_from: list[Cidr] = Field(
        default_factory=list, max_length=32,
        description="Who may reach port 3306 of the nodes and the writer endpoint besides "
        "the cluster's own subnet.",
    )
    writer: WriterSpec = Field(default_factory=WriterSpec)
    read_endpoint: ReadEndpointSpec = Field(default_factory=ReadEndpointSpec)
    recovery: RecoverySpec = Field(default_factory=RecoverySpec)
    deletion_policy: DeletionPolicy = Field(
        default=DeletionPolicy.RETAIN,
        description="Retain: the data volumes outlive the cluster (untagged, named "
        "fi-<ns>-<name>-vol-<n>); Delete: they go with it.",
    )

    @field_validator("replicas")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("replicas must be odd (3, 5, 7 or 9) so a majority always exists")
        return v

    @model_validator(mode="after")
    def _ports(self) -> GaleraClusterSpec:
        if self.read_endpoint.enabled and self.read_endpoint.port == self.writer.port:
            raise ValueError("readEndpoint.port must differ from writer.port")
        return self


# --- status ---------------------------------------------------------------------------------
class GaleraNodeStatus(StatusModel):
    name: str
    server: str | None = None
    address: str | None = None
    zone: str | None = None
    state: str | None = Field(default=None, description="wsrep_local_state_comment, or "
                              "Down / Stopped / Unreachable.")
    cluster_status: str | None = None
    seqno: int | None = None
    volume: str | None = None


class RecoveryStep(StatusModel):
    at: str
    action: str
    node: str | None = None
    reason: str = ""
    result: str = ""


class RecoveryStatus(StatusModel):
    phase: str | None = Field(default=None, description="Healthy, Repairing, Recovering, "
                              "Bootstrapping, NeedsHuman.")
    bootstrap_node: str | None = None
    reason: str | None = None
    evidence: list[str] | None = None
    started_at: str | None = None
    steps: list[RecoveryStep] | None = None


class GaleraClusterStatus(StatusModel):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    nodes: list[GaleraNodeStatus] = Field(default_factory=list)
    cluster_size: int | None = None
    cluster_status: str | None = Field(default=None, description="Primary / non-Primary.")
    writer: str | None = Field(default=None, description="Node receiving writes.")
    endpoint: str | None = Field(default=None, description="Writer endpoint (VIP:port).")
    public_endpoint: str | None = None
    read_endpoint: str | None = None
    network: str | None = Field(
        default=None, description="Name of the network the nodes are on. A WebSite with "
        "spec.database on this cluster joins it: network.existingNetwork: <this name>.")
    bootstrapped: bool | None = Field(
        default=None, description="The cluster has been bootstrapped once: empty datadirs "
        "everywhere are then a loss, never a new cluster.")
    recovery: RecoveryStatus | None = None
