"""What protects an object's cloud resources from being lost: its finalizer, the binding to the
cloud its resources are in, and the in-use protection of its credentials Secret.

* The object's finalizer goes on just before the first cloud write (``guard_for``), never
  earlier: an object that never wrote (a typo in the Secret's name, a missing template)
  deletes at once instead of hanging on "cannot delete cloud resources yet".
* With it goes an annotation recording where the resources are (auth URL, project ID,
  ``cloudName``). A pass whose credentials point elsewhere is refused with ``InvalidSpec``
  before it writes (it would build a second copy there and orphan the first), and so is a
  teardown (it would find nothing there and release the finalizer: a leak).
* The credentials Secret gets a finalizer of its own while an object holding resources names
  it, so deleting a namespace (or the Secret) cannot take the credentials away before the
  objects that need them for their teardown are gone. The last such object's teardown
  removes it.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client.rest import ApiException

from flexinfra import k8s
from flexinfra.api import FINALIZER, GROUP
from flexinfra.core.errors import InvalidSpec, TransientError

#: on a flexinfra object: where its resources are (JSON: authURL, projectID, cloudName)
BINDING_ANNOTATION = f"{GROUP}/cloud-binding"
#: on a credentials Secret while an object holding resources names it
SECRET_FINALIZER = f"{GROUP}/in-use"


def holds_finalizer(body: Any, **_: Any) -> bool:
    """Whether the object wrote to the cloud (also kopf's ``when`` filter of the drift timer
    and the delete handler: an object without it has nothing to check or clean up)."""
    return FINALIZER in (body.get("metadata", {}).get("finalizers") or [])


def binding(identity: tuple[str, str], cloud_name: str) -> dict[str, str]:
    auth_url, project = identity
    return {"authURL": auth_url, "projectID": project, "cloudName": cloud_name}


def recorded_binding(body: Any) -> dict[str, str] | None:
    raw = (body.get("metadata", {}).get("annotations") or {}).get(BINDING_ANNOTATION)
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def binding_problem(recorded: dict[str, str] | None, now: dict[str, str]) -> str | None:
    """Why the current credentials may not act on the recorded resources; None if they may.
    Pure. A change of ``cloudName`` is refused even when it names the same project: it is
    the visible part of a move, and refusing it is what a user expects from the field."""
    if recorded is None:
        return None
    moved = [k for k in ("authURL", "projectID", "cloudName")
             if recorded.get(k) is not None and recorded.get(k) != now.get(k)]
    if not moved:
        return None
    where = (f"project {recorded.get('projectID')} at {recorded.get('authURL') or '?'} "
             f"(cloudName {recorded.get('cloudName')!r})")
    return (f"spec.cloud changed ({', '.join(moved)}) but this object's resources are in {where}: "
            "an object cannot move to another cloud or project. Put spec.cloud back, or "
            "delete the object (its resources go with it) and create it anew")


def guard_for(plural: str, body: Any, keeper: Any = None) -> Any:
    """The hook run before the pass's first write (``reconcile.guard``)."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    cloud = dict(body.get("spec", {}).get("cloud") or {})
    state = {"done": False}

    def hook(gateway: Any) -> None:
        if keeper is not None and not keeper.holds(namespace):
            raise TransientError("this instance no longer holds the namespace's Lease; "
                                 "another instance takes over")
        if state["done"]:
            return
        now = binding(gateway.identity(), str(cloud.get("cloudName")))
        problem = binding_problem(recorded_binding(body), now)
        if problem:
            raise InvalidSpec(problem)
        if not holds_finalizer(body):
            protect_secret(namespace, str(cloud.get("secretName")))
            k8s.set_object_finalizer(plural, namespace, name, FINALIZER, True,
                                     annotations={BINDING_ANNOTATION: json.dumps(now)})
        elif recorded_binding(body) is None:  # made before bindings were recorded
            k8s.annotate(plural, namespace, name, {BINDING_ANNOTATION: json.dumps(now)})
        state["done"] = True

    return hook


def check_binding(body: Any, gateway: Any) -> None:
    """Before a teardown: the credentials must reach the resources' project."""
    cloud = dict(body.get("spec", {}).get("cloud") or {})
    problem = binding_problem(recorded_binding(body),
                              binding(gateway.identity(), str(cloud.get("cloudName"))))
    if problem:
        raise InvalidSpec(problem)


def protect_secret(namespace: str, secret: str) -> None:
    if SECRET_FINALIZER not in k8s.SECRETS_SEEN.get((namespace, secret), []):
        k8s.set_secret_finalizer(namespace, secret, SECRET_FINALIZER, True)
        k8s.SECRETS_SEEN[(namespace, secret)] = [
            *k8s.SECRETS_SEEN.get((namespace, secret), []), SECRET_FINALIZER]


def secret_still_needed(objects: list[dict], secret: str, uid: str) -> bool:
    """Whether another object that holds resources names ``secret``. Pure."""
    for obj in objects:
        meta = obj.get("metadata", {})
        if meta.get("uid") == uid or not holds_finalizer(obj):
            continue
        if (obj.get("spec", {}).get("cloud") or {}).get("secretName") == secret:
            return True
    return False


def release_secret(namespace: str, secret: str, uid: str) -> None:
    """After a teardown: the Secret's finalizer goes when no other object holding resources
    names it (a pass that writes puts it back: ``protect_secret``)."""
    if not secret_still_needed(namespace_objects(namespace), secret, uid):
        k8s.set_secret_finalizer(namespace, secret, SECRET_FINALIZER, False)
        k8s.SECRETS_SEEN.pop((namespace, secret), None)


def namespace_objects(namespace: str) -> list[dict]:
    """Every flexinfra object of the namespace that may hold cloud resources."""
    from flexinfra.api.kinds import KINDS  # here: a kind's handlers load no other kind

    objects: list[dict] = []
    for plural in (k.plural for k in KINDS if k.plural != "sitetemplates"):
        try:
            objects += k8s.list_objects(plural, namespace)
        except ApiException as e:
            if e.status != 404:  # 404: a kind not installed, it holds nothing
                raise
    return objects


def namespace_holds_resources(namespace: str) -> bool:
    """Whether an object of the namespace still holds cloud resources (its teardown is not
    done): the Lease's finalizer stays until none does (``lease``)."""
    return any(holds_finalizer(obj) for obj in namespace_objects(namespace))
