"""The operator killed (SIGKILL) at several points of a create, then restarted: the site
converges with no duplicate and, after delete, no leak."""

from __future__ import annotations

import pytest

from tests.e2e.harness import owned_by, wait_for
from tests.e2e.test_website import template, website

pytestmark = pytest.mark.e2e


def counts(conn, uid: str) -> dict[str, int]:
    return {kind: len(ids) for kind, ids in owned_by(conn, uid).items()}


def test_kill_during_create_never_duplicates(kube, namespace, operator, conn):
    kube.apply(template(namespace, "web", "crash"))
    name = "crashy"
    kube.apply(website(namespace, name, "10.20.5.0/24", replicas=2))
    uid = wait_for(lambda: kube.get("websites", namespace, name)["metadata"].get("uid"), 30,
                   "uid")

    # kill at three moments: once the network exists, once servers exist, once the LB exists
    for stage in ("networks", "servers", "load_balancers"):
        wait_for(lambda stage=stage: owned_by(conn, uid).get(stage), 240, f"{stage} created",
                 every=0.3)
        operator.kill()
        operator.start()

    kube.wait_condition("websites", namespace, name, timeout=400)
    found = counts(conn, uid)
    assert found.get("networks") == 1 and found.get("subnets") == 1, found
    assert found.get("routers") == 1 and found.get("security_groups") == 1, found
    assert found.get("servers") == 2, found
    assert found.get("load_balancers") == 1, found
    assert found.get("floating_ips") == 1, found
    assert found.get("server_groups") == 1, found

    kube.delete("websites", namespace, name)
    wait_for(lambda: not kube.exists("websites", namespace, name), 300, "finalizer released")
    assert owned_by(conn, uid) == {}


def test_kill_during_delete_still_cleans_up(kube, namespace, operator, conn):
    kube.apply(template(namespace, "web", "crash"))
    name = "crashy-delete"
    kube.apply(website(namespace, name, "10.20.6.0/24", replicas=1))
    obj = kube.wait_condition("websites", namespace, name, timeout=400)
    uid = obj["metadata"]["uid"]
    kube.delete("websites", namespace, name)
    wait_for(lambda: not owned_by(conn, uid).get("floating_ips"), 120, "teardown started",
             every=0.3)
    operator.kill()
    operator.start()
    wait_for(lambda: not kube.exists("websites", namespace, name), 300, "finalizer released")
    assert owned_by(conn, uid) == {}
