"""The sandbox's OpenStack control plane: a real Keystone, Glance, Placement, Neutron, Nova,
Cinder and Octavia on 127.0.0.1, backed by a private MariaDB and RabbitMQ.

The four verbs of a sandbox part (see ``cli.py``):

* ``install`` (``openstack_install.py``): the services' own venv under the cache, pinned by
  ``sandbox/constraints.txt``, plus the project's plug-ins package;
* ``up``: start what is not running, bootstrap what is not bootstrapped (stamps under
  ``<state>/data/stamps``), converge configs (a service whose config changed is restarted);
* ``cleanup``: after the processes are stopped, what outlives them (the VMs' namespaces);
* ``env``: ``OS_CLIENT_CONFIG_FILE`` and ``OS_CLOUD=demo``.

The configs are in ``openstack_conf.py``, the service specs in ``openstack_services.py``, the
cloud's own bootstrap (projects, flavors, networks, the amphora image) in
``openstack_bootstrap.py``, the data plane's host side in ``dataplane.py``. What is real code
and what is the sandbox's stand-in: ``sandbox/README.md``. This module is the bring-up order
(~550 lines: one sequence, clearer read top to bottom than scattered).
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from flexinfra_sandbox import dataplane
from flexinfra_sandbox import openstack_conf as conf
from flexinfra_sandbox.openstack_conf import COMPUTES, HOST, PORTS, Ctx
from flexinfra_sandbox.openstack_install import (
    _compute_driver,
    _pkg_version,
    install,
    plugins_hash,
)
from flexinfra_sandbox.openstack_services import Services
from flexinfra_sandbox.paths import SandboxPaths
from flexinfra_sandbox.supervisor import SandboxError, ServiceFailed, ServiceSpec, Supervisor

#: every long-running service of the OpenStack part, as the supervisor names them
SERVICES = (
    "mariadb", "epmd", "rabbitmq", "keystone", "glance", "placement", "neutron",
    "neutron-rpc-server", "neutron-l3-agent", "neutron-sandbox-agent", "nova-api",
    "nova-conductor", "nova-scheduler", "cinder-api", "cinder-scheduler", "cinder-volume",
    *(f"nova-compute-{h}" for h in COMPUTES), "octavia-api", "octavia-worker",
    "octavia-health-manager",
)  # fmt: skip

SECRET_NAMES = (
    "db", "rabbit", "admin", "service", "demo", "octavia_certs", "octavia_heartbeat",
)  # fmt: skip


def _log(msg: str) -> None:
    print(f"sandbox/openstack: {msg}", file=sys.stderr, flush=True)


# ================================================================================ helpers
def _secrets(paths: SandboxPaths) -> dict[str, str]:
    """Passwords, generated once and kept (mode 0600) in the state dir; never printed."""
    f = paths.state / "secrets.json"
    data: dict[str, str] = json.loads(f.read_text()) if f.exists() else {}
    missing = [n for n in SECRET_NAMES if n not in data]
    if missing:
        for name in missing:
            # 32 URL-safe characters: also what Octavia wants for its certs key passphrase
            data[name] = secrets.token_urlsafe(24)
        _write(f, json.dumps(data, indent=1) + "\n", mode=0o600)
    return data


def _write(path: Path, text: str, mode: int = 0o600) -> bool:
    """Write if the content differs; returns True when it changed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    tmp.replace(path)
    return True


def _stamp(paths: SandboxPaths, name: str) -> Path:
    return paths.data / "stamps" / name


def _done(paths: SandboxPaths, name: str) -> bool:
    return _stamp(paths, name).exists()


def _mark(paths: SandboxPaths, name: str) -> None:
    s = _stamp(paths, name)
    s.parent.mkdir(parents=True, exist_ok=True)
    s.write_text(time.strftime("%F %T\n"))


