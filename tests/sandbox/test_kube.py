"""The sandbox's kube-apiserver does what the operator relies on, seen through kubectl.

Custom resources with a real /status subresource (status and spec written separately), optimistic
concurrency (409 on a stale resourceVersion), authentication (no anonymous access) and RBAC (a
non-admin token is denied until a Role grants it). Each run uses its own API group, so runs do not
collide, and deletes what it creates: deleting the CRD deletes its custom resources (the
apiserver does that itself; there is no controller-manager here).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import ssl
import subprocess
import textwrap
import urllib.error
import urllib.request

import pytest

from flexinfra_sandbox import kube
from flexinfra_sandbox.paths import SandboxPaths

pytestmark = pytest.mark.sandbox

GROUP = f"t{secrets.token_hex(3)}.sandbox-test.flexinfra.io"
PLURAL = "probes"
RESOURCE = f"{PLURAL}.{GROUP}"
NAMESPACE = "default"

CRD = textwrap.dedent(
    f"""\
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: {RESOURCE}
    spec:
      group: {GROUP}
      scope: Namespaced
      names: {{plural: {PLURAL}, singular: probe, kind: Probe}}
      versions:
        - name: v1alpha1
          served: true
          storage: true
          subresources: {{status: {{}}}}
          schema:
            openAPIV3Schema:
              type: object
              properties:
                spec:
                  type: object
                  properties:
                    size: {{type: integer}}
                    color: {{type: string}}
                status:
                  type: object
                  properties:
                    phase: {{type: string}}
                    observedGeneration: {{type: integer}}
                    conditions:
                      type: array
                      items:
                        type: object
                        properties:
                          type: {{type: string}}
                          message: {{type: string}}
    """
)


def _run(env: dict[str, str], *args: str, stdin: str | None = None, check: bool = True):
    proc = subprocess.run(
        ["kubectl", *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )
    if check and proc.returncode != 0:
        pytest.fail(f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def kenv() -> dict[str, str]:
    """The environment `flexinfra sandbox env` gives a person: KUBECONFIG and PATH."""
    paths = SandboxPaths.from_env()
    env = {**os.environ, **kube.env(paths)}
    if not paths.kubeconfig.exists():
        pytest.fail(f"no {paths.kubeconfig}: bring the sandbox up first (flexinfra sandbox up)")
    assert shutil.which("kubectl", path=env["PATH"]) == str(paths.cache / "bin" / "kubectl")
    ready = _run(env, "get", "--raw", "/readyz", check=False)
    if ready.returncode != 0 or ready.stdout.strip() != "ok":
        pytest.fail(f"kube-apiserver not ready (is the sandbox up?): {ready.stderr.strip()}")
    return env


@pytest.fixture(scope="module")
def crd(kenv):
    _run(kenv, "apply", "-f", "-", stdin=CRD)
    try:
        _run(kenv, "wait", "--for=condition=Established", f"crd/{RESOURCE}", "--timeout=30s")
        yield RESOURCE
    finally:
        _run(kenv, "delete", "crd", RESOURCE, "--ignore-not-found", "--timeout=60s")


@pytest.fixture
def probe(kenv, crd):
    """A fresh custom resource; its name."""
    name = f"p-{secrets.token_hex(4)}"
    manifest = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "Probe",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"size": 1, "color": "blue"},
    }
    _run(kenv, "create", "-f", "-", stdin=json.dumps(manifest))
    yield name
    _run(kenv, "delete", crd, name, "-n", NAMESPACE, "--ignore-not-found", "--wait=false")


def _get(kenv, name: str) -> dict:
    return json.loads(_run(kenv, "get", RESOURCE, name, "-n", NAMESPACE, "-o", "json").stdout)


def test_server_is_the_sandbox_apiserver(kenv):
    version = json.loads(_run(kenv, "get", "--raw", "/version").stdout)
    assert version["gitVersion"] == f"v{kube.KUBE_VERSION}"
    ctx = _run(kenv, "config", "current-context").stdout.strip()
    assert ctx == kube.CONTEXT


def test_status_subresource_roundtrip(kenv, probe):
    before = _get(kenv, probe)
    assert before["metadata"]["generation"] == 1
    assert "status" not in before

    status = {"phase": "Ready", "observedGeneration": 1}
    _run(
        kenv,
        "patch",
        RESOURCE,
        probe,
        "-n",
        NAMESPACE,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )

    after = _get(kenv, probe)
    assert after["status"] == status
    assert after["spec"] == before["spec"]
    # a status write is not a spec change: generation stays, resourceVersion moves
    assert after["metadata"]["generation"] == 1
    assert after["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"]


def test_patch_of_main_resource_does_not_change_status(kenv, probe):
    _run(
        kenv,
        "patch",
        RESOURCE,
        probe,
        "-n",
        NAMESPACE,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Ready"}}',
    )

    _run(
        kenv,
        "patch",
        RESOURCE,
        probe,
        "-n",
        NAMESPACE,
        "--type=merge",
        "-p",
        '{"spec": {"size": 3}, "status": {"phase": "Hacked"}}',
    )

    obj = _get(kenv, probe)
    assert obj["spec"] == {"size": 3, "color": "blue"}
    assert obj["status"] == {"phase": "Ready"}
    assert obj["metadata"]["generation"] == 2


def test_patch_of_status_does_not_change_spec(kenv, probe):
    _run(
        kenv,
        "patch",
        RESOURCE,
        probe,
        "-n",
        NAMESPACE,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"spec": {"size": 9}, "status": {"phase": "Ready"}}',
    )

    obj = _get(kenv, probe)
    assert obj["spec"] == {"size": 1, "color": "blue"}
    assert obj["status"] == {"phase": "Ready"}
    assert obj["metadata"]["generation"] == 1


def test_empty_strings_roundtrip(kenv, crd):
    """ "" is a valid `type: string` value, in spec and through /status, also inside a list item.

    kube-apiserver 1.20 built with Go >= 1.16 took any "" decoded from a request for null
    (`must be of type string: "null"`) unless the build patches kube-openapi's validator.
    """
    name = f"p-{secrets.token_hex(4)}"
    manifest = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "Probe",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"size": 0, "color": ""},
    }
    _run(kenv, "create", "-f", "-", stdin=json.dumps(manifest))
    try:
        assert _get(kenv, name)["spec"] == {"size": 0, "color": ""}

        status = {"phase": "", "conditions": [{"type": "Ready", "message": ""}]}
        _run(
            kenv,
            "patch",
            RESOURCE,
            name,
            "-n",
            NAMESPACE,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )
        obj = _get(kenv, name)
        assert obj["status"] == status
        assert obj["spec"] == {"size": 0, "color": ""}

        # a full update (PUT) keeps them too
        obj["spec"]["color"] = ""
        obj["metadata"].pop("managedFields", None)
        _run(kenv, "replace", "-f", "-", stdin=json.dumps(obj))
        assert _get(kenv, name)["spec"] == {"size": 0, "color": ""}

        # control: validation is still on, a number is not a string
        bad = _run(
            kenv,
            "patch",
            RESOURCE,
            name,
            "-n",
            NAMESPACE,
            "--type=merge",
            "-p",
            '{"spec": {"color": 5}}',
            check=False,
        )
        assert bad.returncode != 0
        assert "spec.color in body must be of type string" in bad.stderr
    finally:
        _run(kenv, "delete", crd, name, "-n", NAMESPACE, "--ignore-not-found", "--wait=false")


def test_stale_resource_version_gets_409(kenv, probe):
    stale = _get(kenv, probe)
    _run(
        kenv,
        "patch",
        RESOURCE,
        probe,
        "-n",
        NAMESPACE,
        "--type=merge",
        "-p",
        '{"spec": {"size": 2}}',
    )

    # a full update (PUT) carrying the old resourceVersion
    stale["spec"]["color"] = "red"
    put = _run(kenv, "replace", "-f", "-", "-v=6", stdin=json.dumps(stale), check=False)
    assert put.returncode != 0
    assert "Error from server (Conflict)" in put.stderr
    assert "409 Conflict" in put.stderr
    assert "the object has been modified" in put.stderr

    # a status patch with the old resourceVersion as a precondition
    patch = {
        "metadata": {"resourceVersion": stale["metadata"]["resourceVersion"]},
        "status": {"phase": "Ready"},
    }
    res = _run(
        kenv,
        "patch",
        RESOURCE,
        probe,
        "-n",
        NAMESPACE,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(patch),
        "-v=6",
        check=False,
    )
    assert res.returncode != 0
    assert "409 Conflict" in res.stderr

    obj = _get(kenv, probe)
    assert obj["spec"] == {"size": 2, "color": "blue"}
    assert "status" not in obj


def test_anonymous_and_unknown_tokens_are_rejected(kenv):
    ca = SandboxPaths.from_env().etc / "kube" / "ca.crt"
    # anonymous: a plain HTTPS request without credentials (kubectl would prompt for a user)
    ctx = ssl.create_default_context(cafile=str(ca))
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{kube.SERVER}/api", timeout=10, context=ctx)
    assert err.value.code == 401

    res = _run(
        kenv,
        "--kubeconfig=/dev/null",
        f"--server={kube.SERVER}",
        f"--certificate-authority={ca}",
        "--token=not-a-token",
        "get",
        "namespaces",
        check=False,
    )
    assert res.returncode != 0
    assert "(Unauthorized)" in res.stderr


def test_rbac_denies_unprivileged_token_until_granted(kenv, probe):
    as_user = ["--context", kube.UNPRIVILEGED_CONTEXT]
    denied = _run(kenv, "get", RESOURCE, probe, "-n", NAMESPACE, *as_user, check=False)
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr
    assert f'User "{kube.UNPRIVILEGED_USER}" cannot get resource "{PLURAL}"' in denied.stderr

    can = _run(kenv, "auth", "can-i", "get", RESOURCE, "-n", NAMESPACE, *as_user, check=False)
    assert can.stdout.strip() == "no"

    # positive control: a Role granting read makes the same call pass, so the denial above
    # came from RBAC and not from a broken credential
    role = f"probe-reader-{secrets.token_hex(3)}"
    _run(kenv, "create", "role", role, "-n", NAMESPACE, "--verb=get,list", f"--resource={RESOURCE}")
    try:
        _run(
            kenv,
            "create",
            "rolebinding",
            role,
            "-n",
            NAMESPACE,
            f"--role={role}",
            f"--user={kube.UNPRIVILEGED_USER}",
        )
        allowed = _run(kenv, "get", RESOURCE, probe, "-n", NAMESPACE, "-o", "name", *as_user)
        assert allowed.stdout.strip() == f"probe.{GROUP}/{probe}"
        still_denied = _run(kenv, "delete", RESOURCE, probe, "-n", NAMESPACE, *as_user, check=False)
        assert still_denied.returncode != 0
        assert "Forbidden" in still_denied.stderr
    finally:
        _run(kenv, "delete", "rolebinding,role", role, "-n", NAMESPACE, "--ignore-not-found")
