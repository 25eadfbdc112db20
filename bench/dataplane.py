"""Data-plane figures of the sandbox (prints them, asserts nothing).

* floating IP associate -> reachable from the host (median of N), and move to another server;
* load balancer create -> ACTIVE; member add -> serving through the VIP;
* memory added per load balancer (the amphora VM's processes, PSS and RSS) and per router
  (its namespace's processes: the L3 agent runs none for a legacy router);
* failed/total of a bounded client on a WebSite's public URL through a rolling template
  change, a scale-down and a killed web process (the operator doing the work).

Every request goes to an address on this machine (``traffic.check_local``). Needs the sandbox
up. Usage: python bench/dataplane.py [--samples 5] [--no-site]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flexinfra_sandbox import traffic
from flexinfra_sandbox.paths import SandboxPaths
from tests.e2e.harness import Kube, Operator, cloud, sandbox_paths, tenant_secret, unique

SERVE = """#!/bin/sh
mkdir -p /srv/www && hostname > /srv/www/index.html
cd /srv/www && nohup python3 -m http.server 80 >/dev/null 2>&1 &
"""
CIDR = "10.42.1.0/24"


def until(check, timeout: float, every: float = 0.05) -> float:
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"not within {timeout}s")
        time.sleep(every)
    return time.monotonic() - t0


def answer(url: str) -> str | None:
    try:
        return traffic.fetch(url, timeout=1)
    except (OSError, traffic.NotLocal):
        return None


def memory_of(netns: str) -> tuple[float, float, int]:
    """(PSS MiB, RSS MiB, processes) of every process in a network namespace."""
    pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True,
                          text=True).stdout.split()
    pss = rss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1])
        except OSError:
            pass
    return pss / 1024, rss / 1024, len(pids)


def cloud_figures(conn, samples: int) -> dict:
    tag = f"bdp{uuid.uuid4().hex[:6]}"
    undo = []
    out: dict = {}
    try:
        public = conn.network.find_network("public")
        net = conn.network.create_network(name=f"{tag}-net")
        undo.append(lambda: conn.network.delete_network(net))
        sub = conn.network.create_subnet(network_id=net.id, cidr=CIDR, ip_version=4,
                                         name=f"{tag}-sub")
        undo.append(lambda: conn.network.delete_subnet(sub))
        router = conn.network.create_router(name=f"{tag}-r",
                                            external_gateway_info={"network_id": public.id})
        undo.append(lambda: conn.network.delete_router(router))
        conn.network.add_interface_to_router(router, subnet_id=sub.id)
        undo.append(lambda: conn.network.remove_interface_from_router(router, subnet_id=sub.id))
        sg = conn.network.create_security_group(name=f"{tag}-sg")
        undo.append(lambda: conn.network.delete_security_group(sg))
        conn.network.create_security_group_rule(
            security_group_id=sg.id, direction="ingress", ethertype="IPv4", protocol="tcp",
            port_range_min=80, port_range_max=80, remote_ip_prefix="0.0.0.0/0")
        image = conn.image.find_image("cirros")
        flavor = conn.compute.find_flavor("m1.tiny")
        import base64
        servers = []
        for i in range(2):
            s = conn.compute.create_server(
                name=f"{tag}-vm{i}", image_id=image.id, flavor_id=flavor.id,
                networks=[{"uuid": net.id}], security_groups=[{"name": sg.name}],
                user_data=base64.b64encode(SERVE.encode()).decode())
            servers.append(s)
            undo.append(lambda s=s: (conn.compute.delete_server(s),
                                     conn.compute.wait_for_delete(s, interval=0.5, wait=120)))
        servers = [conn.compute.wait_for_server(s, interval=0.5, wait=180) for s in servers]
        ports = [next(conn.network.ports(device_id=s.id)) for s in servers]
        pss, rss, n = memory_of(f"qrouter-{router.id}")
        out["router_memory"] = f"{pss:.0f} MiB PSS, {rss:.0f} MiB RSS, {n} process(es)"

        fip = conn.network.create_ip(floating_network_id=public.id)
        undo.append(lambda: conn.network.delete_ip(fip))
        url = f"http://{fip.floating_ip_address}/"
        assoc, moves = [], []
        for _ in range(samples):
            for port, server, bucket in ((ports[0], servers[0], assoc),
                                         (ports[1], servers[1], moves)):
                t0 = time.monotonic()
                conn.network.update_ip(fip, port_id=port.id)
                until(lambda s=server: answer(url) == s.name, 20)
                bucket.append(time.monotonic() - t0)
            conn.network.update_ip(fip, port_id=None)
            until(lambda: answer(url) is None, 20)
        out["fip_associate_s"] = f"median {statistics.median(assoc):.2f} (max {max(assoc):.2f})"
        out["fip_move_s"] = f"median {statistics.median(moves):.2f} (max {max(moves):.2f})"

        t0 = time.monotonic()
        lb = conn.load_balancer.create_load_balancer(name=f"{tag}-lb", vip_subnet_id=sub.id)
        undo.append(lambda: (conn.load_balancer.delete_load_balancer(lb, cascade=True),
                             until(lambda: conn.load_balancer.find_load_balancer(
                                 lb.id, ignore_missing=True) is None, 180, 1)))
        lb = conn.load_balancer.wait_for_load_balancer(lb.id, interval=0.5, wait=300)
        out["lb_active_s"] = round(time.monotonic() - t0, 1)
        amp = next(connect_admin().load_balancer.amphorae(loadbalancer_id=lb.id))
        pss, rss, n = memory_of(f"fxvm-{amp.compute_id}")
        out["lb_memory"] = f"{pss:.0f} MiB PSS, {rss:.0f} MiB RSS, {n} processes (amphora VM)"
        ls = conn.load_balancer.create_listener(name=f"{tag}-l", protocol="HTTP",
                                                protocol_port=80, load_balancer_id=lb.id)
        conn.load_balancer.wait_for_load_balancer(lb.id, interval=0.5, wait=120)
        pool = conn.load_balancer.create_pool(name=f"{tag}-p", protocol="HTTP",
                                              lb_algorithm="ROUND_ROBIN", listener_id=ls.id)
        conn.load_balancer.wait_for_load_balancer(lb.id, interval=0.5, wait=120)
        vip = f"http://{lb.vip_address}/"
        adds = []
        for s in servers:
            t0 = time.monotonic()
            conn.load_balancer.create_member(pool, address=s.addresses[f"{tag}-net"][0]["addr"],
                                             protocol_port=80, subnet_id=sub.id)
            seen: set = set()
            until(lambda s=s, seen=seen: seen.add(answer(vip)) or s.name in seen, 60, 0.05)
            adds.append(time.monotonic() - t0)
            conn.load_balancer.wait_for_load_balancer(lb.id, interval=0.5, wait=120)
        out["member_add_to_serving_s"] = " ".join(f"{a:.2f}" for a in adds)
    finally:
        for fn in reversed(undo):
            try:
                fn()
            except Exception as e:  # report, go on: the rest must still be removed
                print(f"cleanup: {e}", file=sys.stderr)
    return out


def connect_admin():
    return cloud(SandboxPaths.from_env().clouds_yaml, "admin")


def site_figures() -> dict:
    """The e2e serving scenario, run once, with its failed/total per case."""
    from tests.e2e.test_serving import serving_scenario

    paths = sandbox_paths()
    kube = Kube(paths.kubeconfig)
    ns = unique("bench-serve")
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    kube.apply(tenant_secret(ns, paths.clouds_yaml))
    log_dir = Path(f"/tmp/flexinfra-bench-{ns}")
    log_dir.mkdir(exist_ok=True)
    op = Operator(paths.kubeconfig, ns, log_dir)
    op.start()
    try:
        cases = serving_scenario(kube, ns, "bench-serve", "10.42.2.0/24")
    finally:
        kube.kubectl("-n", ns, "delete", "websites", "--all", "--wait=true", "--timeout=300s",
                     check=False)
        op.stop()
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    return {f"serving: {k}": f"{v.failed}/{v.total} failed" for k, v in cases.items()}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--no-site", action="store_true")
    args = p.parse_args()
    figures = cloud_figures(cloud(sandbox_paths().clouds_yaml), args.samples)
    if not args.no_site:
        figures.update(site_figures())
    for key, value in figures.items():
        print(f"{key:<40} {value}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
