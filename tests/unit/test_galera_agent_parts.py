"""The agent's pieces that need no MariaDB, the credentials, the zipapp and the user_data."""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import json
import os
import ssl
import subprocess
import sys
import threading
import zipfile
from io import BytesIO
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from flexinfra.agent import mariadb, peers
from flexinfra.agent.bundle import build_zipapp, slim
from flexinfra.agent.config import AgentConfig
from flexinfra.agent.process import is_mountpoint
from flexinfra.agent.supervisor import Supervisor
from flexinfra.galera.client import AgentClient, AgentError, AgentUnreachable, client_context
from flexinfra.galera.credentials import ClusterCredentials, san_of
from flexinfra.galera.mycnf import GaleraNodeConfig, ServerLayout, render_my_cnf
from flexinfra.galera.userdata import (
    AGENT_JSON,
    AGENT_PYZ,
    MAX_USER_DATA,
    NOVA_LIMIT,
    NodeBoot,
    render_user_data,
)

REPO = Path(__file__).resolve().parents[2]
U = "0c4a3d58-f00d-11f1-9a8e-2a4a1c0e5f11"
ADDRS = ("10.20.5.11", "10.20.5.12", "10.20.5.13")


# --- grastate, recovery log, my.cnf ----------------------------------------------------------

def test_grastate_read_and_set_safe_to_bootstrap(tmp_path):
    assert mariadb.read_grastate(str(tmp_path)) is None
    (tmp_path / "grastate.dat").write_text(
        f"# GALERA saved state\nversion: 2.1\nuuid:    {U}\nseqno:   -1\n"
        "safe_to_bootstrap: 0\n")
    os.chmod(tmp_path / "grastate.dat", 0o640)
    gs = mariadb.read_grastate(str(tmp_path))
    assert gs == mariadb.GraState(U, -1, False)
    mariadb.set_safe_to_bootstrap(str(tmp_path))
    text = (tmp_path / "grastate.dat").read_text()
    assert "safe_to_bootstrap: 1" in text and f"uuid:    {U}" in text and "version: 2.1" in text
    assert mariadb.read_grastate(str(tmp_path)).safe_to_bootstrap
    assert (tmp_path / "grastate.dat").stat().st_mode & 0o777 == 0o640  # mode kept


def test_recovered_position_parsed_from_the_log():
    log = ("2026-12-04 16:53:42 0 [Note] InnoDB: Starting crash recovery\n"
           f"2026-12-04 16:53:43 0 [Note] WSREP: Recovered position: {U}:1234\n")
    assert mariadb.parse_recovered_position(log) == (U, 1234)
    empty = ("[Note] WSREP: Recovered position: "
             "00000000-0000-0000-0000-000000000000:-1\n")
    assert mariadb.parse_recovered_position(empty) == (mariadb.ZERO_UUID, -1)
    assert mariadb.parse_recovered_position("nothing here") is None


def test_my_cnf_is_what_the_agent_reads(tmp_path):
    layout = ServerLayout(datadir="/mnt/vdb/mysql")
    text = render_my_cnf(GaleraNodeConfig(cluster="shared-db", node="db-1", address=ADDRS[1],
                                          addresses=ADDRS, layout=layout))
    for line in ("binlog_format = ROW", "innodb_autoinc_lock_mode = 2",
                 "wsrep_provider = /usr/lib/galera/libgalera_smm.so",
                 "wsrep_cluster_address = gcomm://10.20.5.11,10.20.5.12,10.20.5.13",
                 "wsrep_node_address = 10.20.5.12", "wsrep_node_name = db-1",
                 "wsrep_sst_method = rsync", "datadir = /mnt/vdb/mysql",
                 "bind-address = 10.20.5.12"):
        assert line in text
    fast = render_my_cnf(GaleraNodeConfig(
        cluster="c", node="db-1", address=ADDRS[1], addresses=ADDRS,
        provider_options=(("evs.suspect_timeout", "PT2S"), ("evs.inactive_timeout", "PT4S"))))
    assert ('wsrep_provider_options = "gcache.size=256M; evs.suspect_timeout=PT2S; '
            'evs.inactive_timeout=PT4S"') in fast
    (tmp_path / "my.cnf").write_text(text)
    paths = mariadb.ServerPaths.from_defaults_file(str(tmp_path / "my.cnf"))
    assert paths.datadir == "/mnt/vdb/mysql" and paths.socket == "/run/mysqld/mysqld.sock"
    assert paths.address == "10.20.5.12"


