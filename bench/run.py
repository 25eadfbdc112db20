"""WebSite benchmark: prints figures, asserts nothing (targets are read by people).

For N sites applied at once (default 1, 10, 50):
* apply→Ready wall time of the operator, divided by the wall time of the same cloud work done
  directly with maximal parallelism (bench/baseline.py) — target ≤ 1.15;
* OpenStack API calls made by the operator for create, per idle drift period, and for delete
  — idle calls must not grow with N;
* Kubernetes writes per idle period (resourceVersion changes of the sites) — target 0.

With ``--compare REF[:VAR=VALUE,...]`` (repeatable), the operator of each git REF (``HEAD`` is
the working tree) is measured too, in the same run and against the same baseline, one after the
other, each with its own CRDs and in its own namespace; the optional settings are its
environment (e.g. ``HEAD:FLEXINFRA_MEMBER_HEALTH=ignored`` for "Ready" as older code meant it).

Needs the sandbox up (`make sandbox-up`).
Usage: python bench/run.py [--sites 1,10] [--replicas 1] [--compare 2d18de3 --compare HEAD]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import cpu
from bench.baseline import build_site, cleanup_leftovers, delete_site
from tests.e2e.harness import (
    REPO,
    Kube,
    Operator,
    cloud,
    sandbox_paths,
    tenant_secret,
    unique,
    wait_for,
)

DRIFT = 30.0
#: sources of other commits, extracted once (safe to lose: rebuilt from git)
CACHE = Path(os.environ.get("FLEXINFRA_CACHE", Path.home() / ".cache" / "flexinfra"))
SOURCES = CACHE / "bench-src"


@dataclass(frozen=True)
class Variant:
    """One operator to measure: the working tree, or the code of a git ref, with settings."""

    label: str
    source: Path  # holds operator/ and crds/
    env: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> Variant:
        ref, _, settings = text.partition(":")
        env = dict(item.split("=", 1) for item in settings.split(",") if item)
        return cls(label=text, source=source_of(ref), env=env)


def source_of(ref: str) -> Path:
    """The tree of ``ref`` (``HEAD`` = the working tree, uncommitted changes included)."""
    if ref == "HEAD":
        return REPO
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{ref}^{{commit}}"],
                         check=True, capture_output=True, text=True).stdout.strip()
    target = SOURCES / sha
    if not target.is_dir():
        SOURCES.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=SOURCES, prefix=".tmp-"))
        archive = subprocess.run(["git", "-C", str(REPO), "archive", sha, "operator", "crds"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        try:
            tmp.rename(target)
        except OSError:  # another run extracted it first
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def variant_env(variant: Variant) -> dict[str, str]:
    env = {"FLEXINFRA_DRIFT_INTERVAL": str(DRIFT), **variant.env}
    if variant.source != REPO:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(variant.source / "operator"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def calls_by_kind(op: Operator) -> dict[str, float]:
    """OpenStack calls so far, per ``resource verb``."""
    out: dict[str, float] = {}
    for key, value in op.metrics().items():
        if key.startswith("flexinfra_openstack_requests_total{"):
            labels = dict(part.split("=", 1) for part in key[key.index("{") + 1:-1].split(","))
            name = f"{labels['resource'].strip(chr(34))} {labels['verb'].strip(chr(34))}"
            out[name] = out.get(name, 0) + value
    return out


def phases(op: Operator) -> str:
    """Mean seconds per reconcile phase (observe, quota, execute) over the run so far."""
    m = op.metrics()
    out = []
    for phase in ("observe", "quota", "execute"):
        key = f'flexinfra_reconcile_phase_seconds_%s{{kind="WebSite",phase="{phase}"}}'
        count, total = m.get(key % "count", 0), m.get(key % "sum", 0)
        if count:
            out.append(f"{phase} {total / count:.2f}s x{count:.0f}")
    return ", ".join(out)


def calls(op: Operator) -> float:
    return sum(calls_by_kind(op).values())


def top_calls(before: dict[str, float], after: dict[str, float], top: int = 8) -> str:
    diff = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}
    return ", ".join(f"{k}={v:.0f}" for k, v in sorted(diff.items(), key=lambda kv: -kv[1])[:top])


def site(ns: str, i: int, replicas: int) -> dict:
    return {
        "apiVersion": "flexinfra.io/v1alpha1", "kind": "WebSite",
        "metadata": {"name": f"site-{i}", "namespace": ns},
        "spec": {"cloud": {"secretName": "tenant", "cloudName": "demo"}, "template": "web",
                 "replicas": replicas, "network": {"cidr": f"10.100.{i}.0/24"},
                 "loadBalancer": {"ports": [80]}, "ingress": [{"port": 80}]},
    }


def ready(obj: dict) -> bool:
    st = obj.get("status") or {}
    return st.get("observedGeneration") == obj["metadata"]["generation"] and any(
        c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", []))


def warm_up(kube: Kube, ns: str) -> None:
    """Let the fresh operator authenticate, discover the endpoints and list the tenant once,
    as a long-running one has, by a site it refuses (its image does not exist): nothing is
    built, and the measured sites do not pay a one-off start-up cost."""
    kube.apply({"apiVersion": "flexinfra.io/v1alpha1", "kind": "SiteTemplate",
                "metadata": {"name": "warm-up", "namespace": ns},
                "spec": {"image": "no-such-image", "flavor": "m1.tiny", "ports": [{"port": 80}]}})
    kube.apply({**site(ns, 0, 1), "metadata": {"name": "warm-up", "namespace": ns},
                "spec": {**site(ns, 0, 1)["spec"], "template": "warm-up"}})

    def refused():
        obj = kube.custom.get_namespaced_custom_object(
            "flexinfra.io", "v1alpha1", ns, "websites", "warm-up")
        return any(c["type"] == "Ready" and c.get("reason") == "InvalidSpec"
                   for c in (obj.get("status") or {}).get("conditions", []))
    wait_for(refused, 120, "the warm-up site refused", every=0.5)
    kube.kubectl("-n", ns, "delete", "website", "warm-up", "--wait=true")


def run_baseline(n: int, replicas: int) -> dict:
    """The same cloud work done directly with the SDK, as parallel as it goes."""
    conn = cloud(sandbox_paths().clouds_yaml)
    cleanup_leftovers(conn)
    with ThreadPoolExecutor(max_workers=min(n, 16)) as ex:
        cpu0 = cpu.snapshot()
        t0 = time.monotonic()
        made = list(ex.map(lambda i: build_site(conn, f"bl-{i}", f"10.101.{i}.0/24",
                                                replicas), range(n)))
        out = {"baseline_s": time.monotonic() - t0,
               "baseline_cpu": cpu.summary(cpu.spent(cpu0, cpu.snapshot()))}
        list(ex.map(lambda m: delete_site(conn, m), made))
    return out


def run(n: int, replicas: int, variant: Variant) -> dict:
    paths = sandbox_paths()
    kube = Kube(paths.kubeconfig)
    kube.kubectl("apply", "-f", str(variant.source / "crds"))
    out: dict = {"operator": variant.label, "sites": n, "replicas": replicas}

    ns = unique("bench")
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    kube.apply(tenant_secret(ns, paths.clouds_yaml))
    kube.apply({"apiVersion": "flexinfra.io/v1alpha1", "kind": "SiteTemplate",
                "metadata": {"name": "web", "namespace": ns},
                "spec": {"image": "cirros", "flavor": "m1.tiny", "ports": [{"port": 80}],
                         "userData": "#!/bin/sh\ncd /tmp && exec python3 -m http.server 80\n"}})
    log_dir = Path(f"/tmp/flexinfra-bench-{ns}")
    log_dir.mkdir(exist_ok=True)
    op = Operator(paths.kubeconfig, ns, log_dir, env=variant_env(variant))
    op.start()
    try:
        warm_up(kube, ns)
        c0 = calls(op)
        kinds0 = calls_by_kind(op)
        cpu0 = cpu.snapshot()
        t0 = time.monotonic()
        for i in range(n):
            kube.apply(site(ns, i, replicas))

        def all_ready():
            items = kube.custom.list_namespaced_custom_object(
                "flexinfra.io", "v1alpha1", ns, "websites")["items"]
            return len(items) == n and all(ready(o) for o in items)
        wait_for(all_ready, 300 + 60 * n, f"{n} sites Ready", every=0.5)
        out["operator_s"] = time.monotonic() - t0
        out["operator_cpu"] = cpu.summary(cpu.spent(cpu0, cpu.snapshot()))
        out["create_calls"] = calls(op) - c0
        out["create_calls_top"] = top_calls(kinds0, calls_by_kind(op))
        out["create_phases"] = phases(op)

        time.sleep(DRIFT / 2)  # let the first drift round pass
        versions = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in
                    kube.custom.list_namespaced_custom_object(
                        "flexinfra.io", "v1alpha1", ns, "websites")["items"]}
        c1 = calls(op)
        time.sleep(DRIFT * 2)
        out["idle_calls_per_period"] = (calls(op) - c1) / 2
        after = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in
                 kube.custom.list_namespaced_custom_object(
                     "flexinfra.io", "v1alpha1", ns, "websites")["items"]}
        out["idle_k8s_writes_per_period"] = sum(versions[k] != after[k] for k in versions) / 2

        c2 = calls(op)
        t2 = time.monotonic()
        kube.kubectl("-n", ns, "delete", "websites", "--all", "--wait=false")
        wait_for(lambda: not kube.custom.list_namespaced_custom_object(
            "flexinfra.io", "v1alpha1", ns, "websites")["items"], 300 + 30 * n, "deletion", 1)
        out["delete_s"] = time.monotonic() - t2
        out["delete_calls"] = calls(op) - c2
    finally:
        op.stop()
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        if variant.source != REPO:  # leave the cluster with this tree's CRDs
            kube.kubectl("apply", "-f", str(REPO / "crds"))
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--sites", default="1,10,50")
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--compare", action="append", default=[], metavar="REF[:VAR=VALUE,...]",
                   help="also measure this commit's operator, in the same run (repeatable)")
    args = p.parse_args()
    variants = [Variant.parse(text) for text in args.compare] or [Variant("HEAD", REPO, {})]
    rows = []
    for n in [int(x) for x in args.sites.split(",")]:
        base = {} if args.no_baseline else run_baseline(n, args.replicas)
        for variant in variants:
            row = {**run(n, args.replicas, variant), **base}
            if base:
                row["ratio"] = row["operator_s"] / base["baseline_s"]
            rows.append(row)
            print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in row.items()), flush=True)
    if len(variants) > 1:
        print("\nsame run, same baseline:")
        print(f"{'operator':<40} {'sites':>5} {'ratio':>6} {'create':>7} {'idle':>6} "
              f"{'delete s':>8} {'delete calls':>12}")
        for row in rows:
            print(f"{row['operator']:<40} {row['sites']:>5} {row.get('ratio', float('nan')):>6.2f} "
                  f"{row['create_calls']:>7.0f} {row['idle_calls_per_period']:>6.1f} "
                  f"{row['delete_s']:>8.1f} {row['delete_calls']:>12.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
