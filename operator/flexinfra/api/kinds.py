"""The registry of custom resource kinds: one place that names plurals, short names and
printer columns, read by the CRD generator, the handlers and the docs."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from flexinfra.api.galera import GaleraClusterSpec, GaleraClusterStatus
from flexinfra.api.gluster import GlusterVolumeSpec, GlusterVolumeStatus
from flexinfra.api.sitetemplate import SiteTemplateSpec, SiteTemplateStatus
from flexinfra.api.website import WebSiteSpec, WebSiteStatus

READY = '.status.conditions[?(@.type=="Ready")].status'
REASON = '.status.conditions[?(@.type=="Ready")].reason'


@dataclass(frozen=True)
class Column:
    name: str
    json_path: str
    type: str = "string"
    priority: int = 0
    description: str = ""


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    description: str
    columns: tuple[Column, ...] = field(default_factory=tuple)

    @property
    def singular(self) -> str:
        return self.kind.lower()


AGE = Column("Age", ".metadata.creationTimestamp", "date")

KINDS: tuple[Kind, ...] = (
    Kind(
        kind="WebSite",
        plural="websites",
        short_names=("site", "ws"),
        spec=WebSiteSpec,
        status=WebSiteStatus,
        description="A highly available web site on OpenStack: network, router, security group, "
        "servers from a SiteTemplate, a load balancer and a public IP, from one manifest.",
        columns=(
            Column("Ready", READY, description="Everything built and serving"),
            Column("Reason", REASON),
            Column("Replicas", ".spec.replicas", "integer"),
            Column("Available", ".status.readyReplicas", "integer"),
            Column("URL", ".status.url"),
            Column("Template", ".spec.template", priority=1),
            AGE,
        ),
    ),
    Kind(
        kind="SiteTemplate",
        plural="sitetemplates",
        short_names=("stpl",),
        spec=SiteTemplateSpec,
        status=SiteTemplateStatus,
        description="How every server of a WebSite is built: image, flavor, boot script, ports.",
        columns=(
            Column("Image", ".spec.image"),
            Column("Flavor", ".spec.flavor"),
            Column("Hash", ".status.templateHash", priority=1),
            AGE,
        ),
    ),
    Kind(
        kind="GaleraCluster",
        plural="galeraclusters",
        short_names=("galera", "gc"),
        spec=GaleraClusterSpec,
        status=GaleraClusterStatus,
        description="A MariaDB Galera cluster on OpenStack servers with a single-writer endpoint; "
        "failed nodes are replaced, total outages recovered from the most advanced node.",
        columns=(
            Column("Ready", READY),
            Column("Reason", REASON),
            Column("Replicas", ".spec.replicas", "integer"),
            Column("Size", ".status.clusterSize", "integer"),
            Column("Status", ".status.clusterStatus"),
            Column("Writer", ".status.writer"),
            Column("Endpoint", ".status.endpoint"),
            Column("Recovery", ".status.recovery.phase", priority=1),
            Column("Network", ".status.network", priority=1),
            AGE,
        ),
    ),
    Kind(
        kind="GlusterVolume",
        plural="glustervolumes",
        short_names=("gv", "gluster"),
        spec=GlusterVolumeSpec,
        status=GlusterVolumeStatus,
        description="A replicated GlusterFS volume on OpenStack servers with Cinder bricks.",
        columns=(
            Column("Ready", READY),
            Column("Reason", REASON),
            Column("Replicas", ".spec.replicas", "integer"),
            Column("Pending-Heal", ".status.pendingHeal", "integer"),
            Column("Mount", ".status.mount"),
            AGE,
        ),
    ),
)

BY_KIND = {k.kind: k for k in KINDS}