@pytest.mark.parametrize("bad", [
    {"address": "10.9.9.9"},
    {"cluster": "x\n[client]"},
    {"settings": (("innodb_buffer_pool_size", "1G\nwsrep_on=OFF"),)},
    {"settings": (("bad key", "1"),)},
    {"provider_options": (("evs.suspect_timeout", "PT2S; pc.bootstrap=YES"),)},
])
def test_my_cnf_refuses_what_it_cannot_carry(bad):
    args = {"cluster": "c", "node": "db-0", "address": ADDRS[0], "addresses": ADDRS, **bad}
    with pytest.raises(ValueError):
        render_my_cnf(GaleraNodeConfig(**args))


def test_database_sql_is_validated_not_escaped():
    sql = mariadb.database_sql("client_a", "client_a", "Abcdefghij0123456789", "10.20.1.%")
    assert "CREATE DATABASE IF NOT EXISTS `client_a`" in sql
    assert "GRANT ALL PRIVILEGES ON `client_a`.* TO 'client_a'@'10.20.1.%'" in sql
    for args in (("a`b", "u", "p" * 20), ("a", "u'x", "p" * 20), ("a", "u", "short"),
                 ("a", "u", "p" * 19 + "'"), ("a", "u", "p" * 20, "host'; DROP")):
        with pytest.raises(ValueError):
            mariadb.database_sql(*args)


def test_agent_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown"):
        AgentConfig.from_dict({"node": "db-0", "address": "10.0.0.1", "tokn": "x"})
    cfg = AgentConfig.from_dict({"node": "db-0", "address": "10.0.0.1", "peers": ["10.0.0.2"]})
    assert cfg.peers == ("10.0.0.2",) and cfg.run_as == "mysql"


def test_is_mountpoint():
    assert is_mountpoint("/") and is_mountpoint("/proc")
    assert not is_mountpoint("/definitely/not/here")


# --- the restart policy's evidence ------------------------------------------------------------

def _peer(status, state="Synced", addrs=("10.0.0.1:3306", "10.0.0.2:3306")):
    return {"wsrep": {"cluster_status": status, "local_state_comment": state, "ready": True,
                      "incoming_addresses": list(addrs)}}


def test_rejoin_only_when_a_primary_peer_has_dropped_this_node():
    me = "10.0.0.3"
    assert peers.rejoin_target({"10.0.0.1": _peer("Primary")}, me) == "10.0.0.1"
    # still in the view: the old incarnation has not been evicted yet
    in_view = _peer("Primary", addrs=("10.0.0.1:3306", "10.0.0.3:3306"))
    assert peers.rejoin_target({"10.0.0.1": in_view}, me) is None
    assert peers.rejoin_target({"10.0.0.1": _peer("non-Primary")}, me) is None
    assert peers.rejoin_target({"10.0.0.1": _peer("Primary", "Donor/Desynced")}, me) is None
    assert peers.rejoin_target({"10.0.0.1": None, "10.0.0.2": None}, me) is None
    assert peers.primary_peers({"a": _peer("Primary"), "b": _peer("non-Primary"),
                                "c": None}) == ["a"]


# --- credentials ---

def test_credentials_roundtrip_and_node_certs():
    creds = ClusterCredentials.generate("shared-db")
    assert creds.ensure_node("db-0", [ADDRS[0]]) is True
    assert creds.ensure_node("db-0", [ADDRS[0]]) is False      # kept: same user_data
    assert san_of(creds.nodes["db-0"][0]) == [ADDRS[0]]
    assert creds.ensure_node("db-0", [ADDRS[0], "db-0.example"]) is True
    data = creds.to_secret_data()
    assert set(data) == {"ca.crt", "ca.key", "client.crt", "client.key", "token",
                         "node-db-0.crt", "node-db-0.key"}
    again = ClusterCredentials.from_secret_data("shared-db", data)
    assert again.to_secret_data() == data
    assert creds.token not in repr(creds) and "PRIVATE" not in repr(creds)
    assert len(creds.token) >= 40
    with pytest.raises(ValueError, match="token"):
        ClusterCredentials.from_secret_data("x", {**data, "token": ""})
    ca = x509.load_pem_x509_certificate(creds.ca_cert.encode())
    node = x509.load_pem_x509_certificate(creds.nodes["db-0"][0].encode())
    client = x509.load_pem_x509_certificate(creds.client_cert.encode())
    for cert in (node, client):
        cert.verify_directly_issued_by(ca)
    eku = node.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {u.dotted_string for u in eku} == {"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"}
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {u.dotted_string for u in eku} == {"1.3.6.1.5.5.7.3.2"}


# --- the API in-process (no MariaDB: status and refusals) -------------------------------------

