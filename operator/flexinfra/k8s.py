"""The few Kubernetes reads and writes the handlers make, outside kopf's own machinery."""

from __future__ import annotations

import base64
import functools

import kubernetes
from kubernetes.client.rest import ApiException

from flexinfra.api import GROUP, VERSION
from flexinfra.core.errors import CredentialsError


@functools.cache
def _load_config() -> None:
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()


def core() -> kubernetes.client.CoreV1Api:
    _load_config()
    return kubernetes.client.CoreV1Api()


def custom() -> kubernetes.client.CustomObjectsApi:
    _load_config()
    return kubernetes.client.CustomObjectsApi()


def read_clouds_yaml(namespace: str, secret_name: str, key: str) -> tuple[str, str, str]:
    """(clouds.yaml text, secret uid, resourceVersion); CredentialsError says what is wrong."""
    try:
        secret = core().read_namespaced_secret(secret_name, namespace)
    except ApiException as e:
        if e.status == 404:
            raise CredentialsError(
                f"Secret {namespace}/{secret_name} not found: create it with a `clouds.yaml` key "
                f"(kubectl -n {namespace} create secret generic {secret_name} "
                f"--from-file=clouds.yaml)"
            ) from None
        if e.status == 403:
            raise CredentialsError(
                f"the operator may not read Secret {namespace}/{secret_name} (403): "
                "grant it get on secrets in this namespace"
            ) from None
        raise
    data = secret.data or {}
    if key not in data:
        raise CredentialsError(
            f"Secret {namespace}/{secret_name} has no key {key!r} "
            f"(keys: {', '.join(sorted(data)) or 'none'}); put the clouds.yaml under {key!r} "
            "or set spec.cloud.secretKey"
        )
    try:
        text = base64.b64decode(data[key]).decode()
    except (ValueError, UnicodeDecodeError):
        raise CredentialsError(
            f"Secret {namespace}/{secret_name} key {key!r} is not UTF-8 text"
        ) from None
    return text, secret.metadata.uid, secret.metadata.resource_version


def annotate(plural: str, namespace: str, name: str, annotations: dict[str, str]) -> None:
    custom().patch_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name, {"metadata": {"annotations": annotations}}
    )