# ================================================================================ up
class _Stack:
    """One ``up`` run: the context, the supervisor, and what to (re)start."""

    def __init__(self, paths: SandboxPaths, sup: Supervisor):
        self.paths = paths
        self.sup = sup
        self.venv = paths.openstack_venv
        self.bin = self.venv / "bin"
        self.pending_restarts: set[str] = set()
        ids_file = paths.state / "openstack-ids.json"
        self.ids_file = ids_file
        self.ctx = Ctx(
            paths=paths,
            venv=self.venv,
            secrets=_secrets(paths),
            ids=json.loads(ids_file.read_text()) if ids_file.exists() else {},
            plugins_hash=plugins_hash(paths),
            compute_driver=_compute_driver(paths),
        )

    # --- config files: a changed file restarts the services that read it ------------------
    def config(self, rel: str, text: str, services: tuple[str, ...]) -> Path:
        path = self.paths.etc / rel
        if _write(path, text):
            running = [s for s in services if self.sup.pid(s)]
            if running:
                _log(f"{rel} changed: restarting {', '.join(running)}")
                self.pending_restarts.update(running)
        return path

    def stop_pending(self) -> None:
        """Stop the services whose config changed, all at once; ``ensure`` starts them again."""
        if self.pending_restarts:
            self.sup.stop_many(sorted(self.pending_restarts))
            self.pending_restarts.clear()

    def copy_wheel_file(self, src_rel: str, dst_rel: str) -> Path:
        src = self.venv / src_rel
        return self.config(dst_rel, src.read_text(), ())

    def run(self, name: str, *argv: object, env: dict[str, str] | None = None) -> str:
        return self.sup.run(name, [str(a) for a in argv], env=env)

    # --- infrastructure -------------------------------------------------------------------
    def infra(self) -> None:
        d = self.paths.data
        mycnf = self.config("mariadb/my.cnf", conf.mariadb(self.ctx), ("mariadb",))
        datadir = d / "mariadb" / "db"
        if not (datadir / "mysql").exists():
            tmp = datadir.with_name("db.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            self.run(
                "mariadb-install-db",
                "mariadb-install-db", f"--defaults-file={mycnf}", f"--datadir={tmp}",
                "--user=root", "--auth-root-authentication-method=socket", "--skip-test-db",
            )  # fmt: skip
            tmp.rename(datadir)
        rconf = self.config("rabbitmq/rabbitmq.conf", conf.rabbitmq(self.ctx), ("rabbitmq",))
        plugins = self.config("rabbitmq/enabled_plugins", "[].\n", ("rabbitmq",))
        rdir = d / "rabbitmq"
        (rdir / "home").mkdir(parents=True, exist_ok=True)
        erl_env = {"ERL_EPMD_PORT": str(PORTS["epmd"]), "ERL_EPMD_ADDRESS": HOST}
        self.stop_pending()
        self.sup.ensure_all(
            [
                ServiceSpec(
                    "mariadb",
                    ["mariadbd", f"--defaults-file={mycnf}", "--user=root"],
                    ports=[PORTS["mariadb"]],
                ),
                ServiceSpec(
                    "epmd",
                    ["epmd", "-port", str(PORTS["epmd"]), "-address", HOST],
                    ports=[PORTS["epmd"]],
                ),
            ]
        )
        self.sup.ensure(
            ServiceSpec(
                "rabbitmq",
                ["/usr/lib/rabbitmq/bin/rabbitmq-server"],
                env={
                    **erl_env,
                    # the Erlang cookie lands in $HOME: keep it private to the sandbox
                    "HOME": str(rdir / "home"),
                    "RABBITMQ_NODENAME": "flexinfra@localhost",
                    "RABBITMQ_NODE_IP_ADDRESS": HOST,
                    "RABBITMQ_NODE_PORT": str(PORTS["rabbitmq"]),
                    "RABBITMQ_DIST_PORT": str(PORTS["rabbitmq-dist"]),
                    "RABBITMQ_MNESIA_BASE": str(rdir / "mnesia"),
                    "RABBITMQ_LOG_BASE": str(rdir / "log"),
                    "RABBITMQ_LOGS": "-",
                    "RABBITMQ_CONFIG_FILE": str(rconf),
                    "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
                    "RABBITMQ_PID_FILE": str(rdir / "rabbitmq.pid"),
                    "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                        "-kernel inet_dist_use_interface {127,0,0,1}"
                    ),
                },
                ports=[PORTS["rabbitmq"], PORTS["rabbitmq-dist"]],
                stop_grace=20,
            )
        )
        self.databases()

    def databases(self) -> None:
        import pymysql

        pw = self.ctx.secrets["db"]
        con = pymysql.connect(
            unix_socket=str(self.paths.data / "mariadb" / "mysqld.sock"), user="root"
        )
        try:
            with con.cursor() as cur:
                for db in conf.DATABASES:
                    cur.execute(f"CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4")
                for host in (HOST, "localhost"):
                    cur.execute(
                        f"CREATE USER IF NOT EXISTS 'openstack'@'{host}' IDENTIFIED BY %s", (pw,)
                    )
                    cur.execute(f"ALTER USER 'openstack'@'{host}' IDENTIFIED BY %s", (pw,))
                    cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO 'openstack'@'{host}'")
            con.commit()
        finally:
            con.close()

    # --- configs of every service ----------------------------------------------------------
    def write_configs(self) -> dict[str, Path]:
        c = self.ctx
        files = {
            "keystone": self.config("keystone/keystone.conf", conf.keystone(c), ("keystone",)),
            "glance": self.config("glance/glance-api.conf", conf.glance(c), ("glance",)),
            "placement": self.config("placement/placement.conf", conf.placement(c), ("placement",)),
            "neutron": self.config(
                "neutron/neutron.conf", conf.neutron(c),
                ("neutron", "neutron-rpc-server", "neutron-l3-agent", "neutron-sandbox-agent"),
            ),
            "l3-agent": self.config(
                "neutron/l3_agent.ini", conf.l3_agent(c), ("neutron-l3-agent",)
            ),
            "l2-agent": self.config(
                "neutron/sandbox_agent.ini", conf.l2_agent(c), ("neutron-sandbox-agent",)
            ),
            "nova": self.config(
                "nova/nova.conf", conf.nova(c), ("nova-api", "nova-conductor", "nova-scheduler")
            ),
            "cinder": self.config(
                "cinder/cinder.conf",
                conf.cinder(c),
                ("cinder-api", "cinder-scheduler", "cinder-volume"),
            ),
        }
        for host in COMPUTES:
            files[host] = self.config(
                f"nova-compute-{host}/nova.conf",
                conf.nova_compute(c, host),
                (f"nova-compute-{host}",),
            )
        self.copy_wheel_file("etc/glance/glance-api-paste.ini", "glance/glance-api-paste.ini")
        self.copy_wheel_file("etc/neutron/api-paste.ini", "neutron/api-paste.ini")
        self.copy_wheel_file("etc/nova/api-paste.ini", "nova/api-paste.ini")
        self.copy_wheel_file("etc/cinder/api-paste.ini", "cinder/api-paste.ini")
        for svc in ("glance", "neutron", "cinder", "octavia"):
            (self.paths.data / svc / "lock").mkdir(parents=True, exist_ok=True)
        return files

    def octavia_config(self) -> Path:
        return self.config(
            "octavia/octavia.conf", conf.octavia(self.ctx),
            ("octavia-api", "octavia-worker", "octavia-health-manager"),
        )

    # --- database schemas (each a stamp keyed by the package version) ----------------------
    def db_syncs(self, files: dict[str, Path]) -> dict[str, Callable[[], None]]:
        b = self.bin
        v = self.venv

        def once(name: str, dist: str, fn: Callable[[], None]) -> Callable[[], None]:
            stamp = f"dbsync-{name}-{_pkg_version(v, dist)}"

            def go() -> None:
                if not _done(self.paths, stamp):
                    t0 = time.monotonic()
                    fn()
                    _mark(self.paths, stamp)
                    _log(f"{name} database ready in {time.monotonic() - t0:.0f}s")

            return go

        def nova() -> None:
            cf = ("--config-file", files["nova"])
            self.run("nova-manage", b / "nova-manage", *cf, "api_db", "sync")
            self.run("nova-manage", b / "nova-manage", *cf, "cell_v2", "map_cell0")
            out = self.run("nova-manage", b / "nova-manage", *cf, "cell_v2", "list_cells")
            if " cell1 " not in out:
                self.run(
                    "nova-manage",
                    b / "nova-manage",
                    *cf,
                    "cell_v2",
                    "create_cell",
                    "--name",
                    "cell1",
                )
            self.run("nova-manage", b / "nova-manage", *cf, "db", "sync")

        return {
            "keystone": once(
                "keystone",
                "keystone",
                lambda: self.run(
                    "keystone-manage",
                    b / "keystone-manage",
                    "--config-file",
                    files["keystone"],
                    "db_sync",
                ),
            ),
            "glance": once(
                "glance",
                "glance",
                lambda: self.run(
                    "glance-manage",
                    b / "glance-manage",
                    "--config-file",
                    files["glance"],
                    "db_sync",
                ),
            ),
            "placement": once(
                "placement",
                "openstack-placement",
                lambda: self.run(
                    "placement-manage",
                    b / "placement-manage",
                    "--config-file",
                    files["placement"],
                    "db",
                    "sync",
                ),
            ),
            "neutron": once(
                "neutron",
                "neutron",
                lambda: self.run(
                    "neutron-db-manage",
                    b / "neutron-db-manage",
                    "--config-file",
                    files["neutron"],
                    "upgrade",
                    "heads",
                ),
            ),
            "nova": once("nova", "nova", nova),
            "cinder": once(
                "cinder",
                "cinder",
                lambda: self.run(
                    "cinder-manage",
                    b / "cinder-manage",
                    "--config-file",
                    files["cinder"],
                    "db",
                    "sync",
                ),
            ),
            "octavia": once(
                "octavia",
                "octavia",
                lambda: self.run(
                    "octavia-db-manage",
                    b / "octavia-db-manage",
                    "--config-file",
                    self.octavia_config(),
                    "upgrade",
                    "head",
                ),
            ),
        }

    # --- Keystone ----------------------------------------------------------------------------
    def keystone(self, cfg: Path) -> None:
        b = self.bin
        kd = self.paths.data / "keystone"
        if not (kd / "fernet-keys" / "0").exists():
            self.run(
                "keystone-manage", b / "keystone-manage", "--config-file", cfg,
                "fernet_setup", "--keystone-user", "root", "--keystone-group", "root",
            )  # fmt: skip
        if not (kd / "credential-keys" / "0").exists():
            self.run(
                "keystone-manage", b / "keystone-manage", "--config-file", cfg,
                "credential_setup", "--keystone-user", "root", "--keystone-group", "root",
            )  # fmt: skip
        self.sup.ensure(
            Services(self.bin, self.paths).api(
                "keystone", "keystone.wsgi.api", env={"OS_KEYSTONE_CONFIG_FILES": str(cfg)}
            )
        )
        if not _done(self.paths, "keystone-bootstrap"):
            url = self.ctx.url("keystone", "/v3")
            # the password goes by environment, never on a command line (which is logged)
            self.run(
                "keystone-manage", b / "keystone-manage", "--config-file", cfg, "bootstrap",
                "--bootstrap-username", "admin", "--bootstrap-project-name", "admin",
                "--bootstrap-role-name", "admin", "--bootstrap-service-name", "keystone",
                "--bootstrap-region-id", conf.REGION, "--bootstrap-admin-url", url,
                "--bootstrap-internal-url", url, "--bootstrap-public-url", url,
                env={"OS_BOOTSTRAP_PASSWORD": self.ctx.secrets["admin"]},
            )  # fmt: skip
            _mark(self.paths, "keystone-bootstrap")

    # --- service specs --------------------------------------------------------------------------
    def octavia_ca(self) -> None:
        ca = self.paths.etc / "octavia" / "ca"
        if (ca / "client.pem").exists():
            return
        ca.mkdir(parents=True, exist_ok=True)
        os.chmod(ca, 0o700)
        subj = "/O=flexinfra sandbox/CN=sandbox octavia CA"
        self.run("openssl", "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                 "-days", "3650", "-subj", subj,
                 "-keyout", ca / "ca.key", "-out", ca / "ca.pem")  # fmt: skip
        self.run("openssl", "openssl", "req", "-newkey", "rsa:2048", "-nodes",
                 "-subj", "/O=flexinfra sandbox/CN=octavia controller",
                 "-keyout", ca / "client.key", "-out", ca / "client.csr")  # fmt: skip
        self.run("openssl", "openssl", "x509", "-req", "-in", ca / "client.csr",
                 "-CA", ca / "ca.pem", "-CAkey", ca / "ca.key", "-CAcreateserial", "-days", "3650",
                 "-out", ca / "client.crt")  # fmt: skip
        (ca / "client.pem").write_text(
            (ca / "client.crt").read_text() + (ca / "client.key").read_text()
        )

    # --- the whole bring-up -------------------------------------------------------------------
    def up(self) -> None:
        t0 = time.monotonic()
        self.registries = dataplane.keep_external_range_local()
        self.infra()
        _log(f"MariaDB and RabbitMQ up ({time.monotonic() - t0:.0f}s)")
        files = self.write_configs()
        self.stop_pending()
        self.octavia_ca()
        syncs = self.db_syncs(files)
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="dbsync") as pool:
            futures: dict[str, Future] = {n: pool.submit(fn) for n, fn in syncs.items()}
            futures["keystone"].result()
            self.keystone(files["keystone"])
            _write_clouds_yaml(self.paths, self.ctx.secrets)
            from flexinfra_sandbox import openstack_bootstrap as boot

            if not _done(self.paths, "identity"):
                boot.identity(boot.connect(self.paths, "admin"), self.ctx)
                _mark(self.paths, "identity")
            # a new connection: the first one's token carries the catalog from before the
            # endpoints existed, and openstacksdk disables services missing from it
            admin = boot.connect(self.paths, "admin")
            _log(f"Keystone up ({time.monotonic() - t0:.0f}s)")
            for n, f in futures.items():
                if n != "octavia":
                    f.result()
            octavia_sync = futures["octavia"]
            started = self.sup.ensure_all(Services(self.bin, self.paths).services(files))
            _log(
                f"APIs and workers up ({time.monotonic() - t0:.0f}s)"
                + (f"; started {len(started)}" if started else "")
            )
            boot.wait_computes(admin, list(COMPUTES), self)
            if not _done(self.paths, "resources"):
                ids = boot.resources(admin, self.ctx)
                _write(self.ids_file, json.dumps(ids, indent=1) + "\n", mode=0o644)
                self.ctx.ids = ids
                _mark(self.paths, "resources")
            boot.data_plane(admin, self.ctx, self.registries)
            octavia_sync.result()
        cfg = self.octavia_config()
        self.stop_pending()
        self.sup.ensure_all(Services(self.bin, self.paths).octavia_services(cfg))
        boot.wait_volume_service(admin, self)
        _log(f"OpenStack up in {time.monotonic() - t0:.0f}s; clouds.yaml: {self.paths.clouds_yaml}")

    def discover_hosts(self) -> None:
        self.run(
            "nova-manage", self.bin / "nova-manage",
            "--config-file", self.paths.etc / "nova" / "nova.conf", "cell_v2", "discover_hosts",
        )  # fmt: skip


