"""Operator settings: one typed object, read once at start-up from FLEXINFRA_* variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLEXINFRA_", extra="ignore")

    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to watch; empty = the whole cluster."
    )
    metrics_port: int = Field(default=8080, ge=0, le=65535, description="0 disables /metrics.")
    health_port: int = Field(default=8081, ge=0, le=65535, description="0 disables /healthz.")
    drift_interval: float = Field(
        default=60.0, ge=5, description="Seconds between drift checks of each object."
    )
    inventory_max_age: float = Field(
        default=30.0, ge=1,
        description="A tenant inventory younger than this is reused by every object of the "
        "tenant, so idle cloud calls grow with tenants, not with sites.",
    )
    api_rate: float = Field(
        default=20.0, gt=0,
        description="OpenStack calls per second per tenant (token bucket; bursts of 2x).",
    )
    api_concurrency: int = Field(
        default=8, ge=1,
        description="OpenStack calls in flight per service per tenant; more wait their turn "
        "in the operator instead of in the cloud's queue (where they would time out).",
    )
    retry_delay: float = Field(default=5.0, ge=0.1, description="First retry delay (seconds).")
    retry_max_delay: float = Field(default=120.0, ge=1, description="Cap on retry backoff.")
    member_health: Literal["required", "ignored"] = Field(
        default="required",
        description="required: a load balancer serves (Ready) only once its members are "
        "ONLINE, as the cloud's health monitors report; ignored: for a cloud that reports no "
        "member health, Ready from the API state of the servers and members.",
    )
    galera_interval: float = Field(
        default=2.0, ge=0.5,
        description="Seconds between passes over each GaleraCluster once Ready (its agents' "
        "statuses and a probe write; the tenant inventory is shared and cached): how soon a "
        "failure is acted on beyond what the load balancer's health monitor does itself.",
    )
    operator_cidrs: list[str] = Field(
        default_factory=list,
        description="Where the operator's calls to the Galera agents come from (the agent "
        "port is opened to these only). Empty: each cluster's own subnet, right when the "
        "operator reaches the nodes through a port on that network (the sandbox). In a real "
        "deployment: the egress (NAT) addresses of the Kubernetes nodes, e.g. "
        "[\"198.51.100.7/32\"].",
    )
    peering: str | None = Field(
        default=None, description="kopf peering name (not needed: the namespace Leases keep "
        "one instance acting per namespace whatever the number of replicas)."
    )
    leases: bool = Field(
        default=True, description="Act on a namespace only while holding its Lease "
        "(coordination.k8s.io) `flexinfra-operator`: one active instance per namespace.",
    )
    lease_duration: float = Field(
        default=15.0, ge=3, description="Seconds a Lease stays valid without renewal: how "
        "long a dead instance keeps its namespaces before another takes them.",
    )
    lease_renew: float = Field(default=3.0, gt=0, description="Seconds between renewals.")


_settings: Settings | None = None


def get_settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings()
    return _settings


def set_settings(settings: Settings) -> None:
    global _settings
    _settings = settings
