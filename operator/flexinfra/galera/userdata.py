"""A Galera node's user_data: one ``#cloud-config`` that carries everything the node needs,
because the VM may have no network access to fetch anything.

``write_files`` (first boot) lays down:

* ``/usr/local/lib/flexinfra/agent.pyz``: the agent zipapp (``flexinfra.agent.bundle``);
* ``/etc/flexinfra/agent.json``: its configuration (node name, addresses, ports, paths);
* ``/etc/flexinfra/my.cnf``: MariaDB + Galera settings (``flexinfra.galera.mycnf``);
* ``/etc/flexinfra/tls/{ca.pem,node.pem,node.key,token}``: the cluster's CA, this node's
  certificate and key, the token (key and token readable by root only);
* ``/usr/local/sbin/flexinfra-agent-start``: mounts the data volume (formats it once on a real
  cloud), keeps the distribution's own MariaDB service off, and starts the agent (a systemd
  unit where systemd runs, else a respawning shell loop); idempotent;
* ``/etc/rc.local``: runs that script at every later boot.

``runcmd`` (first boot only) runs it once. Nothing starts mariadbd here: the agent does, when
the operator says so or to rejoin a Primary component.

Real clouds: the image should already hold ``mariadb-server``, ``galera-4`` and ``rsync`` (a
Debian 12 / Ubuntu 22.04+ image); when they are missing the start script installs them from
the image's repositories (this needs network access, which the sandbox's VMs do not have, so
that path is not exercised here). The data volume is found by its Cinder id
(``/dev/disk/by-id/virtio-<id[:20]>``) and formatted ext4 only if it has no filesystem.
Nova limits user_data to 64 KiB once base64-encoded: ``render_user_data`` refuses to go past
``MAX_USER_DATA``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

import yaml

from flexinfra.agent.bundle import build_zipapp
from flexinfra.galera.credentials import ClusterCredentials
from flexinfra.galera.mycnf import GaleraNodeConfig, ServerLayout, render_my_cnf

NOVA_LIMIT = 65535          # bytes of base64-encoded user_data
MAX_USER_DATA = 56 * 1024   # what we allow ourselves: room for growth under Nova's limit

AGENT_PYZ = "/usr/local/lib/flexinfra/agent.pyz"
AGENT_JSON = "/etc/flexinfra/agent.json"
MY_CNF = "/etc/flexinfra/my.cnf"
TLS_DIR = "/etc/flexinfra/tls"
START_SCRIPT = "/usr/local/sbin/flexinfra-agent-start"


@dataclass(frozen=True)
class NodeBoot:
    cluster: str
    node: str
    address: str
    addresses: tuple[str, ...]          # every node's address, this one included
    volume_id: str | None = None        # the Cinder data volume (real clouds: find its device)
    data_mount: str = "/mnt/vdb"
    sst_method: str = "rsync"
    settings: tuple[tuple[str, str], ...] = ()
    provider_options: tuple[tuple[str, str], ...] = ()   # e.g. shorter evs timeouts
    api_port: int = 8443
    health_port: int = 9200
    extra_packages: tuple[str, ...] = field(default=())


def agent_config(b: NodeBoot) -> dict:
    return {
        "node": b.node, "address": b.address,
        "peers": [a for a in b.addresses if a != b.address],
        "listen": "0.0.0.0", "api_port": b.api_port, "health_port": b.health_port,
        "ca_file": f"{TLS_DIR}/ca.pem", "cert_file": f"{TLS_DIR}/node.pem",
        "key_file": f"{TLS_DIR}/node.key", "token_file": f"{TLS_DIR}/token",
        "defaults_file": MY_CNF, "state_dir": f"{b.data_mount}/flexinfra-agent",
        "data_mount": b.data_mount,
    }


def my_cnf(b: NodeBoot) -> str:
    return render_my_cnf(GaleraNodeConfig(
        cluster=b.cluster, node=b.node, address=b.address, addresses=b.addresses,
        sst_method=b.sst_method, settings=b.settings, provider_options=b.provider_options,
        layout=ServerLayout(datadir=f"{b.data_mount}/mysql")))


def start_script(b: NodeBoot) -> str:
    device = f"/dev/disk/by-id/virtio-{b.volume_id[:20]}" if b.volume_id else ""
    packages = " ".join(("mariadb-server", "mariadb-client", "galera-4", "rsync",
                         *b.extra_packages))
    return f"""#!/bin/sh
# flexinfra: start this Galera node's agent. Idempotent; run at first boot (runcmd) and at
# every boot (/etc/rc.local). The agent, not this script, starts mariadbd.
set -u
LOG=/var/log/flexinfra
mkdir -p "$LOG"
DATA_DEVICE="{device}"
DATA_MOUNT="{b.data_mount}"

