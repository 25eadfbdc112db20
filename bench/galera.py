"""GaleraCluster figures on the sandbox (prints them, asserts nothing), with the detection
settings they depend on:

* cluster create: apply -> Ready (Ready = every node Synced, the writer's member ONLINE and a
  probe row written through the writer endpoint);
* writer failover: kill -9 of the writer's mariadbd -> first commit through the endpoint by a
  client committing a row every 50 ms (each of N rounds; the writer moves every round);
* full outage: every server stopped by Nova; the operator powers them on; servers ACTIVE
  again -> Primary with every node Synced (and Ready);
* the agent's RSS on each node.

A namespace of its own, the operator as a process, a tenant CIDR in 10.70.0.0/16, every
connection to an address on this machine; everything deleted at the end. Needs the sandbox
up. Usage: python bench/galera.py [--rounds 3] [--no-outage]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flexinfra.kinds.galera import PROVIDER_OPTIONS
from flexinfra.planning.galera import HEALTH_CHECK
from tests.e2e import galera_lib as G
from tests.e2e.harness import REPO, Kube, Operator, cloud, sandbox_paths, tenant_secret, unique

CIDR = "10.70.40.0/24"


def agent_rss_mib(server_id: str) -> float | None:
    out = G.in_vm(server_id, "sh", "-c",
                  "for p in $(pgrep -f agent.pyz); do grep VmRSS /proc/$p/status; done",
                  check=False).stdout.split()
    kb = [int(x) for x in out if x.isdigit()]
    return max(kb) / 1024 if kb else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-outage", action="store_true")
    args = ap.parse_args()
    paths = sandbox_paths()
    kube, conn = Kube(paths.kubeconfig), cloud(paths.clouds_yaml)
    crds = [str(REPO / "crds" / f) for f in ("flexinfra.io_galeraclusters.yaml",
                                             "flexinfra.io_websites.yaml")]
    stop = threading.Event()

    def keep_crds() -> None:  # the sandbox's apiserver is shared: keep this API applied
        while True:
            for f in crds:
                kube.kubectl("apply", "-f", f, check=False)
            if stop.wait(5):
                return

    threading.Thread(target=keep_crds, daemon=True).start()
    time.sleep(3)
    ns = unique("bench-gc")
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    kube.apply(tenant_secret(ns, paths.clouds_yaml))
    op = Operator(paths.kubeconfig, ns, Path(f"/tmp/{ns}"))
    op.log_dir.mkdir(parents=True, exist_ok=True)
    op.start()
    figures: list[tuple[str, str]] = []
    try:
        name = "bench"
        t = time.monotonic()
        kube.apply(G.cluster(ns, name, CIDR))
        obj = G.wait_ready(kube, ns, name, timeout=600)
        figures.append(("cluster create: apply -> Ready", f"{time.monotonic() - t:.1f} s"))
        password = G.root_password(kube, ns, name)

        failovers = []
        for _ in range(args.rounds):
            obj = G.wait_ready(kube, ns, name, timeout=300)
            w = G.RowWriter(obj["status"]["endpoint"], password, interval=0.05,
                            deadline=120, start_id=int(time.time() * 1000) % 10**9).start()
            time.sleep(3)
            writer = obj["status"]["writer"]
            server = next(n["server"] for n in obj["status"]["nodes"] if n["name"] == writer)
            at = w.now()
            G.kill_mariadbd(server)
            G.wait_ready(kube, ns, name, timeout=300)
            time.sleep(3)
            res = w.stop()
            first = res.outage_after(at)
            G.check_data(kube, ns, name, res, password)
            failovers.append(first - at if first is not None else float("nan"))
        figures.append(("writer failover: kill -9 -> first commit (per round)",
                        " / ".join(f"{x:.1f}" for x in failovers) + " s, median "
                        f"{statistics.median(failovers):.1f} s"))

        if not args.no_outage:
            obj = G.wait_ready(kube, ns, name, timeout=300)
            servers = [n["server"] for n in obj["status"]["nodes"]]
            for s in servers:
                conn.compute.stop_server(s)
            end = time.monotonic() + 300
            while time.monotonic() < end and not all(
                    conn.compute.get_server(s).status == "SHUTOFF" for s in servers):
                time.sleep(0.5)
            while time.monotonic() < end and not all(
                    conn.compute.get_server(s).status == "ACTIVE" for s in servers):
                time.sleep(0.2)
            t = time.monotonic()
            obj = G.wait_ready(kube, ns, name, timeout=300)
            steps = [s["action"] for s in obj["status"]["recovery"]["steps"]]
            figures.append(("full outage: servers ACTIVE -> Primary, every node Synced",
                            f"{time.monotonic() - t:.1f} s ({', '.join(dict.fromkeys(steps))})"))

        obj = G.wait_ready(kube, ns, name, timeout=300)
        rss = [agent_rss_mib(n["server"]) for n in obj["status"]["nodes"]]
        figures.append(("agent RSS per node", ", ".join(f"{r:.1f} MiB" if r else "?"
                                                       for r in rss)))
    finally:
        print("\nGaleraCluster figures (3 nodes, 2-core sandbox)")
        print("  detection: wsrep_provider_options "
              + "; ".join(f"{k}={v}" for k, v in PROVIDER_OPTIONS))
        hc = HEALTH_CHECK
        print(f"  writer endpoint health monitor: {hc.type} GET {hc.path} every {hc.delay} s, "
              f"timeout {hc.timeout} s, down after {hc.max_retries_down} failures, up after "
              f"{hc.max_retries}")
        for what, value in figures:
            print(f"  {what:<58} {value}")
        try:
            kube.delete_namespace(ns)
        finally:
            op.stop()
            stop.set()


if __name__ == "__main__":
    main()
