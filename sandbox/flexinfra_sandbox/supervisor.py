"""Start, watch and stop the sandbox's long-running processes by PID.

Every service runs detached in its own session (so its process group can be signalled as a
whole), logs to ``<state>/logs/<name>.log`` and is remembered in ``<state>/run/<name>.pid``.
``up`` twice starts nothing new; ``down`` with nothing running is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from flexinfra_sandbox.paths import SandboxPaths

LOG_TAIL_LINES = 40


class SandboxError(RuntimeError):
    """A failure a person can act on; the message says what and where to look."""


class PortInUse(SandboxError):
    pass


class ServiceFailed(SandboxError):
    pass


@dataclass(frozen=True)
class ServiceSpec:
    """One long-running process of the sandbox."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    #: TCP ports on 127.0.0.1 it listens on: checked free before start, polled for readiness
    ports: Sequence[int] = ()
    #: extra readiness probe, polled after the ports answer (e.g. an HTTP GET)
    ready: Callable[[], bool] | None = None
    ready_timeout: float = 180.0
    cwd: Path | None = None
    #: seconds between SIGTERM and SIGKILL on stop
    stop_grace: float = 10.0


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log yet)"
    return "\n".join(text.splitlines()[-lines:])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def port_holder(port: int) -> str:
    """Who listens on ``port`` (pid and command), best effort, for error messages."""
    try:
        out = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown process"
    return out.split("users:", 1)[1].strip() if "users:" in out else "unknown process"


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead for our purposes
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


