"""`flexinfra sandbox up | down [--wipe] | status | env`: the whole local test ground.

The parts are independent modules, each exposing the same four verbs:

* ``install(paths)``: make sure what it needs is installed or built (idempotent, cached);
* ``up(paths, supervisor)``: start its processes and bootstrap them (a second call starts nothing);
* ``cleanup(paths)``: after its processes are stopped, remove what outlives them
  (network namespaces, bridges, mounts);
* ``env(paths)``: the shell variables a client needs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterable

from flexinfra_sandbox.paths import SandboxPaths
from flexinfra_sandbox.supervisor import SandboxError, Supervisor


def _parts() -> Iterable:
    # kube first: it is independent and quick, so a Kubernetes-only user gets it early
    from flexinfra_sandbox import kube, openstack

    return (kube, openstack)


def install_packages(paths: SandboxPaths) -> None:
    """Debian packages for every part; the script is idempotent and quick when done."""
    script = paths.files / "install-packages.sh"
    subprocess.run(["bash", str(script)], check=True)


def up(paths: SandboxPaths | None = None) -> float:
    paths = paths or SandboxPaths.from_env()
    paths.ensure_dirs()
    sup = Supervisor(paths)
    t0 = time.monotonic()
    install_packages(paths)
    for part in _parts():
        part.install(paths)
    for part in _parts():
        part.up(paths, sup)
    return time.monotonic() - t0


def down(paths: SandboxPaths | None = None, wipe: bool = False) -> list[str]:
    paths = paths or SandboxPaths.from_env()
    stopped: list[str] = []
    if paths.state.exists():
        stopped = Supervisor(paths).stop_all()
    for part in reversed(tuple(_parts())):
        part.cleanup(paths)
    if wipe and paths.state.exists():
        shutil.rmtree(paths.state)
    return stopped


def status(paths: SandboxPaths | None = None) -> dict[str, int | None]:
    paths = paths or SandboxPaths.from_env()
    if not paths.state.exists():
        return {}
    return Supervisor(paths).status()


def env(paths: SandboxPaths | None = None) -> dict[str, str]:
    paths = paths or SandboxPaths.from_env()
    out: dict[str, str] = {}
    for part in _parts():
        out.update(part.env(paths))
    return out


def cli(args) -> int:
    paths = SandboxPaths.from_env()
    try:
        if args.sandbox_cmd == "up":
            took = up(paths)
            print(f"sandbox up in {took:.0f}s; state in {paths.state}")
            print("use it with:  eval \"$(flexinfra sandbox env)\"")
        elif args.sandbox_cmd == "down":
            stopped = down(paths, wipe=args.wipe)
            print(f"stopped {len(stopped)} service(s)" + ("; state wiped" if args.wipe else ""))
        elif args.sandbox_cmd == "status":
            st = status(paths)
            if not st:
                print("sandbox: nothing running")
                return 1
            rss = Supervisor(paths).memory()
            width = max(len(n) for n in st)
            for name, pid in st.items():
                state = f"running pid {pid:<8} {rss.get(name, 0) / 2**20:7.0f} MiB" if pid else (
                    "STOPPED")
                print(f"{name:<{width}}  {state}")
            print(f"{'total':<{width}}  {len(st)} services {sum(rss.values()) / 2**30:10.2f} GiB "
                  "RSS (VMs not included)")
            from flexinfra_sandbox import dataplane

            print(f"external range {dataplane.external_range_status()}")
            return 0 if all(st.values()) else 1
        elif args.sandbox_cmd == "env":
            for key, value in env(paths).items():
                print(f"export {key}={shlex_quote(value)}")
    except SandboxError as e:
        print(f"flexinfra sandbox: {e}", file=sys.stderr)
        return 2
    return 0


def shlex_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


class SandboxCommand:
    """`flexinfra sandbox ...`, contributed to the operator's CLI by entry point."""

    @staticmethod
    def add_parser(sub) -> None:
        sb = sub.add_parser("sandbox", help="the local OpenStack + kube-apiserver test ground")
        sbs = sb.add_subparsers(dest="sandbox_cmd", required=True)
        sbs.add_parser("up", help="install (cached) and start everything; a second run starts "
                       "nothing")
        down_p = sbs.add_parser("down", help="stop everything started by `up`")
        down_p.add_argument("--wipe", action="store_true", help="also delete the sandbox's state")
        sbs.add_parser("status", help="list the sandbox's services and whether they run")
        sbs.add_parser("env", help="print shell exports for openstack clients and kubectl")

    @staticmethod
    def run(args) -> int:
        return cli(args)


class DemoCommand:
    """`flexinfra demo`: what `make demo` runs."""

    @staticmethod
    def add_parser(sub) -> None:
        sub.add_parser("demo", help="sandbox up, operator running, examples applied, sites shown")

    @staticmethod
    def run(args) -> int:
        from flexinfra_sandbox import demo

        return demo.main()


SANDBOX = SandboxCommand()
DEMO = DemoCommand()
