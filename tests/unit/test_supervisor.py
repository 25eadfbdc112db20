"""The sandbox supervisor's bookkeeping, on real processes (no sandbox needed)."""

from __future__ import annotations

import subprocess
import sys

from flexinfra_sandbox.paths import SandboxPaths
from flexinfra_sandbox.supervisor import ServiceSpec, Supervisor, start_time


def test_a_reused_pid_is_never_taken_for_a_service(tmp_path):
    sup = Supervisor(SandboxPaths(state=tmp_path / "state", cache=tmp_path / "cache"))
    pid, started = sup.start(ServiceSpec("sleeper", [sys.executable, "-c",
                                                     "import time; time.sleep(60)"]))
    try:
        assert started and sup.pid("sleeper") == pid
        # the pid file of a dead service now points at an unrelated live process (this one)
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        sup._pidfile("sleeper").write_text(f"{other.pid} 1\n")
        assert sup.pid("sleeper") is None, "a different start time must not match"
        assert not sup._pidfile("sleeper").exists()
        assert other.poll() is None
        other.kill()
        other.wait()
        # and the real one, recorded with its start time, is found
        sup._pidfile("sleeper").write_text(f"{pid} {start_time(pid)}\n")
        assert sup.pid("sleeper") == pid
    finally:
        sup.stop("sleeper", grace=1)
    assert sup.pid("sleeper") is None
