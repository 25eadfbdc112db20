from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import REPO, Kube, Operator, cloud, sandbox_paths, tenant_secret, unique


@pytest.fixture(scope="session")
def paths():
    return sandbox_paths()


@pytest.fixture(scope="session")
def kube(paths) -> Kube:
    k = Kube(paths.kubeconfig)
    k.kubectl("apply", "-f", str(REPO / "crds"))
    for crd in (REPO / "crds").glob("*.yaml"):
        name = crd.name.split("_", 1)[1].removesuffix(".yaml") + ".flexinfra.io"
        k.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    return k


@pytest.fixture(scope="session")
def conn(paths):
    return cloud(paths.clouds_yaml)


@pytest.fixture(scope="module")
def namespace(kube, paths):
    ns = unique("e2e")
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    kube.apply(tenant_secret(ns, paths.clouds_yaml))
    yield ns
    kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture(scope="module")
def operator(kube, namespace, paths, tmp_path_factory) -> Operator:
    op = Operator(paths.kubeconfig, namespace, Path(tmp_path_factory.mktemp("operator")))
    op.start()
    yield op
    op.stop()
