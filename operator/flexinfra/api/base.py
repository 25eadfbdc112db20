"""Shared building blocks of the API models."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

#: a Kubernetes object name (RFC 1123 subdomain label, as kubectl expects)
K8S_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: an IPv4 CIDR such as 10.20.1.0/24
CIDR_PATTERN = (
    r"^((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}"
    r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])/([0-9]|[12][0-9]|3[0-2])$"
)
#: a DNS host name such as www.client-a.fr
HOSTNAME_PATTERN = r"^(\*\.)?([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"

K8sName = Annotated[str, Field(pattern=K8S_NAME_PATTERN, min_length=1, max_length=63)]
Cidr = Annotated[str, Field(pattern=CIDR_PATTERN, examples=["10.20.1.0/24"])]
Port = Annotated[int, Field(ge=1, le=65535)]


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are refused.

    Refusing unknown fields matters: a typo in a manifest (``replica: 3``) would otherwise be
    dropped silently and the site built with defaults.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )

    def to_k8s(self) -> dict:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class StatusModel(ApiModel):
    """Status is written by the operator only; tolerate fields of newer/older versions."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", use_enum_values=True
    )


class CloudRef(ApiModel):
    """Where the OpenStack credentials are: a Secret holding a clouds.yaml."""

    secret_name: K8sName = Field(
        description="Name of a Secret in the same namespace with a `clouds.yaml` key "
        "(the standard OpenStack client configuration file)."
    )
    cloud_name: str = Field(
        min_length=1,
        max_length=253,
        description="Which entry of `clouds:` in that clouds.yaml to use.",
    )
    secret_key: str = Field(
        default="clouds.yaml",
        min_length=1,
        max_length=253,
        description="Key of the Secret holding the clouds.yaml (default `clouds.yaml`).",
    )
