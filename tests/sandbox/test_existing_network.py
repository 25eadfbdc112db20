"""A WebSite on a network the tenant already has (``network.existingNetwork``), against the
real sandbox OpenStack as the ``demo`` member.

The network, subnet and router (gateway on ``public``, interface on the subnet) are made
directly with openstacksdk, as an agency's admin would have them; the operator must build the
site on them, never change or delete them, and sweep only what it made.
CIDRs: 10.204.x.0/24 only.
"""

from __future__ import annotations

import ipaddress
import uuid

import pytest

from flexinfra.cloud.errors import InvalidSpec
from flexinfra.kinds.website import plan_website, reconcile_website
from tests.sandbox.conftest import drive, new_owner, sandbox_template, site_spec, tear_down
from tests.sandbox.test_openstack import http_get

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(900)]
#: first letters of every object name the ``cloud`` fixture makes here (see conftest.cloud)
NAME_PREFIX = "xn"
CIDR = "10.204.1.0/24"


@pytest.fixture
def agency_network(cloud):
    """The pre-existing network, subnet, router and the router's interface port on the
    subnet; deleted last (after the site's own teardown)."""
    net, subnet, router = cloud.network(CIDR, router=True)
    (interface,) = router_interfaces(cloud.conn, router.id)
    assert [ip["subnet_id"] for ip in interface.fixed_ips] == [subnet.id]
    return net, subnet, router, interface


@pytest.fixture
def site_owner(gateway, agency_network):
    """A WebSite owner whose objects are torn down before the network goes, even on failure."""
    owner = new_owner("exnet")
    yield owner
    tear_down(owner, gateway)


def router_interfaces(conn, router_id: str) -> list:
    return [
        p
        for p in conn.network.ports(device_id=router_id)
        if "router_interface" in (p.device_owner or "")
    ]


def test_site_on_existing_network_builds_on_it_and_leaves_it_alone(
    gateway, agency_network, site_owner
):
    net, subnet, router, interface = agency_network
    conn, owner = gateway.conn, site_owner
    template = sandbox_template(gateway)

    # by ID as well as by name: the plan puts ports and VIP on it and creates no network kind
    by_id = plan_website(owner, site_spec(gateway, existing_network=net.id), template, gateway)
    assert {a.kind for a in by_id} & {"network", "subnet", "router", "router_interface"} == set()
    ports = [a.params for a in by_id if a.verb == "create" and a.kind == "port"]
    assert len(ports) == 2 and all(p["network_id"] == net.id for p in ports)
    assert all(p["fixed_ips"] == [{"subnet_id": subnet.id}] for p in ports)
    (lb,) = [a.params for a in by_id if a.verb == "create" and a.kind == "load_balancer"]
    assert lb["vip_subnet_id"] == subnet.id

    spec = site_spec(gateway, existing_network=net.name)
    outcome, seconds, passes = drive(owner, spec, template, gateway)
    print(f"READY on the existing network in {seconds:.1f}s, {passes} passes")
    assert outcome.ready_replicas == 2 and outcome.url

    # nothing of the network kinds made by the operator; the router got no second interface
    owned = gateway.inventory(max_age=0).owned(owner.uid)
    for kind in ("network", "subnet", "router"):
        assert owned.get(kind, []) == [], f"operator created a {kind} on an existing network"
    assert [p.id for p in router_interfaces(conn, router.id)] == [interface.id]

    # status names the existing network and subnet, and no router of its own
    res = outcome.resources
    assert (res.network, res.subnet, res.router) == (net.id, subnet.id, None)

    # the servers' ports are on the existing network and subnet, and serve their page there
    assert len(res.servers) == 2
    for server in res.servers:
        (port,) = list(conn.network.ports(device_id=server.id))
        assert port.network_id == net.id
        assert [ip["subnet_id"] for ip in port.fixed_ips] == [subnet.id]
        assert ipaddress.ip_address(server.address) in ipaddress.ip_network(CIDR)
        body = http_get(f"http://{server.address}/", timeout=60, expect="hello from")
        print(f"{server.name} at {server.address}: {body.strip()}")

    # the load balancer's VIP is on the existing subnet, the floating IP on that VIP
    lb = conn.load_balancer.get_load_balancer(res.load_balancer)
    assert (lb.vip_network_id, lb.vip_subnet_id) == (net.id, subnet.id)
    assert ipaddress.ip_address(lb.vip_address) in ipaddress.ip_network(CIDR)
    assert res.floating_ip and res.floating_ip.address
    assert conn.network.get_ip(res.floating_ip.id).port_id == lb.vip_port_id

    # teardown removes the site and leaves the agency's network exactly as it was
    seconds = tear_down(owner, gateway)
    print(f"deleted in {seconds:.1f}s")
    assert gateway.inventory(max_age=0, with_snapshots=True).owned(owner.uid) == {}
    assert conn.network.get_network(net.id).id == net.id
    assert conn.network.get_subnet(subnet.id).cidr == CIDR
    kept = conn.network.get_router(router.id)
    assert kept.external_gateway_info["network_id"] == router.external_gateway_info["network_id"]
    assert [p.id for p in router_interfaces(conn, router.id)] == [interface.id]
    # only the router's interface (and Neutron's own DHCP port, if any) is left on the network
    left = [p for p in conn.network.ports(network_id=net.id) if p.device_id != router.id]
    assert [p.device_owner for p in left if p.device_owner != "network:dhcp"] == []


def test_existing_network_not_found_is_invalid_and_builds_nothing(gateway):
    owner = new_owner("nonet")
    missing = f"xn-no-such-net-{uuid.uuid4().hex[:6]}"
    spec = site_spec(gateway, existing_network=missing)
    with pytest.raises(InvalidSpec) as err:
        reconcile_website(owner, spec, sandbox_template(gateway), gateway)
    print("message:", err.value.message)
    assert missing in err.value.message and "not found" in err.value.message
    assert "existingNetwork" in err.value.message
    assert gateway.inventory(max_age=0, with_snapshots=True).owned(owner.uid) == {}
    assert gateway.conn.network.find_network(missing) is None
