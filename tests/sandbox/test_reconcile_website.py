"""The WebSite reconcile core against the real sandbox OpenStack (cloud ``demo``, a member).

Each test drives ``reconcile_website`` the way the kopf handler does (call, sleep
``requeue_after``, call again) and always tears down, asserting the tag sweep is empty.
CIDRs: 10.201.x.0/24 only.
"""

from __future__ import annotations

import time
import uuid

import pytest
import yaml

from flexinfra.api.sitetemplate import SiteTemplateSpec
from flexinfra.cloud.connection import ConnectionCache
from flexinfra.cloud.errors import InvalidSpec, TransientError
from flexinfra.cloud.metrics import total_calls
from flexinfra.kinds.website import Owner, reconcile_website
from tests.sandbox.conftest import drive, new_owner, sandbox_template, site_spec, tear_down

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(900)]


def test_site_lifecycle_create_idle_scale_roll_delete(gateway):
    owner = new_owner("life")
    template = sandbox_template(gateway)
    spec = site_spec(gateway, "10.201.1.0/24")
    try:
        calls = total_calls()
        outcome, seconds, passes = drive(owner, spec, template, gateway)
        print(f"READY in {seconds:.1f}s, {passes} passes, {total_calls() - calls:.0f} API calls")
        assert outcome.ready_replicas == 2 and outcome.url
        res = outcome.resources
        assert res.network and res.subnet and res.router and res.security_group
        assert res.load_balancer and len(res.servers) == 2 and res.floating_ip.address

        # idle: with a warm inventory no call at all; a cold one is one list per kind
        calls = total_calls()
        assert reconcile_website(owner, spec, template, gateway).ready
        warm = total_calls() - calls
        gateway.invalidate()
        calls = total_calls()
        assert reconcile_website(owner, spec, template, gateway).ready
        cold = total_calls() - calls
        print(f"idle pass: {warm:.0f} calls warm, {cold:.0f} calls cold")
        assert warm == 0 and cold <= 20

        # drift: a security group rule added behind our back goes away
        gateway.conn.network.create_security_group_rule(
            security_group_id=res.security_group,
            direction="ingress",
            protocol="tcp",
            port_range_min=3306,
            port_range_max=3306,
            remote_ip_prefix="0.0.0.0/0",
        )
        gateway.invalidate()
        outcome = reconcile_website(owner, spec, template, gateway)
        assert any("3306" in a for a in outcome.actions), outcome.actions
        drive(owner, spec, template, gateway)

        # scale down to 1: member first, then server
        spec1 = spec.model_copy(update={"replicas": 1})
        outcome, seconds, _ = drive(owner, spec1, template, gateway)
        assert outcome.ready_replicas == 1 and len(outcome.resources.servers) == 1
        print(f"scaled down in {seconds:.1f}s")

        # template change: rolling replacement
        template2 = sandbox_template(gateway, metadata={"rev": "2"})
        old = {s.id for s in outcome.resources.servers}
        outcome, seconds, _ = drive(owner, spec1, template2, gateway)
        assert {s.id for s in outcome.resources.servers}.isdisjoint(old)
        print(f"rolled in {seconds:.1f}s")
    finally:
        calls = total_calls()
        seconds = tear_down(owner, gateway)
        print(f"deleted in {seconds:.1f}s, {total_calls() - calls:.0f} API calls")
    assert gateway.inventory(max_age=0).owned(owner.uid) == {}


def test_unknown_image_is_invalid_and_builds_nothing(gateway):
    owner = new_owner("badimg")
    template = SiteTemplateSpec(image="no-such-image", flavor="no-such-flavor")
    spec = site_spec(gateway, "10.201.2.0/24")
    with pytest.raises(InvalidSpec) as err:
        reconcile_website(owner, spec, template, gateway)
    assert "no-such-image" in err.value.message and "no-such-flavor" in err.value.message
    assert gateway.inventory(max_age=0).owned(owner.uid) == {}


def test_overlapping_cidr_is_invalid(gateway):
    owner = new_owner("overlap")
    subnets = [s.cidr for s in gateway.conn.network.subnets() if s.ip_version == 4]
    if not subnets:
        pytest.skip("no subnet to overlap with")
    spec = site_spec(gateway, subnets[0])
    with pytest.raises(InvalidSpec, match="overlaps"):
        reconcile_website(owner, spec, sandbox_template(gateway), gateway)
    assert gateway.inventory(max_age=0).owned(owner.uid) == {}


