"""End-to-end harness: the operator as a real process, against the sandbox's real
kube-apiserver and real OpenStack. Nothing here is mocked."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import openstack
import openstack.config
import yaml

from flexinfra.api import GROUP, VERSION
from flexinfra_sandbox.paths import SandboxPaths

REPO = Path(__file__).resolve().parents[2]


def sandbox_paths() -> SandboxPaths:
    paths = SandboxPaths.from_env()
    missing = [p for p in (paths.kubeconfig, paths.clouds_yaml) if not p.exists()]
    if missing:
        raise RuntimeError(
            f"the sandbox is not up ({', '.join(map(str, missing))} missing): "
            "run `flexinfra sandbox up` (or `make sandbox-up`) first"
        )
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # the thing waited for may fail while it converges
            last_error = e
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}"
                         + (f" (last error: {last_error})" if last_error else ""))


class Kube:
    """A thin client over the sandbox apiserver: apply manifests, read custom objects."""

    def __init__(self, kubeconfig: Path):
        self.kubeconfig = kubeconfig
        self.api = kubernetes.config.new_client_from_config(str(kubeconfig))
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.custom = kubernetes.client.CustomObjectsApi(self.api)
        # kubectl caches discovery/OpenAPI for minutes: stale right after a CRD changes
        self.cache_dir = tempfile.mkdtemp(prefix="flexinfra-kubectl-cache-")

    def kubectl(self, *args: str, input: str | None = None, check: bool = True
                ) -> subprocess.CompletedProcess:
        from flexinfra_sandbox import kube

        env = {**os.environ, **kube.env(SandboxPaths.from_env()),
               "KUBECONFIG": str(self.kubeconfig), "KUBECACHEDIR": self.cache_dir}
        return subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True,
                              env=env, check=check, timeout=60)

    def apply(self, doc: dict | str, check: bool = True) -> subprocess.CompletedProcess:
        text = doc if isinstance(doc, str) else yaml.safe_dump(doc)
        return self.kubectl("apply", "-f", "-", input=text, check=check)

    def get(self, plural: str, namespace: str, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)

    def exists(self, plural: str, namespace: str, name: str) -> bool:
        try:
            self.get(plural, namespace, name)
            return True
        except kubernetes.client.ApiException as e:
            if e.status == 404:
                return False
            raise

    def patch(self, plural: str, namespace: str, name: str, body: dict) -> dict:
        return self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, body)

    def delete(self, plural: str, namespace: str, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except kubernetes.client.ApiException as e:
            if e.status != 404:
                raise

    def condition(self, plural: str, namespace: str, name: str, type_: str = "Ready"
                  ) -> dict | None:
        obj = self.get(plural, namespace, name)
        return next((c for c in (obj.get("status") or {}).get("conditions", [])
                     if c["type"] == type_), None)

    def wait_condition(self, plural: str, namespace: str, name: str, status: str = "True",
                       reason: str | None = None, timeout: float = 300) -> dict:
        def check():
            obj = self.get(plural, namespace, name)
            st = obj.get("status") or {}
            if st.get("observedGeneration") != obj["metadata"].get("generation"):
                return None
            cond = next((c for c in st.get("conditions", []) if c["type"] == "Ready"), None)
            if cond and cond["status"] == status and (reason is None or cond["reason"] == reason):
                return obj
            return None
        return wait_for(check, timeout, f"{plural}/{name} Ready={status} reason={reason}")

    def delete_namespace(self, namespace: str) -> None:
        """Empty the namespace, then finalize it (by hand: the sandbox may have no
        controller-manager; with one, its namespace controller does the same)."""
        for plural in ("websites", "sitetemplates", "galeraclusters", "glustervolumes"):
            self.kubectl("-n", namespace, "delete", plural, "--all", "--wait=false",
                         check=False)
        wait_for(lambda: not any(
            self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, p)["items"]
            for p in ("websites", "galeraclusters", "glustervolumes")), 300,
            f"flexinfra objects of {namespace} gone (finalizers released)")
        # --wait=false: a Secret still held by the in-use finalizer must not block here
        self.kubectl("-n", namespace, "delete", "secrets,configmaps,events", "--all",
                     "--wait=false", check=False)
        self.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace},
                "spec": {"finalizers": []}}
        self.kubectl("replace", "--raw", f"/api/v1/namespaces/{namespace}/finalize", "-f", "-",
                     input=json.dumps(body), check=False)

    def events(self, namespace: str, name: str) -> list[dict]:
        items = self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name}").items
        return [{"reason": e.reason, "message": e.message, "type": e.type} for e in items]


@dataclass
class Operator:
    """`flexinfra run` as a child process, restartable and killable like in production."""

    kubeconfig: Path
    namespace: str
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    metrics_port: int = 0
    runs: int = 0
    #: tells apart two instances on one namespace (the takeover test) in log file names
    label: str = ""

    def start(self) -> None:
        self.runs += 1
        self.metrics_port = free_port()
        log = (self.log_dir / f"operator-{self.namespace}{self.label}-{self.runs}.log").open("wb")
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "FLEXINFRA_DRIFT_INTERVAL": "15",
            "FLEXINFRA_RETRY_DELAY": "2",
            "FLEXINFRA_RETRY_MAX_DELAY": "10",
            "FLEXINFRA_HEALTH_PORT": "0",
            **self.env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flexinfra", "run", "--namespace", self.namespace,
             "--metrics-port", str(self.metrics_port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        wait_for(lambda: _port_open(self.metrics_port), 60, "operator metrics endpoint", 0.3)

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye, like a node dying."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def metrics(self) -> dict[str, float]:
        import urllib.request

        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                      timeout=5).read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(
            self.log_dir.glob(f"operator-{self.namespace}{self.label}-*.log")))

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


#: the shipped rules (manifests/rbac.yaml's ClusterRole), granted as a Role in a test namespace
RBAC_MANIFEST = REPO / "manifests" / "rbac.yaml"
OPERATOR_SA = "flexinfra-operator"


def shipped_rules() -> list[dict]:
    docs = list(yaml.safe_load_all(RBAC_MANIFEST.read_text()))
    return next(d for d in docs if d and d.get("kind") == "ClusterRole")["rules"]


def serviceaccount_mode(kube: Kube) -> bool:
    """Run the e2e operator as a ServiceAccount with the shipped RBAC, not as the sandbox's
    system:masters admin: on when kube-controller-manager runs in the sandbox (its token
    controller makes ServiceAccount tokens), unless FLEXINFRA_E2E_ADMIN=1."""
    if os.environ.get("FLEXINFRA_E2E_ADMIN") == "1":
        return False
    if os.environ.get("FLEXINFRA_E2E_SERVICEACCOUNT") == "1":
        return True
    try:
        with socket.create_connection(("127.0.0.1", 10257), timeout=0.5):
            return True  # kube-controller-manager's port (flexinfra_sandbox.kube)
    except OSError:
        return False


def serviceaccount_kubeconfig(kube: Kube, namespace: str, out: Path,
                              rules: list[dict] | None = None, name: str = OPERATOR_SA,
                              cluster_wide: bool = False) -> Path:
    """A ServiceAccount in ``namespace`` bound to a Role with the shipped rules (what the chart
    grants with watchNamespaces), and a kubeconfig with its token (made by the controller-
    manager's token controller). ``cluster_wide``: what the chart grants without
    watchNamespaces (and ``manifests/rbac.yaml``): a ClusterRole and a ClusterRoleBinding,
    the ServiceAccount in a namespace of its own (``<namespace>-operator``), so that deleting
    ``namespace`` takes neither the operator's identity nor its rights;
    ``remove_cluster_wide_serviceaccount`` removes them."""
    kind = "ClusterRole" if cluster_wide else "Role"
    home = f"{namespace}-operator" if cluster_wide else namespace
    if cluster_wide:
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": home}})
    placed = {"name": f"{name}-{namespace}"} if cluster_wide else {"name": name,
                                                                    "namespace": namespace}
    kube.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": home}})
    kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
                "metadata": placed,
                "rules": rules if rules is not None else shipped_rules()})
    kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": f"{kind}Binding",
                "metadata": placed,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind,
                            "name": placed["name"]},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": home}]})

    def token() -> str | None:
        sa = kube.core.read_namespaced_service_account(name, home)
        for ref in sa.secrets or []:
            secret = kube.core.read_namespaced_secret(ref.name, home)
            if secret.type == "kubernetes.io/service-account-token" and secret.data:
                import base64

                return base64.b64decode(secret.data["token"]).decode()
        return None

    value = wait_for(token, 60, f"a token for ServiceAccount {home}/{name}")
    admin = yaml.safe_load(kube.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    config = {"apiVersion": "v1", "kind": "Config", "clusters": [cluster],
              "users": [{"name": name, "user": {"token": value}}],
              "contexts": [{"name": name, "context": {"cluster": cluster["name"], "user": name,
                                                      "namespace": namespace}}],
              "current-context": name}
    out.write_text(yaml.safe_dump(config))
    out.chmod(0o600)
    return out


def remove_cluster_wide_serviceaccount(kube: Kube, namespace: str,
                                       name: str = OPERATOR_SA) -> None:
    for kind in ("clusterrolebinding", "clusterrole"):
        kube.kubectl("delete", kind, f"{name}-{namespace}", "--ignore-not-found", check=False)
    kube.kubectl("delete", "namespace", f"{namespace}-operator", "--ignore-not-found",
                 "--wait=false", check=False)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def tenant_secret(namespace: str, clouds_yaml: Path, name: str = "tenant") -> dict:
    return {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"clouds.yaml": clouds_yaml.read_text()},
    }


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def cloud(clouds_yaml: Path, name: str = "demo") -> openstack.connection.Connection:
    region = openstack.config.OpenStackConfig(
        config_files=[str(clouds_yaml)], load_envvars=False).get_one(cloud=name)
    return openstack.connection.Connection(config=region)


def owned_by(conn: openstack.connection.Connection, uid: str) -> dict[str, list[str]]:
    """Everything in the tenant tagged with ``uid``: the leak detector."""
    tag = f"flexinfra-owner:{uid}"
    found = {
        "networks": [n.id for n in conn.network.networks(tags=[tag])],
        "subnets": [s.id for s in conn.network.subnets(tags=[tag])],
        "routers": [r.id for r in conn.network.routers(tags=[tag])],
        "ports": [p.id for p in conn.network.ports(tags=[tag])],
        "security_groups": [g.id for g in conn.network.security_groups(tags=[tag])],
        "floating_ips": [f.id for f in conn.network.ips(tags=[tag])],
        "servers": [s.id for s in conn.compute.servers(tags=tag)],
        "load_balancers": [lb.id for lb in conn.load_balancer.load_balancers(tags=[tag])],
        "server_groups": [g.id for g in conn.compute.server_groups() if uid in g.name],
        "volumes": [v.id for v in conn.block_storage.volumes()
                    if (v.metadata or {}).get("flexinfra-owner") == uid],
    }
    return {k: v for k, v in found.items() if v}


def named_like(conn: openstack.connection.Connection, prefix: str) -> dict[str, list[str]]:
    """Everything in the tenant whose name (a floating IP: its description) starts with
    ``prefix``, tagged or not: the leak detector for what lost its tags."""
    def named(items, attr="name"):
        return [i.id for i in items if (getattr(i, attr, None) or "").startswith(prefix)]

    found = {
        "networks": named(conn.network.networks()),
        "subnets": named(conn.network.subnets()),
        "routers": named(conn.network.routers()),
        "ports": named(conn.network.ports()),
        "security_groups": named(conn.network.security_groups()),
        "floating_ips": named(conn.network.ips(), "description"),
        "servers": named(conn.compute.servers()),
        "server_groups": named(conn.compute.server_groups()),
        "volumes": named(conn.block_storage.volumes()),
        "load_balancers": named(conn.load_balancer.load_balancers()),
    }
    return {k: v for k, v in found.items() if v}


def on_subnet(conn: openstack.connection.Connection, cidr: str) -> dict[str, list[str]]:
    """Subnets of ``cidr`` and every port with an address in it: what a lost network or a
    port that escaped both tag and name would leave."""
    import ipaddress

    net = ipaddress.ip_network(cidr)
    subnets = [s.id for s in conn.network.subnets()
               if s.cidr and ipaddress.ip_network(s.cidr, strict=False).overlaps(net)]
    ports = [p.id for p in conn.network.ports()
             if any(ipaddress.ip_address(ip["ip_address"]) in net
                    for ip in p.fixed_ips or [] if ":" not in ip["ip_address"])]
    found = {"subnets": subnets, "ports": ports}
    return {k: v for k, v in found.items() if v}


def leaks(conn: openstack.connection.Connection, uid: str, prefix: str,
          cidr: str | None) -> dict[str, dict[str, list[str]]]:
    """What is left of one owner, looked for three ways: by tag, by name, by subnet (each
    listing retried: a loaded sandbox Neutron answers 500 to a full port list now and then)."""
    out = {"tag": retrying(lambda: owned_by(conn, uid)),
           "name": retrying(lambda: named_like(conn, prefix))}
    if cidr:
        out["subnet"] = retrying(lambda: on_subnet(conn, cidr))
    return {k: v for k, v in out.items() if v}


def retrying(fn: Callable[[], Any], attempts: int = 6, every: float = 2.0) -> Any:
    """``fn()``, again after a server-side error (5xx) or a dropped connection."""
    for n in range(attempts):
        try:
            return fn()
        except (openstack.exceptions.HttpException, OSError) as e:
            status = getattr(e, "status_code", None)
            if n == attempts - 1 or (status is not None and status < 500):
                raise
            time.sleep(every)
    raise AssertionError("unreachable")


def prefix_of(namespace: str, name: str) -> str:
    from flexinfra.core.tags import Owner

    return Owner("", namespace, name).prefix


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)[:4000]
