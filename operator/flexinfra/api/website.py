"""WebSite: one manifest, a whole highly available site."""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Annotated

from pydantic import Field, model_validator

from flexinfra.api.base import (
    HOSTNAME_PATTERN,
    ApiModel,
    Cidr,
    CloudRef,
    K8sName,
    Port,
    StatusModel,
)
from flexinfra.api.conditions import Condition

Hostname = Annotated[str, Field(pattern=HOSTNAME_PATTERN, max_length=253)]
#: an IPv4 address (DNS servers): refused at ``kubectl apply``, not by Neutron after the
#: network and router exist
IPV4_PATTERN = (r"^((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}"
                r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])$")
Ipv4 = Annotated[str, Field(pattern=IPV4_PATTERN)]
#: in the CRD: the API server refuses duplicates in the list at ``kubectl apply``
UNIQUE = {"x-kubernetes-list-type": "set"}


def _no_duplicates(values: list, what: str) -> None:
    seen = [v for n, v in enumerate(values) if v in values[:n]]
    if seen:
        raise ValueError(f"{what} lists {sorted(set(seen))} more than once")


class IpProtocol(StrEnum):
    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"


class LbProtocol(StrEnum):
    HTTP = "HTTP"
    TCP = "TCP"


class LbAlgorithm(StrEnum):
    ROUND_ROBIN = "ROUND_ROBIN"
    LEAST_CONNECTIONS = "LEAST_CONNECTIONS"
    SOURCE_IP = "SOURCE_IP"


class HealthCheckType(StrEnum):
    HTTP = "HTTP"
    TCP = "TCP"
    PING = "PING"


class AntiAffinity(StrEnum):
    SOFT = "soft"
    HARD = "hard"


class NetworkSpec(ApiModel):
    """Either a network of the site's own (`cidr`) or an existing shared one."""

    cidr: Cidr | None = Field(
        default=None,
        description="CIDR of the site's own network, e.g. 10.20.1.0/24. Must not overlap "
        "another network the router joins.",
    )
    existing_network: str | None = Field(
        default=None,
        max_length=255,
        description="Name or ID of an existing network (and its first subnet) to join instead "
        "of creating one. Nothing of it is changed or deleted.",
    )
    external_network: str = Field(
        default="public",
        min_length=1,
        max_length=255,
        description="External network for the router gateway and the floating IP.",
    )
    dns_nameservers: list[Ipv4] = Field(
        default_factory=list,
        max_length=5,
        description="DNS servers (IPv4 addresses) given to the site's subnet.",
        json_schema_extra=UNIQUE,
    )

    @model_validator(mode="after")
    def _one_network(self) -> NetworkSpec:
        if (self.cidr is None) == (self.existing_network is None):
            raise ValueError("set exactly one of network.cidr and network.existingNetwork")
        if self.cidr is not None:
            net = ipaddress.ip_network(self.cidr, strict=False)
            if str(net) != self.cidr:
                raise ValueError(f"network.cidr {self.cidr} has host bits set; did you mean "
                                 f"{net}?")
        _no_duplicates(self.dns_nameservers, "network.dnsNameservers")
        return self


class HealthCheck(ApiModel):
    """How the load balancer decides a server is healthy."""

    type: HealthCheckType = Field(default=HealthCheckType.HTTP, description="HTTP, TCP or PING.")
    path: str = Field(
        default="/", pattern=r"^/[\x21-\x7e]*$", max_length=1024,
        description="HTTP path probed on every server.",
    )
    expected_codes: str = Field(
        default="200", pattern=r"^[1-5][0-9]{2}([-,][1-5][0-9]{2})*$",
        description="HTTP codes meaning healthy, e.g. 200 or 200-204.",
    )
    delay: int = Field(default=5, ge=1, le=300, description="Seconds between probes.")
    timeout: int = Field(default=3, ge=1, le=300, description="Seconds a probe may take.")
    max_retries: int = Field(
        default=3, ge=1, le=10, description="Failures before a member is down."
    )

    @model_validator(mode="after")
    def _timeout_within_delay(self) -> HealthCheck:
        if self.timeout > self.delay:
            raise ValueError(f"healthCheck.timeout ({self.timeout}) must not exceed "
                             f"healthCheck.delay ({self.delay}): Octavia refuses it")
        return self


class LoadBalancerSpec(ApiModel):
    """The Octavia load balancer in front of the servers."""

    ports: list[Port] = Field(
        default_factory=lambda: [80], min_length=1, max_length=16,
        description="Public ports; one listener each, forwarding to the same port on the servers.",
        json_schema_extra=UNIQUE,
    )
    protocol: LbProtocol = Field(default=LbProtocol.TCP, description="HTTP or TCP listeners.")
    algorithm: LbAlgorithm = Field(default=LbAlgorithm.ROUND_ROBIN, description="Balancing.")
    health_check: HealthCheck = Field(default_factory=HealthCheck)

    @model_validator(mode="after")
    def _unique_ports(self) -> LoadBalancerSpec:
        _no_duplicates(self.ports, "loadBalancer.ports")
        return self