class Supervisor:
    def __init__(self, paths: SandboxPaths):
        self.paths = paths

    # --- bookkeeping -------------------------------------------------------------------
    def _pidfile(self, name: str) -> Path:
        return self.paths.pids / f"{name}.pid"

    def log_path(self, name: str) -> Path:
        return self.paths.logs / f"{name}.log"

    def pid(self, name: str) -> int | None:
        """PID of a running service, or None (stale pid files are removed).

        A pid file holds the PID and the process's start time: after a reboot (or when the
        sandbox's processes were killed) the PID may belong to an unrelated process, which
        `down` must never signal.
        """
        pidfile = self._pidfile(name)
        try:
            fields = pidfile.read_text().split()
            pid = int(fields[0])
            started = fields[1] if len(fields) > 1 else None
        except (FileNotFoundError, ValueError, IndexError):
            return None
        if pid_alive(pid) and (started is None or started == start_time(pid)):
            return pid
        pidfile.unlink(missing_ok=True)
        return None

    def _order(self) -> list[str]:
        order_file = self.paths.pids / "order"
        if not order_file.exists():
            return []
        return [n for n in order_file.read_text().split() if n]

    def _remember(self, name: str) -> None:
        order = self._order()
        if name not in order:
            order.append(name)
            (self.paths.pids / "order").write_text("\n".join(order) + "\n")

    # --- lifecycle ---------------------------------------------------------------------
    def start(self, spec: ServiceSpec) -> tuple[int, bool]:
        """Start ``spec`` unless it already runs. Returns (pid, started_now)."""
        self.paths.ensure_dirs()
        existing = self.pid(spec.name)
        if existing is not None:
            return existing, False
        for port in spec.ports:
            if port_open(port):
                raise PortInUse(
                    f"port {port} on 127.0.0.1, needed by the sandbox service {spec.name!r}, "
                    f"is already taken by {port_holder(port)}; stop that process or free the port"
                )
        log = self.log_path(spec.name)
        with log.open("ab") as out:
            out.write(f"\n=== {time.strftime('%F %T')} starting {spec.name}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                list(spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **spec.env},
                cwd=spec.cwd,
                start_new_session=True,
            )
        self._pidfile(spec.name).write_text(f"{proc.pid} {start_time(proc.pid)}\n")
        self._remember(spec.name)
        return proc.pid, True

    def wait_ready(self, spec: ServiceSpec) -> None:
        deadline = time.monotonic() + spec.ready_timeout
        while True:
            if self.pid(spec.name) is None:
                raise ServiceFailed(
                    f"sandbox service {spec.name!r} exited during start-up; "
                    f"last lines of {self.log_path(spec.name)}:\n{tail(self.log_path(spec.name))}"
                )
            if all(port_open(p) for p in spec.ports) and (spec.ready is None or _safe(spec.ready)):
                return
            if time.monotonic() > deadline:
                raise ServiceFailed(
                    f"sandbox service {spec.name!r} not ready after {spec.ready_timeout:.0f}s; "
                    f"last lines of {self.log_path(spec.name)}:\n{tail(self.log_path(spec.name))}"
                )
            time.sleep(0.25)

    def ensure(self, spec: ServiceSpec) -> bool:
        """Start if needed and wait until ready. Returns True when it was started now."""
        _, started = self.start(spec)
        self.wait_ready(spec)
        return started

    def ensure_all(self, specs: Sequence[ServiceSpec]) -> list[str]:
        """Start several services at once, then wait for each. Returns those started now."""
        started = [s.name for s in specs if self.start(s)[1]]
        for s in specs:
            self.wait_ready(s)
        return started

    def stop(self, name: str, grace: float = 10.0) -> bool:
        """Stop a service's whole process group: TERM, then KILL after ``grace`` seconds."""
        pid = self.pid(name)
        if pid is None:
            self._pidfile(name).unlink(missing_ok=True)
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        _signal_group(pid, signal.SIGKILL)
        self._pidfile(name).unlink(missing_ok=True)
        return True

    def stop_all(self, grace: float = 10.0) -> list[str]:
        """Stop every service this sandbox started (newest first), all within one ``grace``.

        TERM goes to every service first and the grace period runs for all of them at once:
        stopping ~20 services one after another, several of which take their time to shut down
        gracefully (nova-compute), took 25-40 s.
        """
        names = list(reversed(self._order()))
        # pid files of services not in the order file (should not happen, but be thorough)
        if self.paths.pids.exists():
            names += [p.stem for p in sorted(self.paths.pids.glob("*.pid")) if p.stem not in names]
        stopped = self.stop_many(names, grace)
        (self.paths.pids / "order").unlink(missing_ok=True)
        return stopped

    def stop_many(self, names: Sequence[str], grace: float = 10.0) -> list[str]:
        """Stop several services at once (TERM to all, one shared grace, then KILL).

        Returns those that were running.
        """
        running = {name: pid for name in names if (pid := self.pid(name)) is not None}
        for pid in running.values():
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(pid_alive(p) for p in running.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        for name, pid in running.items():
            # also the group's leftovers (workers) when the leader is already gone
            _signal_group(pid, signal.SIGKILL)
            self._pidfile(name).unlink(missing_ok=True)
        return list(running)

    def memory(self) -> dict[str, int]:
        """RSS in bytes of each running service, summed over its whole session (workers
        included: every service is started as a session leader)."""
        by_session: dict[int, int] = {}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                stat = (proc / "stat").read_text()
                session = int(stat.rsplit(")", 1)[1].split()[3])
                rss_pages = int((proc / "statm").read_text().split()[1])
            except (OSError, ValueError, IndexError):
                continue
            by_session[session] = by_session.get(session, 0) + rss_pages * os.sysconf(
                "SC_PAGE_SIZE")
        return {name: by_session.get(pid, 0) for name, pid in self.status().items() if pid}

    def status(self) -> dict[str, int | None]:
        return {name: self.pid(name) for name in self._order()}

    def run(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        timeout: float = 600,
        cwd: Path | None = None,
    ) -> str:
        """Run a one-shot command (db sync, bootstrap); log it; raise with the log tail on error."""
        self.paths.ensure_dirs()
        log = self.paths.logs / f"{name}.log"
        with log.open("ab") as out:
            out.write(f"\n=== {time.strftime('%F %T')} {' '.join(map(str, argv))}\n".encode())
            out.flush()
            start = out.tell()
            try:
                proc = subprocess.run(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **(env or {})},
                    timeout=timeout,
                    cwd=cwd,
                )
            except subprocess.TimeoutExpired as e:
                raise ServiceFailed(
                    f"{name}: {argv[0]} timed out after {timeout:.0f}s; last lines of {log}:\n"
                    f"{tail(log)}"
                ) from e
        if proc.returncode != 0:
            raise ServiceFailed(
                f"{name}: {' '.join(map(str, argv[:3]))} ... exited {proc.returncode}; "
                f"last lines of {log}:\n{tail(log)}"
            )
        with log.open("rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")


def _safe(probe: Callable[[], bool]) -> bool:
    try:
        return bool(probe())
    except Exception:
        return False


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
