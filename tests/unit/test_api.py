"""The API models and the CRDs generated from them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from flexinfra.api.conditions import Condition, ConditionType, Reason, set_condition
from flexinfra.api.crds import crd_for, render
from flexinfra.api.kinds import KINDS
from flexinfra.api.website import WebSiteSpec

REPO = Path(__file__).resolve().parents[2]

MINIMAL_SITE = {
    "cloud": {"secretName": "tenant", "cloudName": "fixweb"},
    "template": "lamp",
    "network": {"cidr": "10.20.1.0/24"},
}


def walk(node, path="$"):
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_committed_crd_matches_the_models(kind):
    committed = REPO / "crds" / f"flexinfra.io_{kind.plural}.yaml"
    assert committed.exists(), "run `make crds` and commit crds/"
    assert committed.read_text() == render(kind), (
        f"{committed.name} is out of date with the models: run `make crds` and commit"
    )


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_crd_schema_is_structural(kind):
    schema = crd_for(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in walk(schema):
        if not isinstance(node, dict) or path.endswith(".properties"):
            continue
        assert "$ref" not in node and "anyOf" not in node and "allOf" not in node, path
        assert node.get("additionalProperties") is not False, path
        assert "title" not in node and "examples" not in node, path
        assert node.get("default", "unset") not in ("", None), f"{path}: empty default"
        if "x-kubernetes-preserve-unknown-fields" not in node and not path.endswith(
            ".metadata"
        ):
            assert "type" in node, f"{path} has no type"


def test_crds_have_status_subresource_columns_and_category():
    for kind in KINDS:
        crd = crd_for(kind)
        version = crd["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert crd["spec"]["names"]["categories"] == ["flexinfra"]
        assert crd["spec"]["names"]["shortNames"]
        assert any(c["name"] == "Age" for c in version["additionalPrinterColumns"])


def test_minimal_website_gets_defaults():
    spec = WebSiteSpec.model_validate(MINIMAL_SITE)
    assert spec.replicas == 2
    assert spec.load_balancer.ports == [80]
    assert spec.anti_affinity == "soft"
    assert spec.public_ip.enabled and not spec.public_ip.retain


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"replica": 3}, "replica"),  # a typo must not be dropped silently
        ({"network": {"cidr": "10.20.1.0/24", "existingNetwork": "shared"}}, "exactly one"),
        ({"network": {}}, "exactly one"),
        ({"network": {"cidr": "10.20.1.0/33"}}, "pattern"),
        ({"replicas": -1}, "greater than or equal"),
        ({"ingress": [{"protocol": "tcp", "from": "0.0.0.0/0"}]}, "needs a port"),
        ({"domains": ["not a host"]}, "pattern"),
    ],
)
def test_bad_website_specs_are_refused_with_a_reason(patch, needle):
    with pytest.raises(ValidationError) as err:
        WebSiteSpec.model_validate({**MINIMAL_SITE, **patch})
    assert needle in str(err.value)


def test_ingress_from_alias_round_trips():
    spec = WebSiteSpec.model_validate(
        {**MINIMAL_SITE, "ingress": [{"port": 22, "from": "203.0.113.0/24"}]}
    )
    assert spec.ingress[0].from_ == "203.0.113.0/24"
    assert spec.to_k8s()["ingress"][0]["from"] == "203.0.113.0/24"


def test_set_condition_keeps_transition_time_when_status_does_not_flip():
    conds = set_condition([], ConditionType.READY, False, Reason.PROGRESSING, "a", 1, now="t1")
    conds = set_condition(conds, ConditionType.READY, False, Reason.PROGRESSING, "b", 2, now="t2")
    assert conds[0].last_transition_time == "t1" and conds[0].message == "b"
    conds = set_condition(conds, ConditionType.READY, True, Reason.RECONCILED, "ok", 2, now="t3")
    assert conds[0].last_transition_time == "t3"
    assert isinstance(conds[0], Condition)


def test_conditions_are_kept_in_a_stable_order():
    conds = set_condition([], ConditionType.DEGRADED, False, Reason.AS_EXPECTED, "", 1, now="t")
    conds = set_condition(conds, ConditionType.READY, True, Reason.RECONCILED, "", 1, now="t")
    assert [c.type for c in conds] == ["Ready", "Degraded"]


def test_crd_yaml_parses():
    for path in (REPO / "crds").glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        assert doc["kind"] == "CustomResourceDefinition"
