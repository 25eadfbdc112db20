"""The GaleraCluster planner, pure: what the shared planners are asked for a Galera cluster
(security groups per role with remote-group rules, ports first, per-node boot scripts, the
writer endpoint's members), and the intent built from the spec."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flexinfra.api.galera import GaleraClusterSpec
from flexinfra.core.kinds import Kind, Verb
from flexinfra.core.objects import CloudObject
from flexinfra.core.plan import Plan
from flexinfra.core.tags import Owner
from flexinfra.galera.credentials import ClusterCredentials
from flexinfra.kinds.galera import GALERA, Secrets, template_hash
from flexinfra.kinds.site_database import cluster_network
from flexinfra.planning.galera import (
    HEALTH_PORT,
    GaleraIntent,
    ObservedGalera,
    member_options,
    plan_galera,
    volumes_intact,
)
from flexinfra.planning.security_group import GroupRuleKey, RuleKey, observed_rule_key
from flexinfra.reconcile.executor import Execution

OWNER = Owner("uid-1", "ns", "db", "GaleraCluster")
P = OWNER.prefix
BASE = {"cloud": {"secretName": "t", "cloudName": "demo"}, "flavor": "m1.small",
        "image": "debian", "network": {"cidr": "10.70.1.0/24"}}


def spec(**kw) -> GaleraClusterSpec:
    return GaleraClusterSpec.model_validate({**BASE, **kw})


@pytest.fixture(scope="module")
def creds() -> ClusterCredentials:
    c = ClusterCredentials.generate(P)
    for n in range(5):
        c.ensure_node(f"{P}-db-{n}", [f"{P}-db-{n}"])
    return c


def intent(creds, **kw) -> GaleraIntent:
    return GALERA.intent(OWNER, spec(**kw), secrets=Secrets(creds, "r" * 20, "p" * 20)).cloud


def obj(kind, id_, name="", status=None, tags=(), **attrs) -> CloudObject:
    return CloudObject(Kind(kind), id_, name, status, frozenset(tags), attrs)


def built(i: GaleraIntent, servers: bool = True, writer: str | None = None) -> ObservedGalera:
    """A cluster whose network, groups, ports, volumes (and servers) exist."""
    o = ObservedGalera(writer=writer)
    o.network.network = obj("network", "net", f"{P}-net")
    o.network.subnet = obj("subnet", "sub", f"{P}-subnet", cidr="10.70.1.0/24")
    o.network.router = obj("router", "rtr", f"{P}-router",
                           external_gateway_info={"network_id": "ext"})
    o.network.router_interface = obj("port", "ri")
    o.network.external_network_id = "ext"
    o.fleet.image_id, o.fleet.flavor_id = "img", "flv"
    for n in range(i.replicas):
        tags = ["flexinfra-owner:uid-1", f"flexinfra-index:{n}"]
        o.fleet.ports[n] = obj("port", f"port-{n}", f"{P}-db-{n}", tags=tags,
                               fixed_ips=[{"ip_address": f"10.70.1.{10 + n}"}],
                               security_group_ids=["sg-db", "sg-peers", "sg-agent"])
        o.fleet.volumes[n] = obj("volume", f"vol-{n}", f"{P}-vol-{n}", "in-use",
                                 attachments=[{"server_id": f"srv-{n}"}])
        if servers:
            o.fleet.servers.append(obj("server", f"srv-{n}", f"{P}-db-{n}", "ACTIVE",
                                       tags=[*tags, f"flexinfra-tmpl:{i.template_hash}"]))
    return o


def actions(plan, verb=None, kind=None):
    return [a for a in plan.actions if (verb is None or a.verb is Verb(verb))
            and (kind is None or a.kind is Kind(kind))]


# --- security groups per role -------------------------------------------------------------------
def test_three_security_groups_with_the_rules_of_each_role(creds):
    i = intent(creds, allowedFrom=["192.0.2.0/24"])
    plan = plan_galera(i, ObservedGalera())
    rules: dict[str, set] = {}
    for a in actions(plan, "create", "security_group_rule"):
        rules.setdefault(a.name.removeprefix(f"{P}-").removesuffix("-sg"), set()).add(
            a.params["rule"])
    assert rules["db"] == {
        RuleKey("ingress", "IPv4", "tcp", 3306, 3306, "192.0.2.0/24"),
        RuleKey("ingress", "IPv4", "tcp", 3306, 3306, "10.70.1.0/24")}
    assert rules["peers"] == {GroupRuleKey("ingress", "IPv4", p, n, n, None)
                              for n, p in ((4567, "tcp"), (4567, "udp"), (4568, "tcp"),
                                           (4444, "tcp"))}
    assert rules["agent"] == {
        RuleKey("ingress", "IPv4", "tcp", 8443, 8443, "10.70.1.0/24"),
        RuleKey("ingress", "IPv4", "tcp", HEALTH_PORT, HEALTH_PORT, "10.70.1.0/24"),
        GroupRuleKey("ingress", "IPv4", "tcp", 8443, 8443, None)}
    # remote-group rules name their own group (created in this same plan)
    for a in actions(plan, "create", "security_group_rule"):
        if isinstance(a.params["rule"], GroupRuleKey):
            assert a.params["remote_group_id"] == a.params["security_group_id"]


def test_the_agent_port_is_opened_to_the_operator_cidrs_only_when_set(creds):
    i = intent(creds)
    i = GaleraIntent(**{**i.__dict__, "operator_cidrs": ("198.51.100.7/32",)})
    plan = plan_galera(i, ObservedGalera())
    agent = {a.params["rule"] for a in actions(plan, "create", "security_group_rule")
             if a.name == f"{P}-agent-sg"}
    assert RuleKey("ingress", "IPv4", "tcp", 8443, 8443, "198.51.100.7/32") in agent
    assert RuleKey("ingress", "IPv4", "tcp", 8443, 8443, "10.70.1.0/24") not in agent


def test_an_observed_remote_group_rule_is_not_drift():
    rule = {"id": "r1", "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
            "port_range_min": 4567, "port_range_max": 4567, "remote_group_id": "sg-peers"}
    assert observed_rule_key(rule, "sg-peers") == GroupRuleKey(
        "ingress", "IPv4", "tcp", 4567, 4567, None, "self")
    # another group as the source is another rule (and a CIDR rule is not "any source")
    assert observed_rule_key(rule, "sg-other").remote_group == "sg-peers"


# --- ports first, per-node boot scripts --------------------------------------------------------
def test_ports_and_volumes_of_every_node_before_any_server(creds):
    i = intent(creds)
    o = built(i, servers=False)
    o.fleet.ports.pop(2)
    o.fleet.volumes.pop(1)
    plan = plan_galera(i, o)
    assert not actions(plan, "create", "server")
    assert [a.name for a in actions(plan, "create", "port")] == [f"{P}-db-2"]
    assert [a.name for a in actions(plan, "create", "volume")] == [f"{P}-vol-1"]
    assert any("ports and volumes of every node first" in w for w in plan.waiting)


def test_each_server_boots_with_its_own_config_listing_every_address(creds):
    i = intent(creds)
    plan = plan_galera(i, built(i, servers=False))
    servers = actions(plan, "create", "server")
    assert [a.name for a in servers] == [f"{P}-db-{n}" for n in range(3)]
    import base64

    import yaml
    for n, a in enumerate(servers):
        doc = yaml.safe_load(a.params["user_data"].split("\n", 1)[1])
        files = {f["path"]: base64.b64decode(f["content"]).decode(errors="replace")
                 for f in doc["write_files"]}
        cnf = files["/etc/flexinfra/my.cnf"]
        assert "wsrep_cluster_address = gcomm://10.70.1.10,10.70.1.11,10.70.1.12" in cnf
        assert f"wsrep_node_name = {P}-db-{n}" in cnf
        assert f"wsrep_node_address = 10.70.1.1{n}" in cnf
        assert "evs.suspect_timeout=PT2S" in cnf
        assert f"/dev/disk/by-id/virtio-vol-{n}" in files["/usr/local/sbin/flexinfra-agent-start"]
        assert a.params["port_id"] == f"port-{n}"


def test_a_gone_server_is_recreated_on_its_port_and_volume(creds):
    i = intent(creds)
    o = built(i)
    o.fleet.servers.pop(1)
    o.fleet.volumes[1] = obj("volume", "vol-1", f"{P}-vol-1", "available")
    plan = plan_galera(i, o)
    (server,) = actions(plan, "create", "server")
    assert server.name == f"{P}-db-1" and server.params["port_id"] == "port-1"
    assert not actions(plan, "create", "volume") and not actions(plan, "create", "port")


def test_the_template_hash_leaves_out_the_peers_and_the_agent():
    three, five = spec(replicas=3), spec(replicas=5)
    assert template_hash(three) == template_hash(five)
    assert template_hash(spec(mariadb={"settings": {"max_connections": "500"}})) != \
        template_hash(three)
    assert template_hash(spec(sstMethod="mariabackup")) != template_hash(three)


# --- the writer endpoint -------------------------------------------------------------------------
def lb_built(i: GaleraIntent, o: ObservedGalera, backups: dict[int, bool]) -> None:
    o.lb.load_balancer = obj("load_balancer", "lb", f"{P}-lb", "ACTIVE", vip_address="10.70.1.5",
                             vip_port_id="vip")
    o.lb.listeners[3306] = obj("listener", "lis", f"{P}-lis-3306", "ACTIVE", protocol="TCP",
                               default_pool_id="pool")
    o.lb.pools[3306] = obj("pool", "pool", f"{P}-pool-3306", "ACTIVE",
                           lb_algorithm="ROUND_ROBIN")
    o.lb.health_monitors[3306] = obj("health_monitor", "hm", f"{P}-hm-3306", "ACTIVE",
                                     type="HTTP", delay=2, timeout=1, max_retries=2,
                                     max_retries_down=2, url_path="/health",
                                     expected_codes="200")
    o.lb.members[3306] = [obj("member", f"m{n}", f"{P}-db-{n}", address=f"10.70.1.{10 + n}",
                              backup=b, monitor_port=HEALTH_PORT)
                          for n, b in backups.items()]
    o.fleet.pools, o.fleet.members = o.lb.pools, o.lb.members


def test_new_members_one_writer_the_others_backup_checked_on_the_agent(creds):
    i = intent(creds)
    o = built(i, writer=f"{P}-db-1")
    lb_built(i, o, {})
    plan = plan_galera(i, o)
    members = {a.name: a.params for a in actions(plan, "create", "member")}
    assert {n: p["backup"] for n, p in members.items()} == {
        f"{P}-db-0": True, f"{P}-db-1": False, f"{P}-db-2": True}
    assert all(p["monitor_port"] == HEALTH_PORT and p["protocol_port"] == 3306
               for p in members.values())


def test_set_writer_becomes_member_option_updates(creds):
    i = intent(creds)
    o = built(i, writer=f"{P}-db-2")
    lb_built(i, o, {0: False, 1: True, 2: True})
    plan = plan_galera(i, o)
    updates = {a.name: a.params["backup"] for a in actions(plan, "update", "member")}
    assert updates == {f"{P}-db-0": True, f"{P}-db-2": False}
    o2 = built(i, writer=f"{P}-db-0")
    lb_built(i, o2, {0: False, 1: True, 2: True})
    assert not actions(plan_galera(i, o2), "update")  # converged: nothing to do


def test_read_endpoint_and_public_ip(creds):
    i = intent(creds, readEndpoint={"enabled": True}, writer={"publicIP": True},
               allowedFrom=["192.0.2.0/24"])
    o = built(i)
    lb_built(i, o, {0: False, 1: True, 2: True})
    plan = plan_galera(i, o)
    (listener,) = actions(plan, "create", "listener")
    assert listener.params["protocol_port"] == 3307
    assert listener.params["allowed_cidrs"] == ["10.70.1.0/24", "192.0.2.0/24"]
    assert actions(plan, "update", "listener")[0].params["allowed_cidrs"] == [
        "10.70.1.0/24", "192.0.2.0/24"]
    assert member_options(i, 3307, f"{P}-db-1", f"{P}-db-0").backup is False
    assert actions(plan, "create", "floating_ip")


def test_volume_state_for_decide():
    o = ObservedGalera()
    o.fleet.ports = {0: obj("port", "p0"), 1: obj("port", "p1")}
    o.fleet.volumes = {0: obj("volume", "v0", status="in-use"),
                       2: obj("volume", "v2", status="error")}
    assert dict(volumes_intact(o, 3)) == {0: True, 1: False, 2: False}
    assert volumes_intact(ObservedGalera(), 1)[0] is None


# --- the API refuses what cannot be built --------------------------------------------------------
@pytest.mark.parametrize("bad, words", [
    ({"replicas": 4}, "odd"),
    ({"replicas": 1}, "greater than or equal to 3"),
    ({"volume": {"sizeGb": 0}}, "greater than or equal to 1"),
    ({"mariadb": {"settings": {"wsrep_provider": "x"}}}, "managed by the operator"),
    ({"mariadb": {"settings": {"datadir": "/tmp"}}}, "managed by the operator"),
    ({"mariadb": {"settings": {"max_connections": "1\n[client]"}}}, "cannot carry"),
    ({"mariadb": {"settings": {"Bad Name": "1"}}}, "not a MariaDB variable name"),
    ({"readEndpoint": {"enabled": True, "port": 3306}}, "must differ"),
    ({"backups": {"schedule": "0 3 * * *"}}, "Extra inputs are not permitted"),
    ({"network": {"cidr": "10.70.1.0/24", "existingNetwork": "x"}}, "exactly one"),
])
def test_bad_specs_are_refused_with_a_clear_message(bad, words):
    with pytest.raises(ValidationError) as e:
        spec(**bad)
    assert words in str(e.value)


def test_a_rolling_replacement_waits_until_every_node_is_synced(creds):
    i = intent(creds)
    o = built(i)
    old = o.fleet.servers[0]
    o.fleet.servers[0] = obj("server", old.id, old.name, "ACTIVE",
                             tags=[t for t in old.tags if not t.startswith("flexinfra-tmpl")]
                             + ["flexinfra-tmpl:old"])
    lb_built(i, o, {0: False, 1: True, 2: True})
    assert [a.name for a in actions(plan_galera(i, o), "delete")] == [f"{P}-db-0"]  # drain
    o.all_synced = False
    plan = plan_galera(i, o)
    assert not actions(plan, "delete")
    assert any("once every node is Synced" in w for w in plan.waiting)


@pytest.mark.parametrize("network, expected", [
    ({"cidr": "10.70.1.0/24"}, f"{P}-net"),
    ({"existingNetwork": "shared-db-net"}, "shared-db-net"),
])
def test_the_status_names_the_network_a_site_joins_to_reach_the_writer(creds, network, expected):
    """status.network is the name a WebSite with spec.database puts in existingNetwork, and
    the one the site's check compares it with."""
    full = GALERA.intent(OWNER, spec(network=network), secrets=Secrets(creds, "r" * 20, "p" * 20))
    status = GALERA.status(full, built(full.cloud), Plan(), Execution())
    assert status.resources["network"] == expected
    assert cluster_network(OWNER.namespace, OWNER.name, {"network": network}) == expected