@pytest.fixture
def agent_api(tmp_path):
    """The real server classes on 127.0.0.1 with a supervisor over an empty datadir."""
    from flexinfra.agent.server import make_servers

    creds = ClusterCredentials.generate("t")
    creds.ensure_node("db-0", ["127.0.0.1"])
    cert, key = creds.nodes["db-0"]
    files = {"ca.pem": creds.ca_cert, "node.pem": cert, "node.key": key, "token": creds.token}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        os.chmod(tmp_path / name, 0o600)
    (tmp_path / "my.cnf").write_text(render_my_cnf(GaleraNodeConfig(
        cluster="t", node="db-0", address="127.0.0.1", addresses=("127.0.0.1",),
        layout=ServerLayout(datadir=str(tmp_path / "data"), socket=str(tmp_path / "s.sock"),
                            pid_file=str(tmp_path / "p.pid")))))
    cfg = AgentConfig(node="db-0", address="127.0.0.1", listen="127.0.0.1", api_port=0,
                      health_port=0, ca_file=str(tmp_path / "ca.pem"),
                      cert_file=str(tmp_path / "node.pem"), key_file=str(tmp_path / "node.key"),
                      token_file=str(tmp_path / "token"), defaults_file=str(tmp_path / "my.cnf"),
                      state_dir=str(tmp_path / "state"))
    sup = Supervisor(cfg, creds.token, survey=dict)
    api, health = make_servers(cfg, sup, creds.token)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (api, health)]
    for t in threads:
        t.start()
    ctx = client_context(creds.ca_cert, creds.client_cert, creds.client_key)
    client = AgentClient("127.0.0.1", ctx, creds.token, port=api.server_address[1])
    yield client, creds, api.server_address[1], health.server_address[1]
    for s in (api, health):
        s.shutdown()
        s.server_close()


def test_api_status_and_refusals_in_process(agent_api):
    client, creds, port, hport = agent_api
    st = client.status()
    assert st["node"] == "db-0" and st["desired"] == "stopped" and st["agent_version"]
    assert not st["mariadbd"]["running"] and st["grastate"] is None
    with pytest.raises(AgentError) as e:
        AgentClient("127.0.0.1", client._ctx, creds.token[:-1] + "x", port=port).status()
    assert e.value.status == 401
    with pytest.raises(AgentUnreachable):   # no client certificate
        AgentClient("127.0.0.1", ssl.create_default_context(cadata=creds.ca_cert),
                    creds.token, port=port).status()
    with pytest.raises(AgentError) as e:
        client._call("POST", "/v1/start", {"mode": "sideways"})
    assert e.value.status == 400
    with pytest.raises(AgentError) as e:
        client._call("POST", "/v1/start", {"mode": "bootstrap", "uuid": U, "seqno": -4})
    assert e.value.status == 400
    with pytest.raises(AgentError) as e:
        client.pc_bootstrap()
    assert e.value.status == 409 and "not running" in e.value.message
    with pytest.raises(AgentError) as e:
        client.recover()
    assert e.value.status == 409 and "empty" in e.value.message
    with pytest.raises(AgentError) as e:
        client._call("GET", "/v1/nothing")
    assert e.value.status == 404
    import urllib.error
    import urllib.request
    with pytest.raises(urllib.error.HTTPError) as he:
        urllib.request.urlopen(f"http://127.0.0.1:{hport}/health", timeout=3)
    assert he.value.code == 503 and he.value.read() == b"unavailable\n"


# --- the zipapp ---

def test_zipapp_is_small_deterministic_and_stdlib_only():
    a, b = build_zipapp(), build_zipapp()
    assert a == b, "same source, same bytes"
    assert len(a) < 24 * 1024, f"zipapp grew to {len(a)} bytes"
    assert a.startswith(b"#!/usr/bin/python3\n")
    with zipfile.ZipFile(BytesIO(a)) as zf:
        names = zf.namelist()
        assert "__main__.py" in names and "flexinfra_agent/main.py" in names
        assert not any("bundle" in n for n in names)
        for n in names:
            src = zf.read(n).decode()
            assert "import flexinfra." not in src and "from flexinfra." not in src, n
            assert "from flexinfra import" not in src, n
            for mod in ("yaml", "requests", "pydantic", "cryptography", "kopf", "pymysql"):
                assert f"import {mod}" not in src, f"{n} imports {mod}"


def test_zipapp_runs_with_the_system_python(tmp_path):
    pyz = tmp_path / "agent.pyz"
    pyz.write_bytes(build_zipapp())
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    out = subprocess.run([python, str(pyz), "--help"], capture_output=True, text=True,
                         timeout=30, check=True)
    assert "--config" in out.stdout


