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


#: (namespace, name) -> the finalizers of a credentials Secret when it was last read: the
#: in-use protection checks it without a read of its own
SECRETS_SEEN: dict[tuple[str, str], list[str]] = {}


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
    SECRETS_SEEN[(namespace, secret_name)] = list(secret.metadata.finalizers or [])
    return text, secret.metadata.uid, secret.metadata.resource_version


def annotate(plural: str, namespace: str, name: str, annotations: dict[str, str]) -> None:
    custom().patch_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name, {"metadata": {"annotations": annotations}}
    )


def coordination() -> kubernetes.client.CoordinationV1Api:
    _load_config()
    return kubernetes.client.CoordinationV1Api()


JSON_PATCH = "application/json-patch+json"


def finalizer_patch(current: list[str] | None, finalizer: str, present: bool) -> list[dict]:
    """A JSON patch that adds or removes ``finalizer``, guarded by a ``test`` of the list as it
    was read: a concurrent change (kopf's own finalizer, another controller's) makes the patch
    fail with 422 instead of being overwritten. Empty when nothing is to change. Pure."""
    have = list(current or [])
    if (finalizer in have) == present:
        return []
    want = [*have, finalizer] if present else [f for f in have if f != finalizer]
    if not have:
        return [{"op": "add", "path": "/metadata/finalizers", "value": want}]
    return [{"op": "test", "path": "/metadata/finalizers", "value": have},
            {"op": "replace", "path": "/metadata/finalizers", "value": want}]


def _with_retry(read, patch, finalizer: str, present: bool) -> None:
    for attempt in range(3):
        current = read()
        if current is None:
            return
        ops = finalizer_patch(current, finalizer, present)
        if not ops:
            return
        try:
            patch(ops)
            return
        except ApiException as e:
            if e.status == 404:
                return
            if e.status not in (409, 422) or attempt == 2:
                raise


def set_object_finalizer(plural: str, namespace: str, name: str, finalizer: str,
                         present: bool, annotations: dict[str, str] | None = None) -> None:
    """Add (or remove) our finalizer on a flexinfra object, with annotations in the same write
    (what the first cloud write was made with)."""
    api = custom()

    def read() -> list[str] | None:
        try:
            obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return obj.get("metadata", {}).get("finalizers") or []

    if annotations:  # first: a finalizer is never there without what it was made with
        api.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, {"metadata": {"annotations": annotations}})
    _with_retry(read, lambda ops: api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name, ops, _content_type=JSON_PATCH),
        finalizer, present)


def set_secret_finalizer(namespace: str, name: str, finalizer: str, present: bool) -> None:
    """The in-use protection of a credentials Secret (see ``handlers.credentials``)."""
    api = core()

    def read() -> list[str] | None:
        try:
            return api.read_namespaced_secret(name, namespace).metadata.finalizers or []
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    _with_retry(read, lambda ops: api.patch_namespaced_secret(
        name, namespace, ops, _content_type=JSON_PATCH), finalizer, present)


def list_objects(plural: str, namespace: str) -> list[dict]:
    return custom().list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]


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