def _write_clouds_yaml(paths: SandboxPaths, s: dict[str, str]) -> None:
    import yaml

    def cloud(user: str, project: str, password: str) -> dict:
        return {
            "auth": {
                "auth_url": f"http://{HOST}:{PORTS['keystone']}/v3",
                "username": user,
                "password": password,
                "project_name": project,
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            "region_name": conf.REGION,
            "interface": "public",
            "identity_api_version": 3,
        }

    doc = {
        "clouds": {
            "admin": cloud("admin", "admin", s["admin"]),
            "demo": cloud("member", "demo", s["demo"]),
        }
    }
    _write(
        paths.clouds_yaml,
        "# generated by flexinfra sandbox\n" + yaml.safe_dump(doc, sort_keys=False),
    )


def up(paths: SandboxPaths, sup: Supervisor) -> None:
    """Start and bootstrap the OpenStack part; quick and a no-op when it already runs."""
    paths.ensure_dirs()
    if not (paths.openstack_venv / ".complete").exists():
        raise SandboxError(
            f"the OpenStack venv {paths.openstack_venv} is missing: run install() first"
        )
    # two `up`s at once (two shells, a test and a person) would restart each other's services
    import fcntl

    with (paths.state / ".openstack-up.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log("another `up` of the OpenStack part is running: waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        _Stack(paths, sup).up()


def cleanup(paths: SandboxPaths) -> None:
    """After the processes are stopped: the VMs' namespaces, bridges, mounts and processes."""
    if importlib.util.find_spec("flexinfra_sandbox.vms") is not None:
        from flexinfra_sandbox import vms

        vms.cleanup(paths)
    dataplane.flush_firewall()


def env(paths: SandboxPaths) -> dict[str, str]:
    return {"OS_CLIENT_CONFIG_FILE": str(paths.clouds_yaml), "OS_CLOUD": "demo"}


__all__ = ["PORTS", "SERVICES", "ServiceFailed", "cleanup", "env", "install", "up"]
