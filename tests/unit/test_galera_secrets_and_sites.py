"""The GaleraCluster's Secrets (generated, refused, certificates by node name) and the pure
part of WebSite.spec.database (reachability, the credentials file in user_data)."""

from __future__ import annotations

import base64

import pytest
import yaml

from flexinfra.api.galera import GaleraClusterSpec
from flexinfra.api.website import WebSiteSpec
from flexinfra.core.errors import InvalidSpec
from flexinfra.core.tags import Owner
from flexinfra.galera.credentials import san_of
from flexinfra.handlers import galera as H
from flexinfra.kinds.site_database import (
    CREDENTIALS_FILE,
    SiteDatabase,
    with_credentials,
    writer_address,
)
from flexinfra.kinds.website import template_hash

OWNER = Owner("uid-g", "ns", "db", "GaleraCluster")


def gspec(**kw) -> GaleraClusterSpec:
    return GaleraClusterSpec.model_validate({
        "cloud": {"secretName": "t", "cloudName": "demo"}, "flavor": "f", "image": "i",
        "network": {"cidr": "10.70.1.0/24"}, **kw})


@pytest.fixture
def secrets(monkeypatch):
    store: dict[str, dict] = {}
    writes = []
    monkeypatch.setattr(H, "read_secret", lambda ns, name: store.get(name))

    def write(ns, name, data, owner, labels=None):
        writes.append((name, owner))
        store[name] = dict(data)
    monkeypatch.setattr(H, "write_secret", write)
    return store, writes


def test_secrets_are_generated_with_an_owner_and_certificates_by_node_name(secrets):
    store, writes = secrets
    s = H.ensure_secrets(OWNER, gspec())
    assert {w[0] for w in writes} == {"db-root", "db-agent-tls"}
    assert all(w[1]["uid"] == "uid-g" and w[1]["kind"] == "GaleraCluster" for w in writes)
    assert H.PASSWORD.match(s.root_password) and H.PASSWORD.match(s.probe_password)
    for n in range(3):
        node = f"{OWNER.prefix}-db-{n}"
        assert san_of(store["db-agent-tls"][f"node-{node}.crt"]) == [node]
    writes.clear()
    again = H.ensure_secrets(OWNER, gspec())  # nothing changes: nothing written
    assert not writes and again.root_password == s.root_password


def test_a_named_root_secret_must_exist_and_hold_its_key(secrets):
    store, writes = secrets
    with pytest.raises(InvalidSpec, match="not found"):
        H.ensure_secrets(OWNER, gspec(rootPasswordSecret={"name": "mine"}))
    store["mine"] = {"pass": "x" * 20}
    with pytest.raises(InvalidSpec, match="has no key 'password'"):
        H.ensure_secrets(OWNER, gspec(rootPasswordSecret={"name": "mine"}))
    store["mine"] = {"password": "short"}
    with pytest.raises(InvalidSpec, match="16-128 characters"):
        H.ensure_secrets(OWNER, gspec(rootPasswordSecret={"name": "mine"}))
    assert not writes  # refused before anything was created
    store["mine"] = {"pw": "y" * 24}
    s = H.ensure_secrets(OWNER, gspec(rootPasswordSecret={"name": "mine", "key": "pw"}))
    assert s.root_password == "y" * 24 and "mine" not in {w[0] for w in writes}


def test_scaling_up_issues_the_new_nodes_certificates_only(secrets):
    store, _ = secrets
    H.ensure_secrets(OWNER, gspec())
    first = store["db-agent-tls"][f"node-{OWNER.prefix}-db-0.crt"]
    H.ensure_secrets(OWNER, gspec(replicas=5))
    assert store["db-agent-tls"][f"node-{OWNER.prefix}-db-0.crt"] == first
    assert f"node-{OWNER.prefix}-db-4.crt" in store["db-agent-tls"]


# --- WebSite.spec.database -------------------------------------------------------------------
def site(**net) -> WebSiteSpec:
    return WebSiteSpec.model_validate({
        "cloud": {"secretName": "t", "cloudName": "demo"}, "template": "web",
        "network": net, "database": {"galeraCluster": "db", "name": "site_a"}})


CLUSTER = {"spec": {"network": {"cidr": "10.70.1.0/24"}, "writer": {}},
           "status": {"endpoint": "10.70.1.5:3306", "publicEndpoint": "203.0.113.9:3306"}}


def test_a_site_on_the_cluster_network_uses_the_vip():
    assert writer_address(site(existingNetwork="fi-ns-db-net"), "ns", "db", CLUSTER) == (
        "10.70.1.5", 3306)


def test_a_site_elsewhere_uses_the_floating_ip_or_is_refused():
    public = {**CLUSTER, "spec": {**CLUSTER["spec"], "writer": {"publicIP": True}}}
    assert writer_address(site(cidr="10.70.8.0/24"), "ns", "db", public) == (
        "203.0.113.9", 3306)
    with pytest.raises(InvalidSpec, match="fi-ns-db-net") as e:
        writer_address(site(cidr="10.70.8.0/24"), "ns", "db", CLUSTER)
    assert "writer.publicIP" in str(e.value)


def test_the_cluster_network_name_is_the_one_the_cluster_made():
    """Names with a dash get a hashed prefix (core.tags.Owner.prefix): the site must look
    for that network, not the plain ``fi-<ns>-<name>-net``."""
    net = f"{Owner('u', 'e2e-1', 'gc-2', 'GaleraCluster').prefix}-net"
    assert net.startswith("fi-e2e-1-gc-2-") and net != "fi-e2e-1-gc-2-net"
    assert writer_address(site(existingNetwork=net), "e2e-1", "gc-2", CLUSTER)[0] == "10.70.1.5"


def test_both_on_one_existing_network():
    shared = {**CLUSTER, "spec": {"network": {"existingNetwork": "office"}, "writer": {}}}
    assert writer_address(site(existingNetwork="office"), "ns", "db", shared)[0] == "10.70.1.5"


DB = SiteDatabase("10.70.1.5", 3306, "site_a", "site_a", "s3cret-s3cret-s3cret")


def _files(user_data: str) -> tuple[dict, dict]:
    doc = yaml.safe_load(user_data.split("\n", 1)[1])
    return doc, {f["path"]: f for f in doc["write_files"]}


def test_a_boot_script_is_wrapped_with_a_root_only_credentials_file():
    doc, files = _files(with_credentials("#!/bin/sh\necho hi\n", DB))
    cred = files[CREDENTIALS_FILE]
    assert cred["permissions"] == "0600" and cred["owner"] == "root:root"
    assert "DB_PASSWORD=s3cret-s3cret-s3cret" in base64.b64decode(cred["content"]).decode()
    script = next(p for p in files if p != CREDENTIALS_FILE)
    assert base64.b64decode(files[script]["content"]).decode() == "#!/bin/sh\necho hi\n"
    assert doc["runcmd"] == [[script]]


def test_a_cloud_config_gets_the_file_added():
    doc, files = _files(with_credentials(
        "#cloud-config\nwrite_files:\n- {path: /etc/x, content: y}\nruncmd: [[ls]]\n", DB))
    assert set(files) == {CREDENTIALS_FILE, "/etc/x"} and doc["runcmd"] == [["ls"]]


def test_the_servers_are_rebuilt_when_their_credentials_change():
    class T:
        image, flavor, user_data, key_name, metadata = "i", "f", "#!/bin/sh\n", None, {}
    assert template_hash(T(), database=DB.fingerprint) != template_hash(T())
    assert DB.password not in DB.fingerprint
