"""The `flexinfra` command: run the operator, write CRDs, plan, drive the sandbox."""

from __future__ import annotations

import argparse
import sys

from flexinfra import __version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flexinfra", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    sub.add_parser("version", help="print the version")

    crds = sub.add_parser("crds", help="write the CustomResourceDefinitions generated from the API")
    crds.add_argument("--out", default="crds", help="directory to write into (default: crds)")

    run = sub.add_parser("run", help="run the operator")
    run.add_argument("--namespace", "-n", action="append", default=[],
                     help="watch only this namespace (repeatable; default: all)")
    run.add_argument("--metrics-port", type=int, default=None)

    plan = sub.add_parser("plan", help="show what applying a manifest would change in the cloud")
    plan.add_argument("-f", "--filename", required=True)
    plan.add_argument("--cloud", default=None, help="cloud name in clouds.yaml (default: OS_CLOUD)")

    # parsed by the agent itself (see main): listed here for --help
    sub.add_parser("agent", help="run the Galera node agent (on a database node)",
                   add_help=False)

    sb = sub.add_parser("sandbox", help="the local OpenStack + kube-apiserver test ground")
    sbs = sb.add_subparsers(dest="sandbox_cmd", required=True)
    sbs.add_parser("up", help="install (cached) and start everything; a second run starts nothing")
    down = sbs.add_parser("down", help="stop everything started by `up`")
    down.add_argument("--wipe", action="store_true", help="also delete the sandbox's state")
    sbs.add_parser("status", help="list the sandbox's services and whether they run")
    sbs.add_parser("env", help="print shell exports for openstack clients and kubectl")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["agent"]:
        from flexinfra.agent.main import main as agent_main

        return agent_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.cmd == "version":
        print(__version__)
        return 0
    if args.cmd == "sandbox":
        from flexinfra.sandbox.main import cli

        return cli(args)
    if args.cmd == "crds":
        from flexinfra.api.crds import write_crds

        for path in write_crds(args.out):
            print(path)
        return 0
    if args.cmd == "run":
        from flexinfra.runner import run

        return run(args)
    if args.cmd == "plan":
        from flexinfra.plan_cli import plan

        return plan(args)
    print(f"unknown command {args.cmd}", file=sys.stderr)
    return 2
