"""`flexinfra plan`: what applying would change, computed against the real cloud, changing
nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from tests.e2e.harness import owned_by, unique
from tests.e2e.test_website import template, website

pytestmark = pytest.mark.e2e


def plan(paths, manifest_path, kubeconfig: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(paths.clouds_yaml),
           "KUBECONFIG": kubeconfig or "/nonexistent"}
    return subprocess.run([sys.executable, "-m", "flexinfra", "plan", "-f", str(manifest_path)],
                          capture_output=True, text=True, env=env, timeout=120)


def test_plan_of_a_new_site_lists_creates_and_changes_nothing(paths, conn, tmp_path):
    ns = unique("plan")
    manifest = tmp_path / "site.yaml"
    manifest.write_text(yaml.safe_dump_all([template(ns, "web", "p"),
                                            website(ns, "planned", "10.20.4.0/24")]))
    result = plan(paths, manifest, kubeconfig=None)
    assert result.returncode == 0, result.stderr
    assert f"WebSite {ns}/planned (new, cloud demo)" in result.stdout
    for line in ("+ create network", "+ create server", "+ create load_balancer",
                 "+ create floating_ip"):
        assert line in result.stdout, result.stdout
    prefix = f"fi-{ns}-planned"
    assert not [n.name for n in conn.network.networks() if n.name.startswith(prefix)]
    assert not [s.name for s in conn.compute.servers() if s.name.startswith(prefix)]


def test_plan_of_a_ready_site_is_empty(kube, namespace, operator, paths, conn, tmp_path):
    kube.apply(template(namespace, "web", "p"))
    site = website(namespace, unique("planned"), "10.20.2.0/24", replicas=1)
    kube.apply(site)
    obj = kube.wait_condition("websites", namespace, site["metadata"]["name"], timeout=300)
    manifest = tmp_path / "site.yaml"
    manifest.write_text(yaml.safe_dump(site))
    result = plan(paths, manifest, kubeconfig=str(paths.kubeconfig))
    assert result.returncode == 0, result.stderr
    assert "(exists, cloud demo): no change(s)" in result.stdout, result.stdout
    kube.delete("websites", namespace, site["metadata"]["name"])
    from tests.e2e.harness import wait_for

    wait_for(lambda: not kube.exists("websites", namespace, site["metadata"]["name"]), 300,
             "deletion")
    assert owned_by(conn, obj["metadata"]["uid"]) == {}
