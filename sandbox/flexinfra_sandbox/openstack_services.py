"""What the sandbox's OpenStack runs: one ``ServiceSpec`` per long-running service.

APIs run as WSGI apps in the embedded gunicorn (``flexinfra_sandbox_cloud.wsgi_runner``);
workers and agents as the venv's console scripts. Services that plug devices or call a root
helper (Neutron's API and agents, nova-compute) get the data-plane environment
(``dataplane.agent_env``).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from flexinfra_sandbox import dataplane
from flexinfra_sandbox.openstack_conf import COMPUTES, HOST, PORTS
from flexinfra_sandbox.paths import SandboxPaths
from flexinfra_sandbox.supervisor import ServiceSpec


def _http_ready(port: int, path: str = "/") -> Callable[[], bool]:
    """Ready when the app (not just gunicorn's master) answers anything below 500."""

    def probe() -> bool:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=3) as r:
                return r.status < 500
        except urllib.error.HTTPError as e:
            return e.code < 500

    return probe


class Services:
    """Builds the specs from the venv's bin dir and the sandbox's paths."""

    def __init__(self, bin_dir: Path, paths: SandboxPaths):
        self.bin = bin_dir
        self.paths = paths

    def api(
        self,
        name: str,
        module: str,
        args: tuple[object, ...] = (),
        env: dict[str, str] | None = None,
        port_key: str | None = None,
        threads: int = 4,
    ) -> ServiceSpec:
        port = PORTS[port_key or name]
        return ServiceSpec(
            name,
            [
                str(self.bin / "python"),
                "-m",
                "flexinfra_sandbox_cloud.wsgi_runner",
                "--name",
                name,
                "--module",
                module,
                "--bind",
                f"{HOST}:{port}",
                "--threads",
                str(threads),
                "--",
                *map(str, args),
            ],
            env=env or {},
            ports=[port],
            ready=_http_ready(port),
            ready_timeout=240,
            stop_grace=10,
        )

    def daemon(
        self, name: str, script: str, cfg: Path, env: dict[str, str] | None = None
    ) -> ServiceSpec:
        return ServiceSpec(
            name, [str(self.bin / script), "--config-file", str(cfg)], env=env or {}, stop_grace=10
        )

    def services(self, files: dict[str, Path]) -> list[ServiceSpec]:
        etc = self.paths.etc
        specs = [
            self.api(
                "glance", "glance.wsgi.api", env={"OS_GLANCE_CONFIG_DIR": str(etc / "glance")}
            ),
            self.api(
                "placement",
                "placement.wsgi.api",
                env={"OS_PLACEMENT_CONFIG_DIR": str(etc / "placement")},
            ),
            # the API's ML2 driver puts the host on each new subnet (plugins/.../ml2.py)
            self.api("neutron", "neutron.wsgi.api", args=("--config-file", files["neutron"]),
                     env=dataplane.agent_env(self.paths)),
            self.daemon("neutron-rpc-server", "neutron-rpc-server", files["neutron"],
                        env=dataplane.agent_env(self.paths)),
            ServiceSpec(
                "neutron-l3-agent",
                [str(self.bin / "neutron-l3-agent"), "--config-file", str(files["neutron"]),
                 "--config-file", str(files["l3-agent"])],
                env=dataplane.agent_env(self.paths), stop_grace=10,
            ),
            ServiceSpec(
                "neutron-sandbox-agent",
                [str(self.bin / "neutron-sandbox-agent"), "--config-file", str(files["neutron"]),
                 "--config-file", str(files["l2-agent"])],
                env=dataplane.agent_env(self.paths), stop_grace=10,
            ),
            self.api(
                "nova-api",
                "nova.wsgi.osapi_compute",
                env={"OS_NOVA_CONFIG_DIR": str(etc / "nova")},
                port_key="nova",
            ),
            self.daemon("nova-conductor", "nova-conductor", files["nova"]),
            self.daemon("nova-scheduler", "nova-scheduler", files["nova"]),
            self.api(
                "cinder-api",
                "cinder.wsgi.api",
                args=("--config-file", files["cinder"]),
                port_key="cinder",
            ),
            self.daemon("cinder-scheduler", "cinder-scheduler", files["cinder"]),
            self.daemon("cinder-volume", "cinder-volume", files["cinder"]),
        ]
        for host in COMPUTES:
            (self.paths.data / f"nova-compute-{host}" / "instances").mkdir(
                parents=True, exist_ok=True
            )
            # runs as root (we are root): the netns driver makes namespaces, veths, bridges
            specs.append(
                self.daemon(
                    f"nova-compute-{host}",
                    "nova-compute",
                    files[host],
                    env={"FLEXINFRA_SANDBOX_STATE": str(self.paths.state)},
                )
            )
        return specs

    def octavia_services(self, cfg: Path) -> list[ServiceSpec]:
        return [
            self.api(
                "octavia-api", "octavia.wsgi.api", args=("--config-file", cfg), port_key="octavia"
            ),
            self.daemon("octavia-worker", "octavia-worker", cfg),
            # heartbeats of the amphorae: member, pool and LB operating status, failovers
            self.daemon("octavia-health-manager", "octavia-health-manager", cfg),
        ]
