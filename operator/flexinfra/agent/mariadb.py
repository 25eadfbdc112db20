"""What the agent knows about MariaDB on disk and through the local client.

* ``my.cnf``: the server options the agent needs (datadir, socket, pid file) are read from the
  defaults file mariadbd is started with;
* ``grastate.dat``: Galera's saved state (uuid, seqno, safe_to_bootstrap), read and, only when
  the operator says so, rewritten with ``safe_to_bootstrap: 1``;
* ``mariadbd --wsrep-recover``: the position InnoDB really holds after a crash
  (``WSREP: Recovered position: <uuid>:<seqno>``);
* the ``mariadb`` client over the unix socket as OS root (unix_socket authentication: no
  password anywhere). SQL goes on stdin, never on the command line (``ps`` shows that).
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

ZERO_UUID = "00000000-0000-0000-0000-000000000000"
SERVER_GROUPS = ("mysqld", "server", "mariadb", "mariadbd", "galera", "mariadb-10.11")
WSREP_VARS = (
    "wsrep_local_state_comment", "wsrep_cluster_status", "wsrep_cluster_size", "wsrep_ready",
    "wsrep_connected", "wsrep_last_committed", "wsrep_cluster_state_uuid",
    "wsrep_incoming_addresses", "wsrep_local_state_uuid",
)
_RECOVERED = re.compile(r"WSREP: Recovered position:?\s+([0-9a-fA-F-]{36}):(-?\d+)")


class MariaDBError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServerPaths:
    datadir: str
    socket: str
    pid_file: str
    log_error: str | None
    tmpdir: str | None
    address: str | None  # wsrep_node_address without port

    @classmethod
    def from_defaults_file(cls, path: str) -> ServerPaths:
        opts = read_server_options(path)
        datadir = opts.get("datadir") or "/var/lib/mysql"
        host = (opts.get("wsrep_node_address") or "").rsplit(":", 1)[0] or None
        return cls(
            datadir=datadir,
            socket=opts.get("socket") or "/run/mysqld/mysqld.sock",
            pid_file=opts.get("pid_file") or os.path.join(datadir, "mariadbd.pid"),
            log_error=opts.get("log_error"),
            tmpdir=opts.get("tmpdir"),
            address=host,
        )


def read_server_options(path: str) -> dict[str, str]:
    """The [mysqld]-like groups of a my.cnf, later groups winning; ``-`` and ``_`` unified."""
    cp = configparser.ConfigParser(allow_no_value=True, strict=False, interpolation=None,
                                   delimiters=("=",), comment_prefixes=("#", ";"))
    with open(path) as f:
        cp.read_file(f)
    out: dict[str, str] = {}
    for group in SERVER_GROUPS:
        if cp.has_section(group):
            for key, value in cp.items(group):
                out[key.replace("-", "_")] = (value or "").strip().strip('"')
    return out


# --- grastate.dat ----------------------------------------------------------------------

@dataclass(frozen=True)
class GraState:
    uuid: str
    seqno: int
    safe_to_bootstrap: bool

    def as_dict(self) -> dict:
        return {"uuid": self.uuid, "seqno": self.seqno,
                "safe_to_bootstrap": self.safe_to_bootstrap}


def read_grastate(datadir: str) -> GraState | None:
    path = os.path.join(datadir, "grastate.dat")
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip()
    try:
        seqno = int(values.get("seqno", "-1"))
    except ValueError:
        seqno = -1
    return GraState(uuid=values.get("uuid", ZERO_UUID), seqno=seqno,
                    safe_to_bootstrap=values.get("safe_to_bootstrap", "0") == "1")


def set_safe_to_bootstrap(datadir: str) -> None:
    """Rewrite grastate.dat with ``safe_to_bootstrap: 1`` (atomically); nothing else changes."""
    path = os.path.join(datadir, "grastate.dat")
    with open(path) as f:
        lines = f.read().splitlines()
    out, found = [], False
    for line in lines:
        if line.split(":", 1)[0].strip() == "safe_to_bootstrap":
            line, found = "safe_to_bootstrap: 1", True
        out.append(line)
    if not found:
        out.append("safe_to_bootstrap: 1")
    _atomic_write(path, "\n".join(out) + "\n")


def _atomic_write(path: str, text: str) -> None:
    """Replace ``path`` keeping its owner and mode (mariadbd, not root, rewrites it later)."""
    st = os.stat(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, st.st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --- recovery and initialisation -------------------------------------------------------

def parse_recovered_position(log: str) -> tuple[str, int] | None:
    """The last ``WSREP: Recovered position: <uuid>:<seqno>`` line of a --wsrep-recover run."""
    found = _RECOVERED.findall(log)
    if not found:
        return None
    uuid, seqno = found[-1]
    return uuid.lower(), int(seqno)


def wsrep_recover(mariadbd: str, defaults_file: str, user: str,
                  timeout: float) -> tuple[str, int]:
    """Run ``mariadbd --wsrep-recover``; mariadbd must not be running on this datadir."""
    cmd = [mariadbd, f"--defaults-file={defaults_file}", f"--user={user}", "--wsrep-recover",
           "--disable-log-error"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as e:
        raise MariaDBError(f"--wsrep-recover did not finish in {timeout:.0f}s") from e
    pos = parse_recovered_position(proc.stderr + proc.stdout)
    if pos is None:
        tail = "\n".join((proc.stderr or "").strip().splitlines()[-5:])
        raise MariaDBError(f"--wsrep-recover gave no position (exit {proc.returncode}): {tail}")
    return pos


def datadir_initialised(datadir: str) -> bool:
    return os.path.isdir(os.path.join(datadir, "mysql"))


def install_db(install_db_bin: str, defaults_file: str, datadir: str, user: str) -> None:
    """``mariadb-install-db`` into an empty datadir: root authenticates by unix socket only."""
    os.makedirs(datadir, mode=0o750, exist_ok=True)
    cmd = [install_db_bin, f"--defaults-file={defaults_file}", f"--user={user}",
           f"--datadir={datadir}", "--auth-root-authentication-method=socket",
           "--skip-test-db", "--skip-name-resolve"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise MariaDBError(f"mariadb-install-db failed ({proc.returncode}): {tail}")


# --- the local client -------------------------------------------------------------------

def run_sql(client: str, socket: str, sql: str, timeout: float = 10.0) -> list[list[str]]:
    """Run SQL as root over the unix socket; rows as lists of strings (batch, no headers).

    The statement text goes on stdin so that no secret it carries shows in ``ps``; errors
    are reported by the client's message, which never echoes the statement.
    """
    cmd = [client, "--no-defaults", "--protocol=socket", f"--socket={socket}", "--user=root",
           "--batch", "--skip-column-names", "--connect-timeout=3"]
    try:
        proc = subprocess.run(cmd, input=sql, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired as e:
        raise MariaDBError(f"local client timed out after {timeout:.0f}s") from e
    if proc.returncode != 0:
        raise MariaDBError((proc.stderr.strip().splitlines() or ["client failed"])[-1])
    return [line.split("\t") for line in proc.stdout.splitlines()]


def wsrep_status(client: str, socket: str) -> dict:
    names = ",".join(f"'{v}'" for v in WSREP_VARS)
    rows = run_sql(client, socket, "SHOW GLOBAL STATUS WHERE Variable_name IN "
                   f"({names});\n", timeout=5.0)
    raw = {r[0].lower(): (r[1] if len(r) > 1 else "") for r in rows}

    def as_int(key: str) -> int | None:
        try:
            return int(raw[key])
        except (KeyError, ValueError):
            return None

    addrs = [a.strip() for a in raw.get("wsrep_incoming_addresses", "").split(",") if a.strip()]
    return {
        "local_state_comment": raw.get("wsrep_local_state_comment"),
        "cluster_status": raw.get("wsrep_cluster_status"),
        "cluster_size": as_int("wsrep_cluster_size"),
        "ready": raw.get("wsrep_ready") == "ON",
        "connected": raw.get("wsrep_connected") == "ON",
        "last_committed": as_int("wsrep_last_committed"),
        "cluster_state_uuid": raw.get("wsrep_cluster_state_uuid"),
        "local_state_uuid": raw.get("wsrep_local_state_uuid"),
        "incoming_addresses": addrs,
    }


def is_synced_primary(wsrep: dict | None) -> bool:
    return bool(wsrep and wsrep.get("cluster_status") == "Primary"
                and wsrep.get("local_state_comment") == "Synced" and wsrep.get("ready"))


# --- databases for sites -----------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_USER = re.compile(r"^[A-Za-z0-9_]{1,80}$")
_HOST = re.compile(r"^(%|[0-9.%]{1,60}(/[0-9.]{7,15})?)$")
_PASSWORD = re.compile(r"^[A-Za-z0-9_.~-]{16,128}$")


def database_sql(name: str, user: str, password: str, host: str = "%") -> str:
    """Idempotent SQL: the database, its user (password set every time), its grant.

    Every value is validated against a strict pattern instead of being escaped, so nothing a
    caller sends can change the statement."""
    _validate(name, user, host)
    if not _PASSWORD.match(password or ""):
        raise ValueError("password must be 16-128 characters of [A-Za-z0-9_.~-]")
    acct = f"'{user}'@'{host}'"
    return (f"CREATE DATABASE IF NOT EXISTS `{name}`;\n"
            f"CREATE USER IF NOT EXISTS {acct} IDENTIFIED BY '{password}';\n"
            f"ALTER USER {acct} IDENTIFIED BY '{password}';\n"
            f"GRANT ALL PRIVILEGES ON `{name}`.* TO {acct};\n")


def root_password_sql(password: str) -> str:
    """root keeps its unix-socket login (the agent's own) and gains a password, locally and
    as ``root@'%'`` for administrators through the endpoint. Idempotent; replicated by
    Galera (TOI). The password is validated, never escaped."""
    if not _PASSWORD.match(password or ""):
        raise ValueError("password must be 16-128 characters of [A-Za-z0-9_.~-]")
    return ("ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR "
            f"mysql_native_password USING PASSWORD('{password}');\n"
            f"CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '{password}';\n"
            f"ALTER USER 'root'@'%' IDENTIFIED BY '{password}';\n"
            "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;\n")


def drop_database_sql(name: str, user: str, host: str = "%") -> str:
    _validate(name, user, host)
    return f"DROP DATABASE IF EXISTS `{name}`;\nDROP USER IF EXISTS '{user}'@'{host}';\n"


def _validate(name: str, user: str, host: str) -> None:
    if not _NAME.match(name or ""):
        raise ValueError("database name must be 1-64 characters of [A-Za-z0-9_]")
    if not _USER.match(user or ""):
        raise ValueError("user must be 1-80 characters of [A-Za-z0-9_]")
    if not _HOST.match(host or ""):
        raise ValueError("host must be '%', an IPv4 pattern or address/netmask")
