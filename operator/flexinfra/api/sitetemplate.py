"""SiteTemplate: how every server of a site is built (image, flavor, boot script, ports)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from flexinfra.api.base import ApiModel, Port, StatusModel
from flexinfra.api.conditions import Condition


class Protocol(StrEnum):
    TCP = "TCP"
    UDP = "UDP"


class TemplatePort(ApiModel):
    port: Port = Field(description="A port the application listens on, on every server.")
    protocol: Protocol = Field(default=Protocol.TCP, description="TCP or UDP.")
    name: str | None = Field(
        default=None, max_length=15, pattern=r"^[a-z][a-z0-9-]*$", description="e.g. http."
    )


class SiteTemplateSpec(ApiModel):
    """A server recipe shared by many WebSites (the talk's "templates" for quick deployment)."""

    image: str = Field(
        min_length=1, max_length=255, description="Glance image name or ID the servers boot."
    )
    flavor: str = Field(min_length=1, max_length=255, description="Nova flavor name or ID.")
    user_data: str = Field(
        default="",
        max_length=65535,
        description="Boot script given to every server: a `#!` shell script or a `#cloud-config` "
        "document. Changing it replaces the servers one at a time.",
    )
    ports: list[TemplatePort] = Field(
        default_factory=lambda: [TemplatePort(port=80)],
        min_length=1,
        max_length=16,
        description="Ports the application serves on; the load balancer's members use them.",
        # the API server refuses a port/protocol listed twice at `kubectl apply`
        json_schema_extra={"x-kubernetes-list-type": "map",
                           "x-kubernetes-list-map-keys": ["port", "protocol"]},
    )
    key_name: str | None = Field(
        default=None, max_length=255, description="Nova keypair injected into the servers."
    )
    volume_mount_path: str = Field(
        default="/srv/data",
        pattern=r"^/[^\s]*$",
        description="Where user_data expects a per-server Cinder volume, when a WebSite asks "
        "for one (exported to user_data as FLEXINFRA_VOLUME_PATH).",
    )
    metadata: dict[str, str] = Field(
        default_factory=dict, description="Extra Nova server metadata (key/value)."
    )

    @model_validator(mode="after")
    def _unique_ports(self) -> SiteTemplateSpec:
        seen = [(p.port, p.protocol) for p in self.ports]
        twice = sorted({f"{port}/{proto}" for n, (port, proto) in enumerate(seen)
                        if (port, proto) in seen[:n]})
        if twice:
            raise ValueError(f"ports lists {', '.join(twice)} more than once")
        return self


class SiteTemplateStatus(StatusModel):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    template_hash: str | None = Field(
        default=None, description="Hash of what makes a server; a change rolls the sites using it."
    )
    used_by: list[str] = Field(default_factory=list, description="WebSites using this template.")
