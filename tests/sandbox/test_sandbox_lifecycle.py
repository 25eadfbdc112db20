"""`flexinfra sandbox` as a person uses it: idempotent `up`, `status`, `env`, clear errors.

The first three run against the running sandbox (CI brings it up first) without disturbing
it: a second `up` must start nothing and be quick. The error cases use a throwaway state dir,
so they never touch the real sandbox's services.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flexinfra_sandbox import openstack
from flexinfra_sandbox.paths import SandboxPaths
from flexinfra_sandbox.supervisor import PortInUse, ServiceFailed, ServiceSpec, Supervisor

pytestmark = pytest.mark.sandbox

#: a warm `up` over a running stack only checks pids, ports, configs and stamps
WARM_UP_LIMIT_S = 90


def flexinfra(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("flexinfra")
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "flexinfra"]
    return subprocess.run(
        [*argv, "sandbox", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def running() -> dict[str, int | None]:
    paths = SandboxPaths.from_env()
    status = Supervisor(paths).status() if paths.state.exists() else {}
    missing = [s for s in openstack.SERVICES if not status.get(s)]
    assert not missing, f"the sandbox is not up (not running: {missing}); run `make sandbox-up`"
    return status


def test_second_up_starts_nothing_new_and_is_fast(running):
    t0 = time.monotonic()
    r = flexinfra("up")
    took = time.monotonic() - t0
    assert r.returncode == 0, f"second `up` failed:\n{r.stdout}\n{r.stderr}"
    after = Supervisor(SandboxPaths.from_env()).status()
    changed = {n: (pid, after.get(n)) for n, pid in running.items() if after.get(n) != pid}
    assert not changed, f"a second `up` restarted services (old pid, new pid): {changed}"
    assert set(after) == set(running), "a second `up` added services"
    assert took < WARM_UP_LIMIT_S, f"a second `up` took {took:.0f}s"


def test_status_lists_every_service_running(running):
    r = flexinfra("status", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line.strip()}
    for name in openstack.SERVICES:
        assert name in lines, f"{name} missing from `status`:\n{r.stdout}"
        assert "running pid" in lines[name], lines[name]


def test_env_prints_the_exports_and_they_work(running):
    r = flexinfra("env", timeout=60)
    assert r.returncode == 0, r.stderr
    exports = dict(
        shlex.split(line.removeprefix("export "))[0].split("=", 1)
        for line in r.stdout.splitlines()
        if line.startswith("export ")
    )
    assert exports["OS_CLOUD"] == "demo"
    clouds = Path(exports["OS_CLIENT_CONFIG_FILE"])
    assert clouds.is_file()
    assert oct(clouds.stat().st_mode & 0o777) == oct(0o600), "clouds.yaml holds passwords"
    # the exports are enough for a client: a token as the demo member user
    env = {**os.environ, **exports}
    code = "import openstack; c = openstack.connect(); print(c.current_project.name)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "demo"
    assert all(secret not in r.stdout for secret in _secrets()), "`env` printed a password"


def _secrets() -> list[str]:
    import json

    f = SandboxPaths.from_env().state / "secrets.json"
    return list(json.loads(f.read_text()).values()) if f.exists() else []


# --- error cases, in a throwaway state dir -------------------------------------------------
@pytest.fixture
def scratch(tmp_path) -> Supervisor:
    return Supervisor(SandboxPaths(state=tmp_path / "state", cache=tmp_path / "cache"))


def test_taken_port_names_the_port_and_the_service(scratch):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        spec = ServiceSpec("probe-service", ["sleep", "60"], ports=[port])
        with pytest.raises(PortInUse) as e:
            scratch.start(spec)
    assert str(port) in str(e.value)
    assert "probe-service" in str(e.value)
    assert scratch.pid("probe-service") is None, "nothing may be started on a taken port"


def test_failed_service_error_carries_its_last_log_lines(scratch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free again once closed: the service never binds it
    script = "echo starting; echo 'fatal: option foo in [bar] is invalid' >&2; exit 3"
    spec = ServiceSpec("broken-service", ["sh", "-c", script], ports=[port], ready_timeout=30)
    with pytest.raises(ServiceFailed) as e:
        scratch.ensure(spec)
    msg = str(e.value)
    assert "broken-service" in msg
    assert "fatal: option foo in [bar] is invalid" in msg
    assert str(scratch.log_path("broken-service")) in msg


def test_stop_all_with_nothing_running_is_a_no_op(scratch):
    assert scratch.stop_all() == []
    assert scratch.stop_all() == []
    assert scratch.status() == {}
