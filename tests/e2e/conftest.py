from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import (
    REPO,
    Kube,
    Operator,
    cloud,
    sandbox_paths,
    serviceaccount_kubeconfig,
    serviceaccount_mode,
    tenant_secret,
    unique,
)


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
def operator_box(kube, paths, tmp_path_factory):
    """A namespace with credentials and an operator watching it; torn down in order:
    objects deleted while the operator still runs (so finalizers are honoured), then it stops."""
    ns = unique("e2e")
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    kube.apply(tenant_secret(ns, paths.clouds_yaml))
    logs = Path(tmp_path_factory.mktemp("operator"))
    # with the sandbox's kube-controller-manager: as a ServiceAccount with the shipped RBAC
    kubeconfig = (serviceaccount_kubeconfig(kube, ns, logs / "kubeconfig")
                  if serviceaccount_mode(kube) else paths.kubeconfig)
    op = Operator(kubeconfig, ns, logs)
    op.start()
    yield ns, op
    try:
        kube.delete_namespace(ns)
    finally:
        op.stop()


@pytest.fixture(scope="module")
def namespace(operator_box):
    return operator_box[0]


@pytest.fixture(scope="module")
def operator(operator_box) -> Operator:
    return operator_box[1]


def pytest_terminal_summary(terminalreporter):
    """The fault campaign's totals (`make campaign`), when campaign tests ran."""
    from tests.e2e import campaign_totals

    lines = campaign_totals.report()
    if lines:
        terminalreporter.section("fault campaign totals")
        for line in lines:
            terminalreporter.write_line(line)
