"""Items 5 and 6: nothing applied silently, bad input refused before the first write.

Each bad input is refused either by the model (hence the CRD schema at `kubectl apply`, or
InvalidSpec from the Runner before any cloud call) or by the pass before its first write;
in both cases the fake cloud records no write. ``BAD_SPECS`` is also what the fault
campaign applies to the real sandbox."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flexinfra.api.sitetemplate import SiteTemplateSpec
from flexinfra.cloud.errors import InvalidSpec
from flexinfra.core.tags import Owner
from flexinfra.kinds.website import MAX_PREFIX
from tests.fakecloud import FakeCloud
from tests.unit.golden.pass_corpus import UID, Run, spec, template
from tests.unit.golden.website_api import reconcile_website

WRITES = ("create_", "update_", "delete_", "add_", "remove_", "set_tags")

#: (what, WebSite spec overrides or None, SiteTemplate overrides or None)
BAD_SPECS = [
    ("DNS server not an address", {"network": {"cidr": "10.20.1.0/24",
                                               "dnsNameservers": ["dns.example.com"]}}, None),
    ("host bits in the CIDR", {"network": {"cidr": "10.20.1.7/24"}}, None),
    ("load balancer port twice", {"loadBalancer": {"ports": [80, 80]}}, None),
    ("health-check timeout above delay",
     {"loadBalancer": {"healthCheck": {"delay": 2, "timeout": 5}}}, None),
    ("template port twice", None, {"ports": [{"port": 80}, {"port": 80}]}),
    ("cidr and existingNetwork", {"network": {"cidr": "10.20.1.0/24",
                                              "existingNetwork": "shared"}}, None),
    ("glusterVolume (not supported yet)", {"storage": {"glusterVolume": "shared"}}, None),
]


def writes(cloud: FakeCloud) -> list[str]:
    return [c for c in cloud.calls if c.split(" ")[0].rsplit(".", 1)[1].startswith(WRITES)]


@pytest.mark.parametrize(("what", "site", "tmpl"), BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_bad_input_is_refused_before_any_write(what, site, tmpl):
    run = Run([])
    try:
        s, t = spec(**(site or {})), template(**(tmpl or {}))
    except ValidationError:
        return  # refused by the model: the CRD schema or the Runner, before the cloud
    with pytest.raises(InvalidSpec):
        reconcile_website(run.owner, s, t, run.gateway)
    assert writes(run.cloud) == []


def test_names_too_long_for_openstack_are_refused_before_any_write():
    run = Run([])
    run.owner = Owner(uid=UID, namespace="n" * 63, name="s" * 140)
    assert len(run.owner.prefix) > MAX_PREFIX
    with pytest.raises(InvalidSpec) as err:
        reconcile_website(run.owner, spec(), template(), run.gateway)
    assert "too long" in err.value.message and writes(run.cloud) == []


def test_name_prefixes_cannot_collide():
    a, b = Owner("u1", "a-b", "c"), Owner("u2", "a", "b-c")
    assert a.prefix != b.prefix and a.prefix.startswith("fi-a-b-c-")
    assert Owner("u", "ns", "site").prefix == "fi-ns-site"  # no hyphen: as before


def test_adoption_by_name_takes_only_an_unambiguous_object():
    from flexinfra.cloud.gateway import Snapshot
    from flexinfra.core.kinds import Kind
    from flexinfra.core.objects import CloudObject
    from flexinfra.reconcile.projection import orphans

    one = CloudObject(Kind.NETWORK, "n1", "fi-ns-site-net")
    two = CloudObject(Kind.NETWORK, "n2", "fi-ns-site-net")
    snap = Snapshot({Kind.NETWORK: [one]})
    assert orphans(snap, {}, {Kind.NETWORK: "fi-ns-site-net"}) == {"network:fi-ns-site-net": one}
    snap = Snapshot({Kind.NETWORK: [one, two]})
    assert orphans(snap, {}, {Kind.NETWORK: "fi-ns-site-net"}) == {}


@pytest.mark.parametrize("switch", [
    {"network": {"existingNetwork": "shared"}},
])
def test_switching_network_kind_on_a_built_site_is_refused(switch):
    run = Run([])
    run.drive("build", spec(), template())
    before = len(writes(run.cloud))
    with pytest.raises(InvalidSpec) as err:
        reconcile_website(run.owner, spec(**switch), template(), run.gateway)
    assert "built on its own network" in err.value.message
    assert len(writes(run.cloud)) == before


def test_template_ports_twice_in_the_schema():
    with pytest.raises(ValidationError):
        SiteTemplateSpec.model_validate({"image": "i", "flavor": "f",
                                         "ports": [{"port": 80}, {"port": 80}]})
