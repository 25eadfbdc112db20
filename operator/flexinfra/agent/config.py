"""The agent's configuration: one JSON file written by user_data (``/etc/flexinfra/agent.json``).

Paths of MariaDB itself (datadir, socket, pid file) are not repeated here: they are read from
the ``my.cnf`` the agent starts mariadbd with, so the two can never disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class AgentConfig:
    node: str                       # the node's name (``db-0``), as the operator calls it
    address: str                    # this node's cluster address (Galera, agent, 3306)
    peers: tuple[str, ...] = ()     # the other nodes' addresses (their agents answer there)
    listen: str = "0.0.0.0"
    api_port: int = 8443            # mTLS + token control API
    health_port: int = 9200         # plain HTTP, GET /health only (for the load balancer)
    ca_file: str = "/etc/flexinfra/tls/ca.pem"
    cert_file: str = "/etc/flexinfra/tls/node.pem"
    key_file: str = "/etc/flexinfra/tls/node.key"
    token_file: str = "/etc/flexinfra/tls/token"
    defaults_file: str = "/etc/flexinfra/my.cnf"
    state_dir: str = "/var/lib/flexinfra-agent"
    #: refuse to touch MariaDB while this is not a mount point (the Cinder data volume is
    #: missing: an empty datadir there would be initialised on the root disk); "" = no check
    data_mount: str = ""
    mariadbd: str = "/usr/sbin/mariadbd"
    client: str = "/usr/bin/mariadb"
    install_db: str = "/usr/bin/mariadb-install-db"
    #: mariadbd's --user. Not root: Galera's rsync SST runs an rsync daemon that, started as
    #: root, drops to "nobody" and then cannot write the datadir (seen here)
    run_as: str = "mysql"
    stop_timeout: float = 120.0     # clean shutdown (may flush a large buffer pool)
    recover_timeout: float = 300.0
    poll_interval: float = 1.0      # supervisor tick: process check + wsrep status
    peer_timeout: float = 2.0
    backoff_max: float = 60.0       # auto-rejoin backoff ceiling
    healthy_after: float = 60.0     # Synced this long resets the backoff
    #: run --wsrep-recover as soon as mariadbd exits unexpectedly (the operator then finds the
    #: position in the status and needs no RecoverPositions step)
    recover_on_exit: bool = True
    extra_args: tuple[str, ...] = field(default=())  # appended to mariadbd's command line

    @classmethod
    def from_dict(cls, data: dict) -> AgentConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown agent config keys: {', '.join(sorted(unknown))}")
        data = dict(data)
        for key in ("peers", "extra_args"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    @classmethod
    def load(cls, path: str) -> AgentConfig:
        with open(path) as f:
            return cls.from_dict(json.load(f))
