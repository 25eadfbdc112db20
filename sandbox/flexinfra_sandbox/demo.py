"""`make demo`: the sandbox up, the operator running, examples/ applied, the result shown.

The operator runs as a sandbox service, so `flexinfra sandbox down` stops it with the rest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from flexinfra_sandbox import cli as sandbox
from flexinfra_sandbox import traffic
from flexinfra_sandbox.paths import REPO_ROOT, SandboxPaths
from flexinfra_sandbox.supervisor import ServiceSpec, Supervisor, tail

NAMESPACE = "fixweb"
SECRET = "tenant-fixweb"
OPERATOR_METRICS_PORT = 9180


def kubectl(env: dict[str, str], *args: str, input: str | None = None) -> str:
    return subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True,
                          env=env, check=True).stdout


def main() -> int:
    paths = SandboxPaths.from_env()
    print("== sandbox up (first run builds and installs; later runs start what is stopped)")
    took = sandbox.up(paths)
    print(f"   ready in {took:.0f}s")
    env = {**os.environ, **sandbox.env(paths)}

    print("== CRDs, namespace, credentials Secret")
    kubectl(env, "apply", "-f", str(REPO_ROOT / "crds"))
    kubectl(env, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    manifest = kubectl(env, "create", "namespace", NAMESPACE, "--dry-run=client", "-o", "yaml")
    kubectl(env, "apply", "-f", "-", input=manifest)
    secret = kubectl(env, "-n", NAMESPACE, "create", "secret", "generic", SECRET,
                     f"--from-file=clouds.yaml={paths.clouds_yaml}", "--dry-run=client",
                     "-o", "yaml")
    kubectl(env, "apply", "-f", "-", input=secret)

    print("== operator")
    sup = Supervisor(paths)
    sup.ensure(ServiceSpec(
        name="flexinfra-operator",
        argv=[sys.executable, "-m", "flexinfra", "run",
              "--metrics-port", str(OPERATOR_METRICS_PORT)],
        env={"KUBECONFIG": env["KUBECONFIG"], "FLEXINFRA_HEALTH_PORT": "0"},
        ports=[OPERATOR_METRICS_PORT],
        ready_timeout=60,
    ))
    print(f"   running; metrics on http://127.0.0.1:{OPERATOR_METRICS_PORT}/metrics, "
          f"log in {sup.log_path('flexinfra-operator')}")

    print("== kubectl apply -f examples/")
    print(kubectl(env, "apply", "-f", str(REPO_ROOT / "examples")), end="")
    print("== waiting for every WebSite to be Ready (up to 10 min)")
    deadline = time.monotonic() + 600
    while True:
        sites = json.loads(kubectl(env, "get", "websites", "-A", "-o", "json"))["items"]
        ready = [s for s in sites if _ready(s)]
        if len(ready) == len(sites):
            break
        if sup.pid("flexinfra-operator") is None:
            print("the operator exited; last lines of its log:\n"
                  + tail(sup.log_path("flexinfra-operator")))
            return 1
        if time.monotonic() > deadline:
            print(kubectl(env, "get", "flexinfra", "-A"))
            print("not every site became Ready; see the conditions above and the operator log")
            return 1
        time.sleep(3)

    print(kubectl(env, "get", "flexinfra", "-A"), end="")
    for site in sites:
        st = site["status"]
        print(f"\n{site['metadata']['namespace']}/{site['metadata']['name']}: {st.get('url')}")
        for server in st["resources"]["servers"]:
            answer = _get(f"http://{server['address']}/")
            print(f"  {server['name']:<34} {server['availabilityZone'] or '-':<5} "
                  f"{server['address']:<15} -> {answer}")
        if st.get("url"):
            # the public URL: floating IP -> router -> VIP -> haproxy in the amphora -> servers
            host = st["url"].split("//", 1)[-1].split("/", 1)[0]
            print(f"  {st['url']} (route: {traffic.check_local(host)})")
            result = traffic.Client(st["url"], count=12, interval=0.1, deadline=30).run()
            print(f"  12 requests through the load balancer: {result.summary()}")
    print("\nexplore:  eval \"$(flexinfra sandbox env)\"; kubectl get flexinfra -A; "
          "kubectl describe website -n fixweb client-a")
    return 0


def _ready(site: dict) -> bool:
    conds = (site.get("status") or {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def _get(url: str) -> str:
    try:
        return traffic.fetch(url)
    except Exception as e:
        return f"no answer ({e})"


if __name__ == "__main__":
    raise SystemExit(main())