class PublicIPSpec(ApiModel):
    """The floating IP on the load balancer's VIP."""

    enabled: bool = Field(default=True, description="Put a floating IP on the load balancer.")
    retain: bool = Field(
        default=False,
        description="Keep the address when the load balancer or the WebSite is re-created "
        "(it is then released only when this is set back to false before deletion).",
    )


class IngressRule(ApiModel):
    """One security group rule: traffic allowed into the servers."""

    port: Port | None = Field(default=None, description="Port; empty with protocol icmp.")
    protocol: IpProtocol = Field(default=IpProtocol.TCP, description="tcp, udp or icmp.")
    from_: Cidr = Field(
        default="0.0.0.0/0", alias="from", description="Source CIDR allowed in."
    )

    @model_validator(mode="after")
    def _port_matches_protocol(self) -> IngressRule:
        if self.protocol != IpProtocol.ICMP and self.port is None:
            raise ValueError(f"ingress rule for {self.protocol} needs a port")
        if self.protocol == IpProtocol.ICMP and self.port is not None:
            raise ValueError("ingress rule for icmp takes no port")
        return self


class StorageSpec(ApiModel):
    """Per-server Cinder volumes or a shared GlusterVolume."""

    volume_size_gb: int | None = Field(
        default=None, ge=1, le=16384,
        description="Give every server a Cinder volume of this size (GiB). A server's "
        "replacement (template change, failure) takes over its volume, the old server going "
        "first (with replicas: 1 the site is down meanwhile). Lowering replicas, or removing "
        "this field, deletes the volumes of the servers that go, with their data.",
    )
    volume_type: str | None = Field(default=None, max_length=255, description="Cinder type.")
    gluster_volume: K8sName | None = Field(
        default=None, description="A GlusterVolume (same namespace) mounted by every server."
    )


class DatabaseDeletionPolicy(StrEnum):
    RETAIN = "Retain"
    DELETE = "Delete"


class DatabaseSpec(ApiModel):
    """A database and user on a GaleraCluster, credentials in a Secret."""

    galera_cluster: K8sName = Field(description="GaleraCluster (same namespace) to use.")
    name: str = Field(
        pattern=r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$",
        description="Database (and user) name; the password goes to Secret <site>-db.",
    )
    deletion_policy: DatabaseDeletionPolicy = Field(
        default="Retain",
        description="Retain: deleting the site keeps the database and its user; Delete: "
        "both are dropped with the site.",
    )


class WebSiteSpec(ApiModel):
    """Desired state of a web site: what to build in the tenant and how many servers."""

    cloud: CloudRef
    template: K8sName = Field(
        description="SiteTemplate (same namespace) the servers are made from."
    )
    replicas: int = Field(default=2, ge=0, le=50, description="Number of servers.")
    availability_zones: list[str] = Field(
        default_factory=list, max_length=8,
        description="Servers are spread round-robin over these Nova zones (empty: Nova decides).",
    )
    anti_affinity: AntiAffinity = Field(
        default=AntiAffinity.SOFT,
        description="soft: servers on different hosts when possible; hard: refuse otherwise.",
    )
    domains: list[Hostname] = Field(
        default_factory=list,
        max_length=32,
        description="Host names the site answers to (informational; DNS is yours).",
    )
    network: NetworkSpec
    load_balancer: LoadBalancerSpec = Field(default_factory=LoadBalancerSpec)
    public_ip: PublicIPSpec = Field(default_factory=PublicIPSpec, alias="publicIP")
    ingress: list[IngressRule] = Field(
        default_factory=list,
        max_length=64,
        description="Traffic allowed into the servers besides the template's ports from the "
        "load balancer. Rules not listed here are removed.",
    )
    storage: StorageSpec = Field(default_factory=StorageSpec)
    database: DatabaseSpec | None = None


class ServerStatus(StatusModel):
    name: str
    id: str | None = None
    availability_zone: str | None = None
    address: str | None = None
    status: str | None = None
    template_hash: str | None = None
    volume: str | None = None


class FloatingIPStatus(StatusModel):
    id: str | None = None
    address: str | None = None


class WebSiteResources(StatusModel):
    """IDs of what was built, for people and for the operator's own bookkeeping."""

    network: str | None = None
    subnet: str | None = None
    router: str | None = None
    security_group: str | None = None
    server_group: str | None = None
    servers: list[ServerStatus] = Field(default_factory=list)
    load_balancer: str | None = None
    listeners: dict[str, str] = Field(default_factory=dict, description="port -> listener ID")
    pools: dict[str, str] = Field(default_factory=dict, description="port -> pool ID")
    floating_ip: FloatingIPStatus | None = Field(default=None, alias="floatingIP")


class WebSiteStatus(StatusModel):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    url: str | None = Field(default=None, description="Where the site answers.")
    replicas: int | None = None
    ready_replicas: int | None = None
    resources: WebSiteResources = Field(default_factory=WebSiteResources)
