"""The mariadbd process on this node: start it, find it again, tell whether it runs.

No policy here (that is ``supervisor``): only how to run mariadbd correctly on a VM.

* mariadbd runs as ``mysql`` (``AgentConfig.run_as``), with ``--defaults-file`` only;
* its directories are created and owned for that user before every start and every
  ``--wsrep-recover`` (``/run`` is a fresh tmpfs after each boot, and ``--wsrep-recover``
  binds its unix socket before recovering: it fails without ``/run/mysqld``);
* it runs in its own session, so an agent restart leaves it running; a restarted agent adopts
  it through its pid file.
"""

from __future__ import annotations

import logging
import os
import pwd
import signal
import subprocess
import threading
import time

from . import mariadb
from .config import AgentConfig
from .mariadb import ServerPaths

log = logging.getLogger("flexinfra.agent")

_SHARED_DIRS = {"/", "/tmp", "/var/tmp", "/run", "/var/run", "/var/log", "/var/lib"}


class Mariadbd:
    def __init__(self, cfg: AgentConfig, paths: ServerPaths):
        self.cfg = cfg
        self.paths = paths
        self._mu = threading.RLock()
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None
        self.mode: str | None = None
        self.started_at: float | None = None
        self._adopt()

    def _adopt(self) -> None:
        try:
            with open(self.paths.pid_file) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return
        if is_our_mariadbd(pid, self.cfg.defaults_file):
            self.pid, self.mode, self.started_at = pid, "adopted", time.time()
            log.info("adopted running mariadbd pid %d", pid)

    def running(self) -> bool:
        with self._mu:
            if self.proc is not None:
                return self.proc.poll() is None
            return self.pid is not None and is_our_mariadbd(self.pid, self.cfg.defaults_file)

    def poll_exit(self) -> tuple[int | None, str | None, float] | None:
        """``(exit code or None, mode, seconds it ran)`` once, when the process has ended;
        None while it runs (or when nothing was started). Safe to call from several threads:
        only one caller gets the exit."""
        with self._mu:
            if self.proc is not None:
                code = self.proc.poll()
                if code is None:
                    return None
            elif self.pid is not None:
                if is_our_mariadbd(self.pid, self.cfg.defaults_file):
                    return None
                code = None
            else:
                return None
            ran = time.time() - (self.started_at or time.time())
            mode = self.mode
            self.proc = self.pid = self.mode = self.started_at = None
            return code, mode, ran

    def prepare_dirs(self) -> None:
        """Socket, pid, log, tmp and data directories owned by mariadbd's user; shared system
        directories are left as they are."""
        p = self.paths
        dirs = {os.path.dirname(p.socket), os.path.dirname(p.pid_file), p.datadir}
        if p.log_error:
            dirs.add(os.path.dirname(p.log_error))
        if p.tmpdir:
            dirs.add(p.tmpdir)
        pw = pwd.getpwnam(self.cfg.run_as)
        for d in sorted(dirs - _SHARED_DIRS):
            os.makedirs(d, mode=0o750 if d == p.datadir else 0o755, exist_ok=True)
            st = os.stat(d)
            if (st.st_uid, st.st_gid) != (pw.pw_uid, pw.pw_gid):
                os.chown(d, pw.pw_uid, pw.pw_gid)
        os.makedirs(self.cfg.state_dir, mode=0o700, exist_ok=True)

    def recover(self) -> tuple[str, int]:
        self.prepare_dirs()
        return mariadb.wsrep_recover(self.cfg.mariadbd, self.cfg.defaults_file,
                                     self.cfg.run_as, self.cfg.recover_timeout)

    def install_db(self) -> None:
        self.prepare_dirs()
        mariadb.install_db(self.cfg.install_db, self.cfg.defaults_file, self.paths.datadir,
                           self.cfg.run_as)

    def spawn(self, mode: str, args: list[str]) -> int:
        self.prepare_dirs()
        cmd = [self.cfg.mariadbd, f"--defaults-file={self.cfg.defaults_file}",
               f"--user={self.cfg.run_as}", *args, *self.cfg.extra_args]
        out = open(os.path.join(self.cfg.state_dir, "mariadbd.out"), "ab")  # noqa: SIM115
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    close_fds=True, env=_server_env())
        finally:
            out.close()
        with self._mu:
            self.proc, self.pid, self.mode = proc, proc.pid, mode
            self.started_at = time.time()
        return proc.pid

    def terminate(self) -> None:
        with self._mu:
            pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGTERM)


def is_mountpoint(path: str) -> bool:
    """Whether ``path`` is a mount point, bind mounts included (``os.path.ismount`` misses a
    bind mount from the same filesystem, which is what the sandbox's volumes are)."""
    want = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4]
                mp = mp.encode().decode("unicode_escape") if "\\" in mp else mp
                if mp == want:
                    return True
    except OSError:
        return os.path.ismount(path)
    return False


def is_our_mariadbd(pid: int, defaults_file: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    if state in ("Z", "X"):
        return False
    return (bool(argv) and os.path.basename(argv[0]).startswith(b"mariadbd")
            and f"--defaults-file={defaults_file}".encode() in argv)


def _server_env() -> dict[str, str]:
    """mariadbd and its SST scripts need a sane PATH (rsync, socat, ip, mariadb-backup)."""
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
