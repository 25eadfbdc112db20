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


# --- Secrets the operator makes (a GaleraCluster's credentials, a site's database) ----------
def read_secret(namespace: str, name: str) -> dict[str, str] | None:
    """The Secret's data decoded, or None when it does not exist."""
    try:
        secret = core().read_namespaced_secret(name, namespace)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    out = {}
    for key, value in (secret.data or {}).items():
        try:
            out[key] = base64.b64decode(value).decode()
        except (ValueError, UnicodeDecodeError):
            out[key] = ""
    return out


def secret_owned_by(namespace: str, name: str, uid: str) -> bool:
    try:
        secret = core().read_namespaced_secret(name, namespace)
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return any(ref.uid == uid for ref in (secret.metadata.owner_references or []))


def owner_reference(kind: str, name: str, uid: str) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "name": name, "uid": uid,
            "controller": True, "blockOwnerDeletion": False}


def write_secret(namespace: str, name: str, data: dict[str, str], owner: dict | None,
                 labels: dict[str, str] | None = None) -> None:
    """Create the Secret, or replace its data when it exists (``stringData``)."""
    body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {},
                         "ownerReferences": [owner] if owner else []},
            "stringData": data}
    try:
        core().create_namespaced_secret(namespace, body)
    except ApiException as e:
        if e.status != 409:
            raise
        core().patch_namespaced_secret(name, namespace, {"stringData": data})


def delete_secret(namespace: str, name: str) -> None:
    try:
        core().delete_namespaced_secret(name, namespace)
    except ApiException as e:
        if e.status != 404:
            raise


def get_custom(plural: str, namespace: str, name: str) -> dict | None:
    try:
        return custom().get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
