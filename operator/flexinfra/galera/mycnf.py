"""A node's ``my.cnf``: MariaDB + Galera settings, the one file mariadbd is started with
(``--defaults-file``), so nothing the image ships in ``/etc/mysql`` changes the cluster.

The agent reads its paths (datadir, socket, pid file, error log) from this same file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

GALERA_PROVIDER = "/usr/lib/galera/libgalera_smm.so"
_SAFE = re.compile(r"^[A-Za-z0-9_./:,;= +%@-]*$")


@dataclass(frozen=True)
class ServerLayout:
    datadir: str = "/mnt/vdb/mysql"
    socket: str = "/run/mysqld/mysqld.sock"
    pid_file: str = "/run/mysqld/mariadbd.pid"
    log_error: str = "/var/log/mysql/error.log"
    tmpdir: str = "/tmp"


@dataclass(frozen=True)
class GaleraNodeConfig:
    cluster: str                       # wsrep_cluster_name
    node: str                          # wsrep_node_name
    address: str                       # this node's address
    addresses: tuple[str, ...]         # every node's address, this one included
    sst_method: str = "rsync"
    port: int = 3306
    layout: ServerLayout = field(default_factory=ServerLayout)
    #: extra [mysqld] settings (e.g. innodb_buffer_pool_size); validated, never free text
    settings: tuple[tuple[str, str], ...] = ()
    gcache_size: str = "256M"
    #: more wsrep_provider_options, e.g. (("evs.suspect_timeout", "PT3S"),); validated
    provider_options: tuple[tuple[str, str], ...] = ()


def _provider_options(c: GaleraNodeConfig) -> str:
    opts = [("gcache.size", c.gcache_size), *c.provider_options]
    for key, value in opts:
        if not re.match(r"^[a-z_.]{1,64}$", key) or not re.match(r"^[A-Za-z0-9_.:]{1,64}$",
                                                                   value):
            raise ValueError(f"provider option {key!r} = {value!r} is not acceptable")
    return "; ".join(f"{k}={v}" for k, v in opts)


def render_my_cnf(c: GaleraNodeConfig) -> str:
    if c.address not in c.addresses:
        raise ValueError(f"{c.address} is not among the cluster's addresses {c.addresses}")
    lay = c.layout
    lines = [
        "# Written by flexinfra for this Galera node: mariadbd is started by the flexinfra",
        "# agent with --defaults-file pointing here. Changes are overwritten.",
        "[mysqld]",
        f"datadir = {lay.datadir}",
        f"socket = {lay.socket}",
        f"pid-file = {lay.pid_file}",
        f"log-error = {lay.log_error}",
        f"tmpdir = {lay.tmpdir}",
        f"bind-address = {c.address}",
        f"port = {c.port}",
        "skip-name-resolve",
        "binlog_format = ROW",
        "default_storage_engine = InnoDB",
        "innodb_autoinc_lock_mode = 2",
        "innodb_flush_log_at_trx_commit = 1",
        "wsrep_on = ON",
        f"wsrep_provider = {GALERA_PROVIDER}",
        f"wsrep_provider_options = \"{_provider_options(c)}\"",
        f"wsrep_cluster_name = {c.cluster}",
        f"wsrep_cluster_address = gcomm://{','.join(c.addresses)}",
        f"wsrep_node_name = {c.node}",
        f"wsrep_node_address = {c.address}",
        f"wsrep_node_incoming_address = {c.address}:{c.port}",
        f"wsrep_sst_method = {c.sst_method}",
    ]
    for key, value in c.settings:
        if not re.match(r"^[a-z0-9_-]{1,64}$", key) or not _SAFE.match(value):
            raise ValueError(f"setting {key!r} has characters a my.cnf cannot carry safely")
        lines.append(f"{key} = {value}")
    lines += ["", "[client]", f"socket = {lay.socket}", ""]
    for v in (c.cluster, c.node, *c.addresses, c.sst_method):
        if not _SAFE.match(v) or not v:
            raise ValueError(f"{v!r} cannot go into a my.cnf")
    return "\n".join(lines)