def test_neutron_500_and_lost_response_converge_without_duplicates(clouds_text):
    """A 500 on network create (retried after a lookup by tag), then a create whose response
    is lost (the service acted: adopted by the next pass, not duplicated)."""
    from tests.faultproxy import Fault, FaultProxy

    probe = ConnectionCache().get("probe", "1", clouds_text, "demo")
    upstream = probe.conn.network.get_endpoint()
    data = yaml.safe_load(clouds_text)
    with FaultProxy(upstream) as proxy:
        data["clouds"]["demo"]["network_endpoint_override"] = proxy.url + "/"
        data["clouds"]["demo"]["api_timeout"] = 3
        gateway = ConnectionCache().get("faulty", "1", yaml.safe_dump(data), "demo")
        owner = new_owner("faults")
        spec = site_spec(gateway, "10.201.3.0/24", replicas=1)
        template = sandbox_template(gateway)
        proxy.inject(Fault("POST", r"/networks$", status=500))
        proxy.inject(Fault("POST", r"/subnets$", status=None, stall=5, forward_first=True))
        try:
            # the network's 500 is retried in the call once a lookup by tag found nothing;
            # the subnet got created, its answer lost (timed out: left to the next pass)
            with pytest.raises(TransientError):
                reconcile_website(owner, spec, template, gateway)
            outcome, _, _ = drive(owner, spec, template, gateway)
            assert outcome.ready
            subnets = [s for s in gateway.conn.network.subnets() if s.cidr == "10.201.3.0/24"]
            assert len(subnets) == 1, "the lost-response subnet must be adopted, not duplicated"
            assert [f.hits for f in proxy.faults] == [1, 1]
        finally:
            proxy.clear()
            tear_down(owner, gateway)
        assert gateway.inventory(max_age=0).owned(owner.uid) == {}


def test_nova_and_octavia_faults_are_retried_and_converge(clouds_text):
    """500s on Nova's server list (retried inside the call), a 503 + Retry-After on server
    create (retried: not processed), a 409 on Octavia member create (next pass)."""
    from urllib.parse import urlsplit

    from tests.faultproxy import Fault, FaultProxy

    probe = ConnectionCache().get("probe2", "1", clouds_text, "demo")
    compute_up = probe.conn.compute.get_endpoint()
    lb_up = probe.conn.load_balancer.get_endpoint()
    data = yaml.safe_load(clouds_text)
    with FaultProxy(compute_up) as nova, FaultProxy(lb_up) as octavia:
        demo = data["clouds"]["demo"]
        demo["compute_endpoint_override"] = nova.url + urlsplit(compute_up).path
        # Octavia's versioned root answers 401 to discovery: give the unversioned one
        demo["load_balancer_endpoint_override"] = octavia.url + "/"
        gateway = ConnectionCache().get("faulty2", "1", yaml.safe_dump(data), "demo")
        owner = new_owner("faults2")
        spec = site_spec(gateway, "10.201.4.0/24", replicas=1)
        template = sandbox_template(gateway)
        listing = nova.inject(Fault("GET", r"/servers/detail", status=500, times=2))
        create = nova.inject(Fault("POST", r"/servers$", status=503, headers={"Retry-After": "1"}))
        member = octavia.inject(Fault("POST", r"/members$", status=409, times=1))
        try:
            before = total_calls(service="compute")
            outcome, seconds, passes = drive(owner, spec, template, gateway)
            print(f"READY through faults in {seconds:.1f}s, {passes} passes")
            assert outcome.ready and outcome.ready_replicas == 1
            assert (listing.hits, create.hits, member.hits) == (2, 1, 1)
            assert total_calls(service="compute") > before
            servers = [s for s in gateway.conn.compute.servers() if s.name.startswith(owner.prefix)]
            assert len(servers) == 1, "a retried create must not duplicate the server"
        finally:
            nova.clear()
            octavia.clear()
            tear_down(owner, gateway)
        assert gateway.inventory(max_age=0).owned(owner.uid) == {}