def test_slim_keeps_line_numbers():
    src = b'"""Doc\nmore"""\n# c\ndef f():\n    """x"""\n    return 1  # kept\n'
    out = slim(src)
    assert out.count(b"\n") == src.count(b"\n")
    ns: dict = {}
    exec(compile(out, "x", "exec"), ns)
    assert ns["f"]() == 1


# --- user_data ---

def _netns_module():
    path = REPO / "sandbox/plugins/flexinfra_sandbox_cloud/netns.py"
    spec = importlib.util.spec_from_file_location("fx_netns_for_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def rendered():
    creds = ClusterCredentials.generate("shared-db")
    for i, a in enumerate(ADDRS):
        creds.ensure_node(f"db-{i}", [a])
    boot = NodeBoot(cluster="shared-db", node="db-1", address=ADDRS[1], addresses=ADDRS,
                    volume_id="0f5c2d7e-1111-2222-3333-444455556666")
    return creds, boot, render_user_data(boot, creds)


def test_user_data_fits_well_inside_novas_limit(rendered):
    _, _, text = rendered
    size = len(base64.b64encode(text.encode()))
    assert size <= MAX_USER_DATA < NOVA_LIMIT
    assert size < 44 * 1024, f"user_data grew to {size} bytes (base64)"


def test_user_data_parses_and_carries_everything(rendered):
    creds, _boot, text = rendered
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert set(doc) == {"write_files", "runcmd"}
    files = {f["path"]: f for f in doc["write_files"]}
    content = {p: base64.b64decode(f["content"]) for p, f in files.items()}
    assert content[AGENT_PYZ] == build_zipapp()
    cfg = AgentConfig.from_dict(json.loads(content[AGENT_JSON]))
    assert cfg.node == "db-1" and cfg.peers == (ADDRS[0], ADDRS[2])
    assert cfg.state_dir.startswith("/mnt/vdb/") and cfg.data_mount == "/mnt/vdb"
    assert b"datadir = /mnt/vdb/mysql" in content["/etc/flexinfra/my.cnf"]
    assert content["/etc/flexinfra/tls/token"].decode().strip() == creds.token
    assert content["/etc/flexinfra/tls/node.key"].decode() == creds.nodes["db-1"][1]
    for path in ("/etc/flexinfra/tls/token", "/etc/flexinfra/tls/node.key", AGENT_JSON):
        assert files[path]["permissions"] == "0600"
    # secrets only where they belong
    for path, data in content.items():
        if path != "/etc/flexinfra/tls/token":
            assert creds.token.encode() not in data, path
    assert "virtio-0f5c2d7e-1111-2222-3" in content["/usr/local/sbin/flexinfra-agent-start"]\
        .decode()
    assert doc["runcmd"] == [["/usr/local/sbin/flexinfra-agent-start"]]
    assert content["/etc/rc.local"].startswith(b"#!/bin/sh")


def test_user_data_is_deterministic(rendered):
    creds, boot, text = rendered
    assert render_user_data(boot, creds) == text


def test_user_data_needs_the_node_certificate(rendered):
    creds, _boot, _ = rendered
    with pytest.raises(ValueError, match="ensure_node"):
        render_user_data(NodeBoot(cluster="c", node="db-7", address=ADDRS[0],
                                  addresses=ADDRS), creds)


def test_start_script_is_valid_shell(rendered, tmp_path):
    _, _, text = rendered
    doc = yaml.safe_load(text)
    script = next(f for f in doc["write_files"]
                  if f["path"] == "/usr/local/sbin/flexinfra-agent-start")
    (tmp_path / "s.sh").write_bytes(base64.b64decode(script["content"]))
    subprocess.run(["sh", "-n", str(tmp_path / "s.sh")], check=True)


def test_the_sandbox_boots_this_user_data(rendered):
    """The sandbox's own user_data parser (what its VMs run) takes it whole."""
    _, _, text = rendered
    netns = _netns_module()
    plan = netns.parse_user_data(text.encode())
    assert not plan["notes"], plan["notes"]
    paths = [f["path"] for f in plan["write_files"]]
    assert AGENT_PYZ in paths and "/etc/rc.local" in paths
    assert plan["scripts"] and "/usr/local/sbin/flexinfra-agent-start" in plan["scripts"][0]
    pyz = next(f for f in plan["write_files"] if f["path"] == AGENT_PYZ)
    assert hashlib.sha256(base64.b64decode(pyz["content_b64"])).digest() == \
        hashlib.sha256(build_zipapp()).digest()
    # gzip-compressed user_data is accepted too (cloud-init and the sandbox both take it)
    assert netns.parse_user_data(gzip.compress(text.encode(), mtime=0))["write_files"]
