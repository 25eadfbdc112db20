"""The `flexinfra` command: run the operator, write CRDs, plan.

Other distributions add subcommands through the entry-point group ``flexinfra.commands``:
the development sandbox (``sandbox/``, not part of the operator's wheel or image) adds
``flexinfra sandbox ...`` and ``flexinfra demo`` that way. An entry point names an object
with ``add_parser(subparsers)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

from flexinfra import __version__

COMMANDS_GROUP = "flexinfra.commands"


def contributed_commands() -> dict:
    """Subcommands other installed distributions contribute, by name."""
    return {ep.name: ep.load() for ep in entry_points(group=COMMANDS_GROUP)}


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
    for command in contributed_commands().values():
        command.add_parser(sub)
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
    contributed = contributed_commands()
    if args.cmd in contributed:
        return contributed[args.cmd].run(args)
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