def test_drift_repaired_and_retained_address_survives_recreation(gateway):
    """Delete a server and the load balancer behind the operator's back: both come back and
    the floating IP moves to the new VIP. Then delete the site with publicIP.retain and
    re-create it under a new UID: the same address is adopted."""
    owner = new_owner("drift")
    template = sandbox_template(gateway)
    spec = site_spec(gateway, "10.201.5.0/24", publicIP={"retain": True})
    second = Owner(uid=str(uuid.uuid4()), namespace=owner.namespace, name=owner.name)
    try:
        outcome, _, _ = drive(owner, spec, template, gateway)
        address = outcome.resources.floating_ip.address
        victim = outcome.resources.servers[0].id
        gateway.conn.compute.delete_server(victim)
        gateway.conn.load_balancer.delete_load_balancer(
            outcome.resources.load_balancer, cascade=True
        )
        gateway.invalidate()
        outcome, seconds, passes = drive(owner, spec, template, gateway)
        print(f"drift repaired in {seconds:.1f}s, {passes} passes")
        assert victim not in {s.id for s in outcome.resources.servers}
        assert outcome.ready_replicas == 2
        assert outcome.resources.floating_ip.address == address
        lb = gateway.conn.load_balancer.get_load_balancer(outcome.resources.load_balancer)
        fip = gateway.conn.network.get_ip(outcome.resources.floating_ip.id)
        assert fip.port_id == lb.vip_port_id

        tear_down(owner, gateway)
        kept = [f for f in gateway.conn.network.ips() if f.floating_ip_address == address]
        assert kept and owner.retained_tag in kept[0].tags
        outcome, _, _ = drive(second, spec, template, gateway)
        assert outcome.resources.floating_ip.address == address
    finally:
        tear_down(owner, gateway)
        tear_down(second, gateway)
        for fip in gateway.conn.network.ips():
            if owner.retained_tag in (fip.tags or []):
                gateway.conn.network.delete_ip(fip)
    assert gateway.inventory(max_age=0).owned(second.uid) == {}


def test_two_sites_share_one_inventory(gateway):
    """Idle drift checks cost one listing per tenant, whatever the number of sites."""
    template = sandbox_template(gateway)
    owners = [new_owner("share-a"), new_owner("share-b")]
    specs = [
        site_spec(gateway, "10.201.6.0/24", replicas=1, publicIP={"enabled": False}),
        site_spec(gateway, "10.201.7.0/24", replicas=1, publicIP={"enabled": False}),
    ]
    try:
        for owner, spec in zip(owners, specs, strict=True):
            drive(owner, spec, template, gateway)
        gateway.invalidate()
        calls = total_calls()
        for owner, spec in zip(owners, specs, strict=True):
            assert reconcile_website(owner, spec, template, gateway).ready
        print(f"two idle sites, cold inventory: {total_calls() - calls:.0f} calls")
        assert total_calls() - calls == len(gateway.LISTS)
    finally:
        for owner in owners:
            tear_down(owner, gateway)


def test_volume_per_server_is_created_attached_kept_on_replacement_and_swept(gateway):
    owner = new_owner("vol")
    spec = site_spec(
        gateway,
        "10.201.10.0/24",
        replicas=2,
        storage={"volumeSizeGb": 1},
        publicIP={"enabled": False},
    )
    try:
        outcome, _, _ = drive(owner, spec, sandbox_template(gateway), gateway)
        volumes = {}
        for server in outcome.resources.servers:
            volume = gateway.conn.block_storage.get_volume(server.volume)
            assert volume.status == "in-use"
            assert [a["server_id"] for a in volume.attachments] == [server.id]
            assert volume.metadata["flexinfra-owner"] == owner.uid
            volumes[server.name] = volume.id
        # a template change replaces the servers in place: each successor gets the volume
        outcome, seconds, _ = drive(
            owner, spec, sandbox_template(gateway, metadata={"r": "2"}), gateway
        )
        print(f"rolled with volumes in {seconds:.1f}s")
        assert {s.name: s.volume for s in outcome.resources.servers} == volumes
        for server in outcome.resources.servers:
            volume = gateway.conn.block_storage.get_volume(server.volume)
            assert [a["server_id"] for a in volume.attachments] == [server.id]
    finally:
        tear_down(owner, gateway)
    assert gateway.inventory(max_age=0, with_snapshots=True).owned(owner.uid) == {}