# 1. The data volume. Real cloud: a block device, formatted once, mounted at every boot.
#    Sandbox: already a mounted directory.
if [ -n "$DATA_DEVICE" ] && ! mountpoint -q "$DATA_MOUNT"; then
  i=0
  while [ ! -b "$DATA_DEVICE" ] && ! mountpoint -q "$DATA_MOUNT" && [ $i -lt 60 ]; do
    sleep 1; i=$((i+1))
  done
  if [ -b "$DATA_DEVICE" ] && ! mountpoint -q "$DATA_MOUNT"; then
    blkid "$DATA_DEVICE" >/dev/null 2>&1 || mkfs.ext4 -q -L fxdata "$DATA_DEVICE"
    mkdir -p "$DATA_MOUNT" && mount "$DATA_DEVICE" "$DATA_MOUNT"
  fi
fi

# 2. MariaDB + Galera come with the image. If not, try the image's repositories (real cloud
#    with network access only).
if [ ! -x /usr/sbin/mariadbd ] || [ ! -e /usr/lib/galera/libgalera_smm.so ]; then
  if command -v apt-get >/dev/null 2>&1; then
    (DEBIAN_FRONTEND=noninteractive apt-get update -q && \\
     DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends {packages}) \\
      >>"$LOG/install.log" 2>&1 || echo "flexinfra: package install failed" >&2
  fi
fi

# 3. The agent owns mariadbd: the distribution's service must stay off.
if [ -d /run/systemd/system ]; then
  systemctl disable --now mariadb.service mysql.service >/dev/null 2>&1 || true
  if [ ! -e /etc/systemd/system/flexinfra-agent.service ]; then
    cat >/etc/systemd/system/flexinfra-agent.service <<'UNIT'
[Unit]
Description=flexinfra Galera node agent
After=network-online.target local-fs.target
Wants=network-online.target
[Service]
ExecStart=/usr/bin/python3 {AGENT_PYZ} --config {AGENT_JSON}
Restart=always
RestartSec=2
KillMode=process
[Install]
WantedBy=multi-user.target
UNIT
    systemctl daemon-reload
  fi
  systemctl enable --now flexinfra-agent.service
  exit 0
fi

# 4. No systemd (the sandbox's VMs): a respawning loop, one per boot (flock on /run).
setsid flock -n /run/flexinfra-agent.lock sh -c \\
  'while :; do /usr/bin/python3 {AGENT_PYZ} --config {AGENT_JSON}; sleep 2; done' \\
  >>"$LOG/agent.log" 2>&1 </dev/null &
exit 0
"""


RC_LOCAL = f"#!/bin/sh\n# flexinfra: every boot\n{START_SCRIPT}\nexit 0\n"


def _file(path: str, content: str | bytes, mode: str) -> dict:
    data = content.encode() if isinstance(content, str) else content
    return {"path": path, "encoding": "b64", "content": base64.b64encode(data).decode(),
            "permissions": mode, "owner": "root:root"}


def render_user_data(b: NodeBoot, creds: ClusterCredentials,
                     zipapp: bytes | None = None) -> str:
    """The node's ``#cloud-config``. ``creds`` must hold this node's certificate
    (``creds.ensure_node(b.node, [b.address])``)."""
    if b.node not in creds.nodes:
        raise ValueError(f"no certificate for node {b.node}: call creds.ensure_node first")
    cert, key = creds.nodes[b.node]
    files = [
        _file(AGENT_PYZ, zipapp if zipapp is not None else build_zipapp(), "0755"),
        _file(AGENT_JSON, json.dumps(agent_config(b), indent=1, sort_keys=True) + "\n",
              "0600"),
        _file(MY_CNF, my_cnf(b), "0644"),
        _file(f"{TLS_DIR}/ca.pem", creds.ca_cert, "0644"),
        _file(f"{TLS_DIR}/node.pem", cert, "0644"),
        _file(f"{TLS_DIR}/node.key", key, "0600"),
        _file(f"{TLS_DIR}/token", creds.token + "\n", "0600"),
        _file(START_SCRIPT, start_script(b), "0755"),
        _file("/etc/rc.local", RC_LOCAL, "0755"),
    ]
    doc = {"write_files": files, "runcmd": [[START_SCRIPT]]}
    text = "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False, width=1 << 20)
    size = len(base64.b64encode(text.encode()))
    if size > MAX_USER_DATA:
        raise ValueError(f"user_data is {size} bytes base64-encoded, over the "
                         f"{MAX_USER_DATA} this operator allows (Nova's limit: {NOVA_LIMIT})")
    return text
