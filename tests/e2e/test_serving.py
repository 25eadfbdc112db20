"""Ready means serving, and the public URL keeps serving: a bounded client on the floating IP
(through the router, the VIP, haproxy in the amphora, to the servers) while the operator
rolls a template change and scales down sees no failed request; when a server's web process
dies, failures stop within the health monitor's window and the site says Degraded.

Every request goes to an address on this machine (``traffic.check_local``)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from flexinfra_sandbox import traffic
from flexinfra_sandbox.paths import SandboxPaths
from tests.e2e.harness import unique, wait_for
from tests.e2e.test_website import template, website

pytestmark = pytest.mark.e2e

CHECK = {"path": "/healthz", "delay": 2, "timeout": 1, "maxRetries": 2}
#: haproxy takes a server out after delay x retries; 2 s for the request in flight
WINDOW = CHECK["delay"] * CHECK["maxRetries"] + 2


def kill_web(server_id: str) -> None:
    """The web process of one server dies (its VM keeps running)."""
    state = json.loads((SandboxPaths.from_env().data / "vms" / server_id / "state.json")
                       .read_text())
    subprocess.run(["nsenter", "-t", str(state["init_pid"]), "-a", "pkill", "-f",
                    "http.server 80"], check=True)


def ready_site(kube, namespace, name, servers: int):
    def ok():
        obj = kube.wait_condition("websites", namespace, name, timeout=300)
        return len(obj["status"]["resources"]["servers"]) == servers and obj
    return wait_for(ok, 360, f"{servers} server(s) and Ready")


def serving_scenario(kube, namespace: str, name: str, cidr: str) -> dict[str, traffic.Result]:
    """A two-server site; a bounded client on its public URL through: just Ready, a rolling
    template change, a scale-down, a web process killed. Returns each case's result (the
    killed case's ``late``: failures after the health monitor's window). Used by the test
    below and by ``bench/dataplane.py``."""
    kube.apply(template(namespace, "web", "v1"))
    kube.apply(website(namespace, name, cidr, replicas=2,
                       loadBalancer={"ports": [80], "healthCheck": CHECK}))
    obj = ready_site(kube, namespace, name, 2)
    url = obj["status"]["url"]
    print(f"{url}: {traffic.check_local(url.split('//')[1].rstrip('/'))}")
    cases: dict[str, traffic.Result] = {}
    cases["just Ready"] = traffic.Client(url, count=20, interval=0.05, deadline=30).run()

    client = traffic.Client(url, count=5000, interval=0.2, timeout=3, deadline=540).start()
    kube.apply(template(namespace, "web", "v2"))

    def rolled():
        o = kube.get("websites", namespace, name)
        ready = any(c["type"] == "Ready" and c["status"] == "True"
                    for c in o["status"]["conditions"])
        probe = traffic.Client(url, count=6, interval=0.05, deadline=10).run()
        return ready and len(o["status"]["resources"]["servers"]) == 2 and all(
            a.startswith("v2 ") for a in probe.answers) and probe.failed == 0
    wait_for(rolled, 480, "rolled to v2 and serving it", every=2)
    time.sleep(3)
    cases["rolling template change"] = client.stop()

    client = traffic.Client(url, count=3000, interval=0.2, timeout=3, deadline=360).start()
    kube.patch("websites", namespace, name, {"spec": {"replicas": 1}})
    ready_site(kube, namespace, name, 1)
    time.sleep(3)
    cases["scale down 2 -> 1"] = client.stop()

    kube.patch("websites", namespace, name, {"spec": {"replicas": 2}})
    obj = ready_site(kube, namespace, name, 2)
    wait_for(lambda: len(traffic.Client(url, count=10, interval=0.05).run().answers) == 2, 60,
             "both servers answering")
    victim = obj["status"]["resources"]["servers"][0]
    client = traffic.Client(url, count=300, interval=0.1, timeout=1, deadline=30).start()
    time.sleep(1)
    killed_at = time.monotonic() - client.started
    kill_web(victim["id"])
    time.sleep(WINDOW + 6)
    dead = client.stop()
    dead.late = [f for f in dead.failures if f[0] > killed_at + WINDOW]  # type: ignore[attr-defined]
    dead.victim = victim["name"]  # type: ignore[attr-defined]
    cases["a server's web process killed"] = dead
    for case, result in cases.items():
        print(f"{case:<32} {result.failed}/{result.total} failed")
    return cases


def test_public_url_serves_through_rolls_scale_down_and_a_dead_server(kube, namespace, operator):
    name = unique("serve")
    cases = serving_scenario(kube, namespace, name, "10.20.11.0/24")
    first = cases["just Ready"]
    assert first.failed == 0 and len(first.answers) == 2, first.summary()
    assert all(a.startswith("v1 ") for a in first.answers)
    for case in ("rolling template change", "scale down 2 -> 1"):
        result = cases[case]
        assert result.failed == 0, f"{case}: {result.summary()}; {result.failures[:5]}"
    dead = cases["a server's web process killed"]
    assert not dead.late, f"failures after the {WINDOW}s window: {dead.late}"

    # the operator notices on its next pass: Degraded, a Warning Event naming the server
    def degraded():
        o = kube.get("websites", namespace, name)
        c = {c["type"]: c for c in o["status"]["conditions"]}
        return c["Degraded"]["status"] == "True" and c["Degraded"]["reason"] == "MemberError" \
            and c["Ready"]["status"] == "True" and o
    wait_for(degraded, 90, "Degraded with MemberError", every=2)
    events = [e for e in kube.events(namespace, name) if e["reason"] == "MemberError"]
    assert events and dead.victim in events[-1]["message"], events
