"""A kind defined only in the tests (``toy_kind``: one server with a volume and an agent step)
is reconciled to convergence by the generic driver and by the generic handler runner, and
torn down by owner, against the in-memory OpenStack; no WebSite code is involved."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kopf
import pytest

from flexinfra.cloud.gateway import Gateway
from flexinfra.core.tags import Owner
from flexinfra.handlers import runner as runner_module
from flexinfra.reconcile.driver import reconcile
from flexinfra.reconcile.teardown import teardown
from tests.fakecloud import FakeCloud
from tests.unit.toy_kind import VaultKind, VaultSpec

UID = "7a7a7a7a-1111-4222-8333-444455556666"
REPO = Path(__file__).resolve().parents[2]


def cloud_and_gateway() -> tuple[FakeCloud, Gateway]:
    cloud = FakeCloud()
    return cloud, Gateway(cloud.connection(), rate=1e6, burst=10**6, inventory_ttl=3600)


def drive() -> tuple[FakeCloud, Gateway, VaultKind, list]:
    cloud, gw = cloud_and_gateway()
    kind = VaultKind()
    owner = Owner(UID, "ns", "vault", kind="Vault")
    spec = VaultSpec(cloud={"secretName": "s", "cloudName": "c"})
    outcomes = []
    for _ in range(10):
        outcomes.append(reconcile(kind, owner, spec, gw))
        cloud.tick()
        if outcomes[-1].ready:
            break
    return cloud, gw, kind, outcomes


def test_the_generic_driver_converges_a_kind_it_does_not_know():
    cloud, gw, kind, outcomes = drive()
    out = outcomes[-1]
    assert out.ready and out.reason == "Reconciled" and out.message == "vault ready"
    assert [o.reason for o in outcomes].count("Recovering") == 1  # the agent step, once
    (server,) = cloud.objects("server")
    (volume,) = cloud.objects("volume")
    assert server["name"] == "fi-ns-vault-vault-0" and server["status"] == "ACTIVE"
    assert f"flexinfra-owner:{UID}" in server["tags"]
    assert volume["attachments"] == [{"server_id": server["id"]}]
    assert volume["metadata"]["flexinfra-owner"] == UID
    (sg,) = cloud.objects("security_group")
    opened = {(r.get("port_range_min"), r.get("remote_ip_prefix"))
              for r in sg["security_group_rules"]}
    assert {(22, "0.0.0.0/0"), (8443, "10.50.0.0/24")} <= opened
    assert out.status == {"agent": "ready", "address": "10.50.0.10"}
    assert kind.agent.calls[-1] == "https://10.50.0.10:8443/bootstrap"
    assert out.resources == {"servers": [server["id"]], "volumes": [volume["id"]]}

    before = len(cloud.calls)  # idle: a warm inventory, cached lookups, no cloud call at all
    again = reconcile(kind, Owner(UID, "ns", "vault"), VaultSpec(cloud={}), gw)
    assert again.ready and cloud.calls[before:] == []

    for _ in range(6):
        done = teardown(Owner(UID, "ns", "vault"), gw)
        cloud.tick()
        if done.done:
            break
    assert done.done
    assert gw.inventory(max_age=0, with_snapshots=True).owned(UID) == {}
    left = {kind: [r["name"] for r in cloud.objects(kind)] for kind in cloud.store}
    assert left["network"] == ["public"] and not left["server"] and not left["volume"]


def test_no_website_code_is_involved():
    code = (
        "import json, sys\n"
        "from tests.unit.test_toy_kind import drive\n"
        "assert drive()[3][-1].ready\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('flexinfra'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=True)
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "flexinfra.reconcile.driver" in loaded
    assert not [m for m in loaded if "website" in m or "sitetemplate" in m], loaded


def toy_status(body: kopf.Body, outcome, conditions) -> dict:
    return {
        "observedGeneration": body.metadata.get("generation"),
        "conditions": [c.to_k8s() for c in conditions],
        "resources": outcome.resources,
    }


def test_the_generic_handler_runner_drives_it_like_any_kind(monkeypatch):
    cloud, gw = cloud_and_gateway()
    kind = VaultKind()
    events: list[tuple[str, str]] = []
    monkeypatch.setattr(kopf, "event", lambda body, *, type, reason, message:
                        events.append((type, reason)))
    monkeypatch.setattr(runner_module, "gateway_for", lambda namespace, cloud: gw)
    runner = runner_module.Runner("Vault", VaultSpec, toy_status, noun="vault")
    raw = {"apiVersion": "test.flexinfra.io/v1", "kind": "Vault",
           "metadata": {"name": "vault", "namespace": "ns", "uid": UID, "generation": 1},
           "spec": {"cloud": {"secretName": "s", "cloudName": "c"}}}

    def work(owner, spec):
        return reconcile(kind, owner, spec, gw)

    def one_pass(from_timer=False):
        patch = kopf.Patch()
        try:
            runner.run(kopf.Body(raw), patch, work, from_timer=from_timer)
            delay = None
        except kopf.TemporaryError as err:
            delay = err.delay
        raw["status"] = {**raw.get("status", {}), **patch.get("status", {})}
        cloud.tick()
        return patch, delay

    delays = []
    for _ in range(10):
        patch, delay = one_pass()
        delays.append(delay)
        if delay is None:
            break
    ready = {c["type"]: c for c in raw["status"]["conditions"]}
    assert ready["Ready"]["status"] == "True" and ready["Degraded"]["status"] == "False"
    assert delays[-1] is None and all(d is not None for d in delays[:-1])
    assert ("Normal", "Bootstrapping") in events and ("Normal", "Reconciled") in events
    patch, _ = one_pass(from_timer=True)  # the drift timer finds nothing: no write
    assert not patch.get("status")

    for _ in range(6):
        patch = kopf.Patch()
        try:
            runner.delete(kopf.Body(raw), patch, teardown)
            break
        except kopf.TemporaryError:
            cloud.tick()
    assert events[-1] == ("Normal", "Deleted")
    assert gw.inventory(max_age=0, with_snapshots=True).owned(UID) == {}


@pytest.mark.parametrize("field", ["backup", "weight", "monitor_port", "admin_state_up"])
def test_load_balancer_members_carry_their_options(field):
    """What the next kind needs from the load balancer planner: one normal member and the
    others backup, health-checked on an agent port; changes update members in place."""
    from flexinfra.core.objects import CloudObject
    from flexinfra.planning.builder import PlanBuilder
    from flexinfra.planning.load_balancer import (
        LoadBalancerObserved,
        MemberIntent,
        MemberOptions,
        plan_member_options,
        plan_members,
    )

    value = {"backup": True, "weight": 0, "monitor_port": 8443, "admin_state_up": False}[field]
    options = MemberOptions(**{field: value})
    pool = CloudObject("pool", "pool-1", "p")
    observed = LoadBalancerObserved(pools={3306: pool})
    b = PlanBuilder(UID)
    plan_members(b, observed, [MemberIntent(3306, "db-1", 1, "10.0.0.11", options)])
    (create,) = b.plan.actions
    assert create.params[field] == value and create.params["pool_id"] == "pool-1"

    member = CloudObject("member", "m-1", "db-1", "ACTIVE",
                         attrs={"address": "10.0.0.11", field: not value if field != "weight"
                                else 1, "monitor_port": None if field != "monitor_port" else 80})
    observed.members = {3306: [member]}
    b = PlanBuilder(UID)
    plan_member_options(b, observed, {(3306, "10.0.0.11"): options})
    (update,) = b.plan.actions
    assert (update.verb, update.kind, update.target_id) == ("update", "member", "m-1")
    assert update.params == {"pool_id": "pool-1", field: value}
    b = PlanBuilder(UID)
    plan_member_options(b, observed, {(3306, "10.0.0.11"): MemberOptions()})  # no opinion
    assert b.plan.actions == []