def test_plan_changes_nothing(gateway):
    from flexinfra.kinds.website import plan_website

    owner = new_owner("plan")
    actions = plan_website(
        owner, site_spec(gateway, "10.201.11.0/24"), sandbox_template(gateway), gateway
    )
    kinds = {a.kind for a in actions if a.verb == "create"}
    assert {"network", "subnet", "router", "server", "load_balancer", "floating_ip"} <= kinds
    assert gateway.inventory(max_age=0).owned(owner.uid) == {}


def test_wrong_password_is_a_credentials_error_without_the_password(clouds_text, gateway):
    from flexinfra.cloud.errors import CredentialsError

    data = yaml.safe_load(clouds_text)
    data["clouds"]["demo"]["auth"]["password"] = "Wr0ng-pa55word"
    bad = ConnectionCache().get("bad", "1", yaml.safe_dump(data), "demo")
    with pytest.raises(CredentialsError) as err:
        reconcile_website(
            new_owner("badpw"),
            site_spec(gateway, "10.201.12.0/24"),
            SiteTemplateSpec(image="x", flavor="y"),
            bad,
        )
    assert "Wr0ng" not in err.value.message
    print("credentials message:", err.value.message)


def test_hard_anti_affinity_beyond_hosts_is_a_cloud_error_then_soft_converges(gateway):
    from flexinfra.cloud.errors import CloudError

    hosts = {h.name for h in gateway.conn.compute.availability_zones()}
    owner = new_owner("hard")
    template = sandbox_template(gateway)
    hard = site_spec(
        gateway, "10.201.13.0/24", replicas=3, antiAffinity="hard", publicIP={"enabled": False}
    )
    try:
        started = time.monotonic()
        while True:
            try:
                outcome = reconcile_website(owner, hard, template, gateway)
            except TransientError as err:  # retried, as the handler does
                print("transient:", err.message)
                time.sleep(2)
                continue
            except CloudError as err:
                print("blocked:", err.message)
                assert "no valid host" in err.message.lower()
                break
            assert time.monotonic() - started < 120, f"never blocked ({hosts}): {outcome.message}"
            time.sleep(outcome.requeue_after or 1)
        outcome, seconds, _ = drive(
            owner, hard.model_copy(update={"anti_affinity": "soft"}), template, gateway
        )
        assert outcome.ready_replicas == 3
        print(f"soft converged in {seconds:.1f}s")
    finally:
        tear_down(owner, gateway)


def test_single_replica_template_change_keeps_the_volume_and_its_data(gateway):
    """replicas: 1 + volume: the successor gets the same volume and serves what the first
    server wrote into it (the VM mounts its volume at /mnt/vdb)."""
    from tests.sandbox.test_openstack import http_get

    owner = new_owner("vol1")
    user_data = """#!/bin/sh
until grep -q " /mnt/vdb " /proc/mounts; do sleep 1; done
[ -f /mnt/vdb/first.txt ] || cat /proc/sys/kernel/random/uuid > /mnt/vdb/first.txt
cd /mnt/vdb && exec python3 -m http.server 80 --bind 0.0.0.0
"""
    spec = site_spec(
        gateway,
        "10.202.14.0/24",
        replicas=1,
        storage={"volumeSizeGb": 1},
        publicIP={"enabled": False},
    )
    try:
        outcome, _, _ = drive(owner, spec, sandbox_template(gateway, user_data=user_data), gateway)
        (before,) = outcome.resources.servers
        assert before.volume
        written = http_get(f"http://{before.address}/first.txt", timeout=120).strip()
        assert written
        template2 = sandbox_template(gateway, user_data=user_data, metadata={"r": "2"})
        first = reconcile_website(owner, spec, template2, gateway)
        assert "site is down" in first.message, first.message
        outcome, seconds, _ = drive(owner, spec, template2, gateway)
        print(f"replaced in place in {seconds:.1f}s")
        (after,) = outcome.resources.servers
        assert after.id != before.id and after.volume == before.volume
        assert http_get(f"http://{after.address}/first.txt", timeout=120).strip() == written
    finally:
        tear_down(owner, gateway)
    assert gateway.inventory(max_age=0, with_snapshots=True).owned(owner.uid) == {}
