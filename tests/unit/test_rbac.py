"""Item 2: least privilege. The shipped rules are exactly what the code uses, and the chart
grants the same, as Roles only when it watches some namespaces."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def rules_of(docs, kind="ClusterRole"):
    return next(d for d in docs if d and d.get("kind") == kind)["rules"]


def as_set(rules):
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}


SHIPPED = as_set(rules_of(yaml.safe_load_all((REPO / "manifests/rbac.yaml").read_text())))


def test_secrets_are_read_patched_and_only_the_operators_own_made_and_deleted():
    """get: credentials; patch: their in-use finalizer, and the Secrets the operator makes;
    create/delete: a GaleraCluster's agent credentials and root password, a site's database
    credentials (never listed or watched)."""
    assert {v for g, r, v in SHIPPED if r == "secrets"} == {"get", "patch", "create", "delete"}


def test_nothing_cluster_scoped_beyond_what_kopf_and_the_leases_need():
    resources = {r for _, r, _ in SHIPPED}
    assert "namespaces" not in resources and "customresourcedefinitions" not in resources
    assert {v for g, r, v in SHIPPED if r == "leases"} == {"get", "create", "update"}
    assert not [x for x in SHIPPED if x[2] in ("deletecollection", "*")]
    assert {r for _, r, v in SHIPPED if v == "delete"} == {"secrets"}


def _helm(*args):
    helm = shutil.which("helm") or str(Path.home() / ".cache/flexinfra/bin/helm")
    if not Path(helm).exists():
        pytest.skip("helm not installed (the sandbox ships it)")
    out = subprocess.run([helm, "template", "t", str(REPO / "charts/flexinfra"), *args],
                         capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_chart_grants_the_shipped_rules_cluster_wide_by_default():
    docs = _helm()
    assert as_set(rules_of(docs)) == SHIPPED
    assert not [d for d in docs if d["kind"] in ("Role", "RoleBinding")]
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    assert deploy["spec"]["replicas"] == 2


def test_chart_with_watch_namespaces_grants_roles_only():
    docs = _helm("--set", "watchNamespaces={shop-a,shop-b}")
    kinds = [d["kind"] for d in docs]
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    roles = [d for d in docs if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["shop-a", "shop-b"]
    assert all(as_set(r["rules"]) == SHIPPED for r in roles)
