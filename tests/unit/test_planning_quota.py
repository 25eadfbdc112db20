"""The quota pre-check refuses a plan the project cannot hold, before any write."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from flexinfra.cloud.errors import CloudError
from flexinfra.planning.model import ObservedSite, Plan, PlannedAction
from flexinfra.reconcile.quota import check_quota


class QuotaOnly:
    """Answers the two quota reads; anything else would be a bug in the check."""

    def __init__(self, instances_left: int, networks_left: int) -> None:
        self.limits = SimpleNamespace(
            absolute=SimpleNamespace(
                instances=10,
                instances_used=10 - instances_left,
                total_cores=100,
                total_cores_used=0,
                total_ram=100_000,
                total_ram_used=0,
            )
        )
        self.quota = SimpleNamespace(
            networks={"limit": 5, "used": 5 - networks_left, "reserved": 0}
        )

    def compute_limits(self):
        return self.limits

    def network_quota(self):
        return self.quota

    def find_flavor(self, _):
        return SimpleNamespace(vcpus=1, ram=512)


def plan(servers: int, networks: int = 1) -> Plan:
    actions = [PlannedAction("create", "network", "n", "missing") for _ in range(networks)]
    actions += [PlannedAction("create", "server", f"s{i}", "missing") for i in range(servers)]
    return Plan(actions=actions)


def test_enough_quota_passes():
    check_quota(QuotaOnly(instances_left=3, networks_left=1), plan(3), ObservedSite(flavor_id="f"))


def test_short_on_instances_and_networks_says_what_to_do():
    with pytest.raises(CloudError) as err:
        check_quota(
            QuotaOnly(instances_left=1, networks_left=0), plan(3), ObservedSite(flavor_id="f")
        )
    message = err.value.message
    assert "instances: need 3, 1 left" in message and "networks: need 1, 0 left" in message
    assert "nothing was created" in message and "raise the project's quota" in message
