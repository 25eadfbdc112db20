"""Where the sandbox keeps its state, its caches and its shipped files.

State (databases, configs, logs, pid files) lives under ``state``; ``--wipe`` removes it.
Caches (the OpenStack venv, the kube-apiserver binary, downloaded packages) live under
``cache``: each is rebuilt when missing, so deleting any of them is always safe.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

#: the repository's ``sandbox/`` directory (scripts, constraints, plugins): this package lives
#: in it and is installed editable (``pip install -e sandbox``), so its files stay at hand
SANDBOX_FILES = Path(__file__).resolve().parents[1]
REPO_ROOT = SANDBOX_FILES.parent


@dataclass(frozen=True)
class SandboxPaths:
    state: Path
    cache: Path
    files: Path = SANDBOX_FILES

    @classmethod
    def from_env(cls) -> SandboxPaths:
        home = Path.home()
        state = os.environ.get("FLEXINFRA_SANDBOX_STATE") or home / ".local/state/flexinfra/sandbox"
        cache = os.environ.get("FLEXINFRA_CACHE") or home / ".cache/flexinfra"
        return cls(state=Path(state), cache=Path(cache))

    # --- state -------------------------------------------------------------------------
    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def pids(self) -> Path:
        return self.state / "run"

    @property
    def etc(self) -> Path:
        """Generated configuration files, one directory per service."""
        return self.state / "etc"

    @property
    def data(self) -> Path:
        """Datadirs: MariaDB, RabbitMQ, etcd, Glance images, VM and volume directories."""
        return self.state / "data"

    @property
    def clouds_yaml(self) -> Path:
        return self.state / "clouds.yaml"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    # --- caches ------------------------------------------------------------------------
    @property
    def constraints(self) -> Path:
        return self.files / "constraints.txt"

    @property
    def openstack_venv(self) -> Path:
        """The OpenStack services' venv; its name changes with the pinned set."""
        digest = hashlib.sha256(self.constraints.read_bytes()).hexdigest()[:12]
        return self.cache / f"openstack-venv-{digest}"

    @property
    def kube_bin(self) -> Path:
        """Where build-kube-apiserver.sh installs; named after its RECIPE_VERSION, read from it.

        A change to the recipe bumps that number, so a binary built by an older recipe is not
        used: the install step builds the new one.
        """
        script = self.files / "kube" / "build-kube-apiserver.sh"
        for line in script.read_text().splitlines():
            if line.startswith("RECIPE_VERSION="):
                recipe = line.removeprefix("RECIPE_VERSION=").strip()
                if recipe.isdigit():
                    return self.cache / "kube" / f"v1.20.2-r{recipe}" / "bin"
        raise ValueError(f"{script}: no `RECIPE_VERSION=<integer>` line")

    def ensure_dirs(self) -> None:
        for d in (self.logs, self.pids, self.etc, self.data, self.cache):
            d.mkdir(parents=True, exist_ok=True)
