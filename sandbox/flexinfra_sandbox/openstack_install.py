"""Installing the sandbox's OpenStack: the services' own venv and the project's plug-ins.

The venv lives under the cache, pinned by ``sandbox/constraints.txt``, built under a temporary
name and renamed when complete (so an interrupted install never looks done); the plug-ins
package (``sandbox/plugins``) is reinstalled when its files change (by hash), which the
configs carry so the services that load it restart.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from flexinfra_sandbox.paths import SandboxPaths

#: pinned so the venv build is reproducible; it only installs, the services never import it
UV_VERSION = "0.13.9"
PYTHON = "/usr/bin/python3"  # Debian's: python3-venv is in install-packages.sh


def _log(msg: str) -> None:
    print(f"sandbox/openstack: {msg}", file=sys.stderr, flush=True)

def _plugins_dir(paths: SandboxPaths) -> Path:
    return paths.files / "plugins"


def plugins_hash(paths: SandboxPaths) -> str:
    """Hash of the plug-ins package's source, so a changed file reinstalls it."""
    h = hashlib.sha256()
    root = _plugins_dir(paths)
    for f in sorted(root.rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts and ".egg-info" not in str(f):
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def _uv(paths: SandboxPaths) -> Path:
    """A uv binary in its own small cached venv (a cache: rebuilt when missing)."""
    tools = paths.cache / f"uv-{UV_VERSION}"
    uv = tools / "bin" / "uv"
    if uv.exists():
        return uv
    tmp = tools.with_name(tools.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(tmp)], check=True)
    subprocess.run([str(tmp / "bin" / "pip"), "install", "-q", f"uv=={UV_VERSION}"], check=True)
    shutil.rmtree(tools, ignore_errors=True)
    tmp.rename(tools)
    return uv


def _uv_env(paths: SandboxPaths) -> dict[str, str]:
    return {**os.environ, "UV_CACHE_DIR": str(paths.cache / "uv"), "UV_NO_PROGRESS": "1"}


def install(paths: SandboxPaths) -> None:
    """Build the OpenStack venv if missing, (re)install the plug-ins, write the virt shim."""
    paths.ensure_dirs()
    venv = paths.openstack_venv
    if not (venv / ".complete").exists():
        t0 = time.monotonic()
        _log(f"building the OpenStack venv {venv} (pinned by {paths.constraints.name})")
        uv = _uv(paths)
        tmp = venv.with_name(venv.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        py = PYTHON if Path(PYTHON).exists() else sys.executable
        env = _uv_env(paths)
        # --relocatable: entry points find their python relative to themselves, so the venv
        # still works after the rename below
        subprocess.run(
            [str(uv), "venv", "-q", "--relocatable", "--python", py, str(tmp)], check=True, env=env
        )
        subprocess.run(
            [
                str(uv), "pip", "install", "-q", "--python", str(tmp / "bin" / "python"),
                "--compile-bytecode", "-c", str(paths.constraints),
                "-r", str(paths.files / "requirements.txt"),
            ],
            check=True,
            env=env,
        )  # fmt: skip
        (tmp / ".complete").write_text(paths.constraints.read_text())
        shutil.rmtree(venv, ignore_errors=True)
        tmp.rename(venv)
        _log(f"OpenStack venv built in {time.monotonic() - t0:.0f}s")
    _install_plugins(paths, venv)


def _install_plugins(paths: SandboxPaths, venv: Path) -> None:
    digest = plugins_hash(paths)
    stamp = venv / f".plugins-{digest}"
    if not stamp.exists():
        _log("installing the sandbox plug-ins package into the OpenStack venv")
        # build from a copy: an in-tree build leaves build/ and *.egg-info in the repository
        with _tempdir(paths) as tmp:
            src = tmp / "plugins"
            shutil.copytree(
                _plugins_dir(paths),
                src,
                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"),
            )
            subprocess.run(
                [
                    str(_uv(paths)), "pip", "install", "-q",
                    "--python", str(venv / "bin" / "python"), "--no-deps", "--no-build-isolation",
                    "--reinstall", "--compile-bytecode", str(src),
                ],
                check=True,
                env=_uv_env(paths),
            )  # fmt: skip
        # the plug-ins' former name: its entry point would shadow ours in a cached venv
        subprocess.run(
            [str(_uv(paths)), "pip", "uninstall", "-q", "--python", str(venv / "bin" / "python"),
             "flexinfra-sandbox-plugins"],
            check=False, capture_output=True, env=_uv_env(paths),
        )
        for old in venv.glob(".plugins-*"):
            old.unlink()
        stamp.write_text(digest + "\n")
    # Nova prefixes compute_driver with "nova.virt.": a shim module makes ours importable so
    shim = _site_packages(venv) / "nova" / "virt" / "flexinfra_netns.py"
    text = "from flexinfra_sandbox_cloud.virt import *  # noqa\n"
    if not shim.exists() or shim.read_text() != text:
        shim.write_text(text)


@contextlib.contextmanager
def _tempdir(paths: SandboxPaths):
    d = paths.cache / f"tmp-{os.getpid()}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def _compute_driver(paths: SandboxPaths) -> str:
    """The project's netns driver once it exists; until then Nova's fake single-node driver."""
    if (_plugins_dir(paths) / "flexinfra_sandbox_cloud" / "virt.py").exists():
        return "flexinfra_netns.NetnsDriver"
    return "fake.FakeDriverWithoutFakeNodes"


def _pkg_version(venv: Path, dist: str) -> str:
    """Installed version of a distribution in the venv, for stamps that must redo on upgrade."""
    for d in _site_packages(venv).glob("*.dist-info"):
        name, _, version = d.name[: -len(".dist-info")].rpartition("-")
        if name.lower().replace("-", "_") == dist.lower().replace("-", "_"):
            return version
    return "unknown"
