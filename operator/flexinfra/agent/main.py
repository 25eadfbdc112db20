"""``flexinfra agent --config /etc/flexinfra/agent.json`` (or ``python3 agent.pyz ...``).

Starts the supervisor loop, the health listener and the control API; a second copy on the
same node exits at once (a lock in the state dir), so boot scripts may start it twice.
SIGTERM stops the agent only: mariadbd keeps running and a restarted agent adopts it.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import stat
import sys
import threading

from . import AGENT_VERSION
from .config import AgentConfig
from .server import make_servers
from .supervisor import Supervisor

log = logging.getLogger("flexinfra.agent")


def read_secret(path: str) -> str:
    st = os.stat(path)
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SystemExit(f"{path} must be readable by its owner only (chmod 600)")
    with open(path) as f:
        value = f.read().strip()
    if len(value) < 32:
        raise SystemExit(f"{path}: token too short (at least 32 characters)")
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="flexinfra agent", description=__doc__)
    p.add_argument("--config", default="/etc/flexinfra/agent.json")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    cfg = AgentConfig.load(args.config)
    os.makedirs(cfg.state_dir, mode=0o700, exist_ok=True)
    lock = open(os.path.join(cfg.state_dir, "agent.lock"), "w")  # noqa: SIM115
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print("flexinfra agent: already running on this node", file=sys.stderr)
        return 0
    token = read_secret(cfg.token_file)
    sup = Supervisor(cfg, token)
    api, health = make_servers(cfg, sup, token)
    log.info("flexinfra agent %s for node %s: api :%d (mTLS + token), health :%d, "
             "desired state %s", AGENT_VERSION, cfg.node, cfg.api_port, cfg.health_port,
             sup.state["desired"])

    def stop(_sig, _frm):
        log.info("agent stopping (mariadbd is left as it is)")
        sup.shutdown()
        threading.Thread(target=api.shutdown, daemon=True).start()
        threading.Thread(target=health.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threads = [threading.Thread(target=sup.run_forever, name="supervisor", daemon=True),
               threading.Thread(target=health.serve_forever, name="health", daemon=True)]
    for t in threads:
        t.start()
    api.serve_forever()
    api.server_close()
    health.server_close()
    return 0
