"""``WebSite.spec.database``, the I/O: wait for the GaleraCluster, create the database and
its user through the writer node's agent, keep the credentials in Secret ``<site>-db``, and
drop them with the site when ``deletionPolicy: Delete``.

The database goes through the agent (mTLS + token, Synced + Primary checked there), never
through the endpoint as root: the operator needs no database password of its own for it.
The password is generated once and kept in the Secret; it never reaches a status, an Event
or a log.
"""

from __future__ import annotations

import secrets as random
from typing import Any

from flexinfra.core.tags import Owner
from flexinfra.galera.client import AgentClient, AgentError, AgentUnreachable
from flexinfra.galera.credentials import ClusterCredentials
from flexinfra.k8s import get_custom, owner_reference, read_secret, write_secret
from flexinfra.kinds.site_database import SiteDatabase, writer_address


class DependencyWait(Exception):
    """The GaleraCluster is not there or not Ready yet: the site waits (nothing built)."""


def secret_name(site: str) -> str:
    return f"{site}-db"


def _cluster(namespace: str, name: str) -> dict | None:
    return get_custom("galeraclusters", namespace, name)


def _ready(cluster: dict) -> bool:
    conds = (cluster.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def writer_agent(namespace: str, cluster_name: str, cluster: dict) -> AgentClient:
    status = cluster.get("status") or {}
    writer = status.get("writer")
    node = next((n for n in status.get("nodes") or [] if n.get("name") == writer), None)
    data = read_secret(namespace, f"{cluster_name}-agent-tls")
    if node is None or not node.get("address") or data is None:
        raise DependencyWait(f"GaleraCluster {cluster_name!r} has no writer to ask yet")
    creds = ClusterCredentials.from_secret_data(f"fi-{namespace}-{cluster_name}", data)
    return AgentClient.for_cluster(creds, node["address"], server_name=writer, timeout=10.0)


def ensure_site_database(owner: Owner, spec: Any) -> SiteDatabase | None:
    """The site's database, created (idempotently) on its cluster; None without one."""
    db = spec.database
    if db is None:
        return None
    ns = owner.namespace
    cluster = _cluster(ns, db.galera_cluster)
    if cluster is None:
        raise DependencyWait(f"GaleraCluster {db.galera_cluster!r} not found in {ns} "
                             "(spec.database.galeraCluster)")
    # reachability is a property of the two specs: refused (InvalidSpec) even before Ready
    try:
        host, port = writer_address(spec, ns, db.galera_cluster, cluster)
    except LookupError:
        raise DependencyWait(f"GaleraCluster {db.galera_cluster!r} has no writer endpoint "
                             "yet") from None
    if not _ready(cluster):
        raise DependencyWait(f"waiting for GaleraCluster {db.galera_cluster!r} to be Ready")
    kept = read_secret(ns, secret_name(owner.name)) or {}
    password = kept.get("password") or random.token_urlsafe(24)
    try:
        writer_agent(ns, db.galera_cluster, cluster).ensure_database(db.name, db.name,
                                                                     password, "%")
    except (AgentError, AgentUnreachable) as e:
        what = f"{e.status} {e.message}" if isinstance(e, AgentError) else "no answer"
        raise DependencyWait(f"creating database {db.name} on {db.galera_cluster!r}: "
                             f"{what}") from None
    site_db = SiteDatabase(host, port, db.name, db.name, password)
    if kept != site_db.secret_data():
        write_secret(ns, secret_name(owner.name), site_db.secret_data(),
                     owner_reference("WebSite", owner.name, owner.uid),
                     labels={"flexinfra.io/website": owner.name})
    return site_db


def drop_site_database(owner: Owner, spec: Any) -> str | None:
    """With ``deletionPolicy: Delete``: drop the database and its user. Returns what was
    done (for an Event); raises DependencyWait to be retried while the cluster exists but
    cannot take it."""
    db = spec.database
    if db is None or str(db.deletion_policy) != "Delete":
        return None
    cluster = _cluster(owner.namespace, db.galera_cluster)
    if cluster is None:
        return f"GaleraCluster {db.galera_cluster!r} is gone: nothing to drop"
    if not _ready(cluster):
        raise DependencyWait(f"GaleraCluster {db.galera_cluster!r} is not Ready: database "
                             f"{db.name} not dropped yet")
    try:
        writer_agent(owner.namespace, db.galera_cluster, cluster).drop_database(
            db.name, db.name, "%")
    except (AgentError, AgentUnreachable) as e:
        raise DependencyWait(f"dropping database {db.name}: {e}") from None
    return f"database {db.name} and its user dropped on {db.galera_cluster!r}"
