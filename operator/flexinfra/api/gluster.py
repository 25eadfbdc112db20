"""GlusterVolume: replicated shared storage for the sites' servers."""

from __future__ import annotations

from pydantic import Field, model_validator

from flexinfra.api.base import ApiModel, Cidr, CloudRef, StatusModel
from flexinfra.api.conditions import Condition


class GlusterNetwork(ApiModel):
    cidr: Cidr | None = Field(default=None, description="The storage network.")
    existing_network: str | None = Field(default=None, description="Or join this network.")
    external_network: str = Field(default="public")


class GlusterVolumeSpec(ApiModel):
    cloud: CloudRef
    replicas: int = Field(default=3, ge=2, le=3, description="Data copies: 3, or 2 with arbiter.")
    arbiter: bool = Field(default=False, description="With replicas 2: add a metadata arbiter.")
    brick_size_gb: int = Field(default=10, ge=1, le=16384, description="Cinder volume per brick.")
    volume_type: str | None = None
    flavor: str = Field(min_length=1)
    image: str = Field(min_length=1)
    availability_zones: list[str] = Field(default_factory=list, max_length=8)
    network: GlusterNetwork
    allowed_clients: list[Cidr] = Field(
        default_factory=list, description="CIDRs allowed to mount (auth.allow)."
    )
    options: dict[str, str] = Field(
        default_factory=dict, description="Extra `gluster volume set` options."
    )

    @model_validator(mode="after")
    def _layout(self) -> GlusterVolumeSpec:
        if self.replicas == 2 and not self.arbiter:
            raise ValueError("replicas 2 needs arbiter: true (two copies alone split-brain)")
        if self.replicas == 3 and self.arbiter:
            raise ValueError("arbiter is only for replicas 2")
        return self


class GlusterPeerStatus(StatusModel):
    name: str
    server: str | None = None
    address: str | None = None
    connected: bool | None = None


class GlusterBrickStatus(StatusModel):
    peer: str
    path: str
    online: bool | None = None
    pending_heal: int | None = None
    split_brain: int | None = None


class GlusterVolumeStatus(StatusModel):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    peers: list[GlusterPeerStatus] = Field(default_factory=list)
    bricks: list[GlusterBrickStatus] = Field(default_factory=list)
    pending_heal: int | None = None
    split_brain_entries: list[str] = Field(default_factory=list)
    mount: str | None = Field(default=None, description="e.g. 10.30.0.5:/shared-content")
