"""The accounts the operator itself needs on a GaleraCluster, and the write probe.

* the **probe user** (``flexinfra_probe``, all rights on database ``flexinfra_probe`` only)
  writes one row through the writer endpoint on every healthy pass: Ready means a client
  can commit, not merely that the nodes say Synced;
* **root's password**, from the cluster's root Secret, set through the writer's agent (root
  keeps its unix-socket login, which the agent uses).

Both go through the writer node's agent (mTLS + token, Synced + Primary checked there);
Galera replicates accounts (TOI). They are applied once per password (a fingerprint is kept,
never the password) and again after the password changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from typing import Any

from flexinfra.galera.client import AgentError, AgentUnreachable

PROBE_DATABASE = "flexinfra_probe"
PROBE_USER = "flexinfra_probe"
#: a probe may not hold a pass for long: connect, write, commit
CONNECT_TIMEOUT = 3
IO_TIMEOUT = 5


def _fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def ensure_accounts(st: Any, intent: Any, writer: str) -> str | None:
    """Create the probe user and set root's password on the writer; a problem in words (no
    password in it), or None."""
    client = st.fleet.clients.get(writer)
    if client is None:
        return f"no agent known for the writer {writer}"
    wanted = {"probe": intent.secrets.probe_password, "root": intent.secrets.root_password}
    for what, password in wanted.items():
        fp = _fingerprint(password)
        if st.applied.get(what) == fp:
            continue
        try:
            if what == "probe":
                client.ensure_database(PROBE_DATABASE, PROBE_USER, password, "%")
            else:
                client.set_root_password(password)
        except AgentError as e:
            return f"setting up the {what} account through {writer}'s agent: {e.status} " \
                   f"{e.message}"
        except AgentUnreachable:
            return f"setting up the {what} account: {writer}'s agent did not answer"
        st.applied[what] = fp
    return None


def write_probe(endpoint: str, password: str, owner: Any = None) -> str | None:
    """Write one row through ``endpoint`` (``host:port``) as the probe user; an error in
    words (never the password), or None once committed."""
    import pymysql

    host, _, port = endpoint.rpartition(":")
    who = f"{owner.namespace}/{owner.name}" if owner is not None else "operator"
    try:
        conn = pymysql.connect(host=host, port=int(port), user=PROBE_USER, password=password,
                               database=PROBE_DATABASE, connect_timeout=CONNECT_TIMEOUT,
                               read_timeout=IO_TIMEOUT, write_timeout=IO_TIMEOUT,
                               autocommit=False)
    except pymysql.MySQLError as e:
        return _words(e)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS probe (id INT PRIMARY KEY, "
                        "at DOUBLE NOT NULL, who VARCHAR(128) NOT NULL)")
            cur.execute("REPLACE INTO probe (id, at, who) VALUES (1, %s, %s)",
                        (time.time(), who[:128]))
        conn.commit()
        return None
    except pymysql.MySQLError as e:
        return _words(e)
    finally:
        with contextlib.suppress(Exception):  # closing a broken connection may fail
            conn.close()


def _words(e: Exception) -> str:
    args = getattr(e, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return f"MySQL error {args[0]}: {str(args[1])[:200]}"
    return f"{type(e).__name__}: {str(e)[:200]}"
