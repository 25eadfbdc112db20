"""Pure status logic: quiet writes, conditions from results, validation messages."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flexinfra.api.conditions import Reason
from flexinfra.api.website import WebSiteSpec
from flexinfra.handlers.common import conditions_for, validation_message
from flexinfra.status import status_patch


def test_unchanged_status_gives_an_empty_patch():
    status = {"url": "http://x", "conditions": [{"type": "Ready", "status": "True"}]}
    assert status_patch(status, dict(status)) == {}


def test_patch_carries_only_changed_keys_and_leaves_foreign_keys_alone():
    current = {"url": "http://old", "replicas": 2, "kopf": {"progress": {}}}
    desired = {"url": "http://new", "replicas": 2}
    assert status_patch(current, desired) == {"url": "http://new"}


def test_conditions_for_a_converged_object():
    conds = conditions_for([], 3, ready=True, reason=Reason.RECONCILED, message="ok",
                           progressing=False)
    by_type = {c.type: c for c in conds}
    assert by_type["Ready"].status == "True"
    assert by_type["Progressing"].status == "False"
    assert by_type["Degraded"].status == "False"
    assert {c.observed_generation for c in conds} == {3}


def test_same_result_twice_gives_identical_conditions():
    first = conditions_for([], 1, ready=False, reason=Reason.PROGRESSING, message="building",
                           progressing=True)
    second = conditions_for(first, 1, ready=False, reason=Reason.PROGRESSING, message="building",
                            progressing=True)
    assert [c.model_dump() for c in first] == [c.model_dump() for c in second]


def test_validation_message_names_the_manifest_field():
    with pytest.raises(ValidationError) as err:
        WebSiteSpec.model_validate({
            "cloud": {"secretName": "s", "cloudName": "c"},
            "template": "web",
            "network": {"cidr": "10.0.0.0/24"},
            "loadBalancer": {"ports": [0]},
        })
    message = validation_message(err.value)
    assert message.startswith("spec.loadBalancer.ports.0:")


def test_a_nested_key_no_longer_wanted_is_removed_and_then_nothing_differs():
    from flexinfra.status import status_patch

    current = {"recovery": {"phase": "Bootstrapping", "bootstrapNode": "db-0"}, "kopf": {}}
    desired = {"recovery": {"phase": "Healthy"}}
    assert status_patch(current, desired) == {
        "recovery": {"phase": "Healthy", "bootstrapNode": None}}
    stored = {"recovery": {"phase": "Healthy"}, "kopf": {}}
    assert status_patch(stored, desired) == {}
    assert status_patch(stored, {"recovery": {"phase": "Healthy", "reason": None}}) == {}
