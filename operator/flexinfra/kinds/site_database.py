"""``WebSite.spec.database``, the pure part: how a site's servers reach its GaleraCluster's
writer endpoint, and how the credentials reach them (a root-only file in their user_data).

Reachability, decided from the two specs (nothing is built when it cannot work):

* the site's servers are **on the cluster's network** (the site's ``network.existingNetwork``
  is the cluster's own network, or both join one existing network): the endpoint's VIP;
* else the cluster's writer has a **floating IP** (``writer.publicIP``): that address, from
  the site's router (the cluster's ``allowedFrom`` must hold the site's egress address);
* else the spec is refused, saying how to fix it.

The credentials file ``/etc/flexinfra/database.env`` (mode 0600, root) holds ``DB_HOST``,
``DB_PORT``, ``DB_NAME``, ``DB_USER``, ``DB_PASSWORD``. A ``#!`` boot script becomes a
``#cloud-config`` that writes the file and the script, then runs the script (cloud-init's
``write_files`` happen before ``runcmd``); a ``#cloud-config`` gets the file added.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

import yaml

from flexinfra.core.errors import InvalidSpec
from flexinfra.core.tags import name_prefix

CREDENTIALS_FILE = "/etc/flexinfra/database.env"
BOOT_SCRIPT = "/usr/local/sbin/flexinfra-site-boot"


@dataclass(frozen=True)
class SiteDatabase:
    host: str
    port: int
    database: str
    username: str
    password: str

    def env(self) -> str:
        return (f"DB_HOST={self.host}\nDB_PORT={self.port}\nDB_NAME={self.database}\n"
                f"DB_USER={self.username}\nDB_PASSWORD={self.password}\n")

    def secret_data(self) -> dict[str, str]:
        return {"host": self.host, "port": str(self.port), "database": self.database,
                "username": self.username, "password": self.password}

    @property
    def fingerprint(self) -> str:
        """What the site's servers were built with (a change rebuilds them), without the
        password itself."""
        return hashlib.sha256(self.env().encode()).hexdigest()[:16]


def cluster_network(namespace: str, cluster_name: str, cluster_spec: Any) -> str:
    net = cluster_spec.get("network") or {}
    return net.get("existingNetwork") or f"{name_prefix(namespace, cluster_name)}-net"


def writer_address(site_spec: Any, namespace: str, cluster_name: str, cluster: dict
                   ) -> tuple[str, int]:
    """(host, port) the site's servers connect to; InvalidSpec when they cannot reach it."""
    spec, status = cluster.get("spec") or {}, cluster.get("status") or {}
    shared = cluster_network(namespace, cluster_name, spec)
    site_net = site_spec.network.existing_network
    if site_net and site_net == shared:
        endpoint = status.get("endpoint")
    elif (spec.get("writer") or {}).get("publicIP"):
        endpoint = status.get("publicEndpoint")
    else:
        raise InvalidSpec(
            f"spec.database: the site's servers cannot reach GaleraCluster {cluster_name!r}'s "
            f"writer endpoint: put the site on the cluster's network (network.existingNetwork: "
            f"{shared}), or give the cluster's writer a floating IP (writer.publicIP: true, "
            "with the site router's address in its allowedFrom)")
    if not endpoint:
        raise LookupError("the cluster's writer endpoint has no address yet")
    host, _, port = endpoint.rpartition(":")
    return host, int(port)


def with_credentials(user_data: str | None, db: SiteDatabase) -> str:
    """The site's boot script with the credentials file written first, root-only."""
    cred = {"path": CREDENTIALS_FILE, "permissions": "0600", "owner": "root:root",
            "encoding": "b64", "content": base64.b64encode(db.env().encode()).decode()}
    text = user_data or ""
    if text.startswith("#cloud-config"):
        doc = yaml.safe_load(text.split("\n", 1)[1] if "\n" in text else "") or {}
        doc["write_files"] = [cred, *(doc.get("write_files") or [])]
    else:
        doc = {"write_files": [cred]}
        if text:
            doc["write_files"].append({
                "path": BOOT_SCRIPT, "permissions": "0755", "owner": "root:root",
                "encoding": "b64", "content": base64.b64encode(text.encode()).decode()})
            doc["runcmd"] = [[BOOT_SCRIPT]]
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False, width=1 << 20)
