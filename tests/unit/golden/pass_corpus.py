"""Whole WebSite passes against the in-memory OpenStack of ``tests/fakecloud.py``: inventory,
observation, plan, quota pre-check, execution, outcome, and teardown, pass by pass.

What is recorded per pass: the outcome (or the error) as the handler would write it, and
every call made to the cloud (sorted: a pass makes independent calls in parallel). The call
list is what the benchmark counts, so an equal golden means equal call counts too.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from flexinfra.api.sitetemplate import SiteTemplateSpec
from flexinfra.api.website import WebSiteSpec
from flexinfra.cloud.errors import FlexinfraError
from flexinfra.cloud.gateway import Gateway
from tests.fakecloud import FakeCloud, Res
from tests.unit.golden import website_api as W

UID = "11111111-2222-4333-8444-555566667777"
USER_DATA = "#!/bin/sh\nexec python3 -m http.server 80\n"


def spec(**over) -> WebSiteSpec:
    raw = {
        "cloud": {"secretName": "tenant", "cloudName": "demo"},
        "template": "web",
        "replicas": 2,
        "availabilityZones": ["az1", "az2"],
        "network": {"cidr": "10.20.1.0/24"},
        "loadBalancer": {"ports": [80], "healthCheck": {"path": "/healthz"}},
        "ingress": [{"port": 80, "from": "0.0.0.0/0"}, {"port": 22, "from": "203.0.113.0/24"}],
    }
    for key, value in over.items():
        raw[key] = value
    return WebSiteSpec.model_validate(raw)


def template(**over) -> SiteTemplateSpec:
    return SiteTemplateSpec.model_validate(
        {"image": "cirros", "flavor": "m1.tiny", "userData": USER_DATA, **over}
    )


class Run:
    """One scenario: a cloud, a gateway on it, and the lines recorded so far."""

    def __init__(self, lines: list[str], cloud: FakeCloud | None = None) -> None:
        self.lines = lines
        self.cloud = cloud or FakeCloud()
        self.gateway = Gateway(self.cloud.connection(), label="fake", rate=1e6, burst=10**6,
                               inventory_ttl=3600)
        self.owner = W.Owner(uid=UID, namespace="ns", name="site")

    def calls(self, since: int) -> None:
        made = self.cloud.calls[since:]
        lists = sum(1 for c in made if c.split(" ")[0].rsplit(".", 1)[1] in LIST_METHODS)
        self.lines.append(f"C {len(made)} calls, {lists} lists")
        self.lines += [f"  {c}" for c in sorted(made)]

    def once(self, label: str, site: WebSiteSpec, tmpl: SiteTemplateSpec):
        self.lines.append(f"--- {label}")
        since = len(self.cloud.calls)
        outcome = None
        try:
            outcome = W.reconcile_website(self.owner, site, tmpl, self.gateway)
        except FlexinfraError as err:
            self.lines.append(f"E {type(err).__name__}: {err.message}")
            self.lines += [f"  event {r}: {m}" for r, m in sorted(err.events)]
        else:
            self.lines.append(
                f"O ready={outcome.ready} reason={outcome.reason} "
                f"ready_replicas={outcome.ready_replicas} url={outcome.url} "
                f"requeue_after={outcome.requeue_after}"
            )
            self.lines.append(f"  message: {outcome.message}")
            self.lines += [f"  event {r}: {m}" for r, m in sorted(outcome.events)]
            self.lines += [f"  did: {a}" for a in outcome.actions]
            resources = outcome.resources.model_dump(by_alias=True, exclude_none=True)
            self.lines.append("  resources: " + json.dumps(resources, sort_keys=True))
        self.calls(since)
        self.cloud.tick()
        return outcome

    def drive(self, label: str, site: WebSiteSpec, tmpl: SiteTemplateSpec, passes: int = 25):
        for n in range(passes):
            outcome = self.once(f"{label} pass {n}", site, tmpl)
            if outcome is None or outcome.ready:
                return outcome
        raise AssertionError(f"{label}: not ready")

    def teardown(self, label: str, passes: int = 10) -> None:
        for n in range(passes):
            self.lines.append(f"--- {label} teardown {n}")
            since = len(self.cloud.calls)
            out = W.teardown_website(self.owner, self.gateway)
            self.lines.append(f"T done={out.done} requeue_after={out.requeue_after}")
            self.lines += [f"  remaining: {r}" for r in out.remaining]
            self.lines += [f"  event {r}: {m}" for r, m in out.events]
            self.calls(since)
            self.cloud.tick()
            if out.done:
                return
        raise AssertionError(f"{label}: teardown not done")

    def plan(self, label: str, site: WebSiteSpec, tmpl: SiteTemplateSpec) -> None:
        self.lines.append(f"--- {label}")
        since = len(self.cloud.calls)
        for action in W.plan_website(self.owner, site, tmpl, self.gateway):
            self.lines.append(f"  {action.describe()}")
        self.calls(since)


LIST_METHODS = {
    "networks", "subnets", "routers", "ports", "security_groups", "ips", "servers",
    "server_groups", "volumes", "snapshots", "load_balancers", "listeners", "pools",
    "health_monitors", "members", "availability_zones",
}


# --- scenarios -------------------------------------------------------------------------------
def lifecycle(run: Run) -> None:
    site, tmpl = spec(), template()
    run.plan("plan of a new site", site, tmpl)
    run.drive("create", site, tmpl)
    run.once("idle, warm inventory", site, tmpl)
    run.gateway.invalidate()
    run.once("idle, cold inventory", site, tmpl)
    sg = next(s for s in run.cloud.objects("security_group") if s["name"] == "fi-ns-site-sg")
    run.cloud.connection().network.create_security_group_rule(
        security_group_id=sg["id"], direction="ingress", ethertype="IPv4", protocol="tcp",
        port_range_min=3306, port_range_max=3306, remote_ip_prefix="0.0.0.0/0")
    run.gateway.invalidate()
    run.drive("rule added behind our back", site, tmpl)
    run.drive("scale to 3", spec(replicas=3), tmpl)
    run.drive("scale to 1", spec(replicas=1), tmpl)
    run.drive("template change", spec(replicas=1), template(userData=USER_DATA + "# v2\n"))
    run.plan("plan of a ready site", spec(replicas=1), template(userData=USER_DATA + "# v2\n"))
    run.teardown("delete")


def volumes_in_place(run: Run) -> None:
    site = spec(replicas=1, storage={"volumeSizeGb": 1}, publicIP={"enabled": False})
    run.drive("create", site, template())
    run.drive("template change", site, template(userData=USER_DATA + "# v2\n"))
    run.drive("scale to 2", spec(replicas=2, storage={"volumeSizeGb": 1},
                                 publicIP={"enabled": False}), template(userData=USER_DATA +
                                                                         "# v2\n"))
    run.teardown("delete")


def retained_ip(run: Run) -> None:
    site = spec(replicas=1, publicIP={"retain": True})
    run.drive("create", site, template())
    run.teardown("delete, keeping the address")
    run.owner = W.Owner(uid="99999999-2222-4333-8444-555566667777", namespace="ns", name="site")
    run.drive("re-create with the same name", site, template())
    run.drive("retain off", spec(replicas=1, publicIP={"retain": False}), template())
    run.teardown("delete")


def existing_network(run: Run) -> None:
    api = run.cloud.connection().network
    net = api.create_network(name="shared", tags=[])
    api.create_subnet(name="shared-v4", network_id=net["id"], cidr="10.30.0.0/24",
                      ip_version=4, tags=[])
    site = spec(replicas=1, network={"existingNetwork": "shared"})
    run.drive("create", site, template())
    run.teardown("delete")


def neutron_refuses_tags_on_create(run: Run) -> None:
    run.cloud.neutron_tags_on_create = False
    run.drive("create", spec(replicas=1, publicIP={"enabled": False}), template())
    run.teardown("delete")


def untagged_orphans_adopted(run: Run) -> None:
    api = run.cloud.connection().network
    net = api.create_network(name="fi-ns-site-net")
    api.create_subnet(name="fi-ns-site-subnet", network_id=net["id"], cidr="10.20.1.0/24",
                      ip_version=4, dns_nameservers=[])
    api.create_security_group(name="fi-ns-site-sg", description="half-made")
    run.cloud.calls.clear()
    run.drive("create", spec(replicas=1), template())
    run.teardown("delete")


def failing_server_blocks(run: Run) -> None:
    run.cloud.failing["fi-ns-site-web-1"] = "Build of instance aborted: disk image is corrupt"
    site = spec(replicas=2)
    for n in range(12):
        if run.once(f"pass {n}", site, template()) is None and n > 3:
            break
    run.once("blocked, again", site, template())
    del run.cloud.failing["fi-ns-site-web-1"]
    failed = next(s for s in run.cloud.objects("server") if s["status"] == "ERROR")
    run.cloud.connection().compute.delete_server(failed["id"])
    run.gateway.invalidate()
    run.drive("the user deleted it", site, template())
    run.teardown("delete")


def no_valid_host_blocks(run: Run) -> None:
    run.cloud.failing["fi-ns-site-web-2"] = "No valid host was found. There are not enough hosts"
    site = spec(replicas=3, antiAffinity="hard", publicIP={"enabled": False})
    for n in range(6):
        if run.once(f"pass {n}", site, template()) is None:
            break
    del run.cloud.failing["fi-ns-site-web-2"]
    run.drive("soft", spec(replicas=3, antiAffinity="soft", publicIP={"enabled": False}),
              template())
    run.teardown("delete")


def refused_before_any_write(run: Run) -> None:
    run.once("missing image", spec(), template(image="nope"))
    run.once("missing template ports", spec(loadBalancer={"ports": [443]}), template())
    run.cloud.quota.update(server=1, load_balancer=0)
    run.once("quota too small", spec(), template())
    run.cloud.quota.clear()
    run.cloud.images.pop("cirros")  # the gateway still has its ID from the last pass
    run.once("image deleted after its lookup was cached", spec(), template())
    run.once("the next pass looks it up again", spec(), template())
    run.teardown("delete")


def load_balancer_deleted_behind_our_back(run: Run) -> None:
    site = spec(replicas=1)
    run.drive("create", site, template())
    lb = run.cloud.objects("load_balancer")[0]
    run.cloud.connection().load_balancer.delete_load_balancer(lb["id"], cascade=True)
    fip = run.cloud.objects("floating_ip")[0]
    fip["port_id"] = None
    run.gateway.invalidate()
    run.drive("rebuilt", site, template())
    run.teardown("delete")


SCENARIOS: list[Callable[[Run], None]] = [
    lifecycle,
    volumes_in_place,
    retained_ip,
    existing_network,
    neutron_refuses_tags_on_create,
    untagged_orphans_adopted,
    failing_server_blocks,
    no_valid_host_blocks,
    refused_before_any_write,
    load_balancer_deleted_behind_our_back,
]


def render_corpus() -> str:
    lines: list[str] = []
    for scenario in SCENARIOS:
        lines.append(f"=== {scenario.__name__}")
        scenario(Run(lines))
    return "\n".join(lines) + "\n"


__all__ = ["Res", "render_corpus"]
