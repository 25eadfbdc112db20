"""mariadbd's lifecycle on one node: the operations the API offers and the restart policy.

There is no systemd in the VMs (and on a real image the agent, not the distribution's unit,
must own mariadbd: only it knows the start position and the cluster's state), so the agent
starts mariadbd itself and watches it.

Desired state, persisted in ``<state_dir>/state.json`` (on the data volume, so it follows the
data to a replacement server, and survives reboots):

* ``stopped``: leave mariadbd down (a new node before the operator's first start; after
  ``stop``);
* ``member``: mariadbd should run as a member of the cluster. Set by every successful start,
  whatever its mode.

Restart policy (the only thing the agent does on its own):

* a ``member`` whose mariadbd is not running (it crashed, was killed, or the VM rebooted) is
  started again **as a joiner only**, after a backoff (1, 2, 4 ... 60 s while starts keep
  failing; reset after ``healthy_after`` seconds Synced), and **only when a peer agent reports
  a Primary, Synced node whose view no longer contains this node** (its old incarnation has
  left: the joiner gets IST from there). With no such peer (full outage, or the survivors have
  lost quorum) the agent waits and leaves mariadbd down: recovering positions and choosing a
  bootstrap node is the operator's decision, never the agent's;
* the agent never bootstraps by itself, and refuses a bootstrap or ``pc.bootstrap`` it is told
  to do while any peer reports Primary.

Why one module of ~510 lines: the operations and the restart policy share one lock and one
desired state, and every guard reads both; split, each half would reach into the other's
state. Running mariadbd itself (spawn, adopt, exit, stop) is already apart, in ``process.py``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable

from . import AGENT_VERSION, mariadb, peers
from .config import AgentConfig
from .mariadb import ZERO_UUID, MariaDBError, ServerPaths
from .process import Mariadbd, is_mountpoint

log = logging.getLogger("flexinfra.agent")

STOPPED, MEMBER = "stopped", "member"


class OpError(Exception):
    """An operation refused or failed; ``status`` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str, **details):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


class Supervisor:
    def __init__(self, cfg: AgentConfig, token: str,
                 survey: Callable[[], dict[str, dict | None]] | None = None):
        self.cfg = cfg
        self.paths = ServerPaths.from_defaults_file(cfg.defaults_file)
        self._token = token
        self._survey = survey or self._survey_peers
        self._peer_ctx = None
        self._mu = threading.RLock()      # guards the fields below
        self._op = threading.Lock()       # one operation at a time (API or automatic)
        self.operation: str | None = None
        self.db = Mariadbd(cfg, self.paths)
        self.last_exit: dict | None = None
        self.recovered: dict | None = None
        self.wsrep: dict | None = None
        self.wsrep_at = 0.0
        self.wsrep_error: str | None = None
        self.cluster_status_since: float | None = None
        self.synced_since: float | None = None
        self.failures = 0
        self.next_attempt = 0.0
        self.rejoin_note: str | None = None
        self.auto_starts = 0
        self._stop = threading.Event()
        self.state = self._load_state()

    # --- persisted desired state ----------------------------------------------------------
    @property
    def _state_path(self) -> str:
        return os.path.join(self.cfg.state_dir, "state.json")

    def _load_state(self) -> dict:
        try:
            with open(self._state_path) as f:
                state = json.load(f)
            if state.get("desired") in (STOPPED, MEMBER):
                return state
        except (OSError, ValueError):
            pass
        return {"desired": STOPPED, "changed_at": None, "reason": "no saved state"}

    def _set_desired(self, desired: str, reason: str) -> None:
        with self._mu:
            if self.state.get("desired") == desired:
                return
            self.state = {"desired": desired, "changed_at": time.time(), "reason": reason}
            os.makedirs(self.cfg.state_dir, mode=0o700, exist_ok=True)
            tmp = self._state_path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._state_path)
        log.info("desired state -> %s (%s)", desired, reason)

    # --- mariadbd process -------------------------------------------------------------------
    def running(self) -> bool:
        return self.db.running()

    def _spawn(self, mode: str, args: list[str], reason: str) -> None:
        pid = self.db.spawn(mode, args)
        with self._mu:
            self.recovered = None          # stale as soon as the server runs again
            self.wsrep, self.synced_since = None, None
        log.info("started mariadbd pid %d as %s: %s (%s)", pid, mode, " ".join(args) or "-",
                 reason)

    def _on_exit(self, code: int | None, mode: str | None, ran: float) -> None:
        now = time.time()
        with self._mu:
            was_healthy = (self.synced_since is not None
                           and now - self.synced_since >= self.cfg.healthy_after)
            self.last_exit = {"code": code, "at": now, "mode": mode,
                              "ran_seconds": round(ran, 1)}
            self.wsrep, self.synced_since, self.cluster_status_since = None, None, None
            if self.state["desired"] == MEMBER:
                self.failures = 0 if was_healthy else self.failures + 1
                delay = min(self.cfg.backoff_max, 2.0 ** max(self.failures - 1, 0))
                self.next_attempt = now + delay
        log.warning("mariadbd exited (code %s after %.1fs)%s", code, ran,
                    "; will rejoin when a Primary peer no longer lists this node"
                    if self.state["desired"] == MEMBER else "")

    # --- the supervision loop ---------------------------------------------------------------
    def run_forever(self) -> None:
        if self.state["desired"] == MEMBER and not self.running():
            log.info("boot: desired state is member and mariadbd is down: will rejoin "
                     "when a Primary peer allows it")
        while not self._stop.wait(self.cfg.poll_interval):
            try:
                self.tick()
            except Exception:  # the loop must survive anything
                log.exception("supervisor tick")

    def shutdown(self) -> None:
        self._stop.set()

    def tick(self) -> None:
        """One supervision step: observe, then apply the restart policy."""
        if self._observe():
            return
        if self.state["desired"] == MEMBER and not self._op.locked():
            self._maybe_recover()
            self._maybe_rejoin()

    def _observe(self) -> bool:
        """Notice an exit, refresh the wsrep status; True when mariadbd runs."""
        ended = self.db.poll_exit()
        if ended is not None:
            self._on_exit(*ended)
        if self.running():
            self._refresh_wsrep()
            return True
        return False

    def _maybe_recover(self) -> None:
        """After a crash, learn the position at once (``--wsrep-recover`` reads the datadir only;
        nothing changes it while mariadbd is down): the joiner start needs it, and after a full
        outage the operator finds every position already in the status."""
        if not self.cfg.recover_on_exit or self.recovered is not None or self.failures > 3:
            return
        if self.cfg.data_mount and not is_mountpoint(self.cfg.data_mount):
            return
        if not mariadb.datadir_initialised(self.paths.datadir):
            return
        gs = mariadb.read_grastate(self.paths.datadir)
        if gs is not None and gs.seqno >= 0:
            return      # a clean shutdown: grastate.dat holds the position
        if not self._op.acquire(blocking=False):
            return
        try:
            self.operation = "auto-recover"
            uuid, seqno = self.db.recover()
            with self._mu:
                self.recovered = {"uuid": uuid, "seqno": seqno, "at": time.time()}
            log.info("recovered position %s:%d after mariadbd's exit", uuid, seqno)
        except (MariaDBError, OSError) as e:
            log.error("--wsrep-recover after exit failed: %s", e)
            with self._mu:
                self.failures += 1
        finally:
            self.operation = None
            self._op.release()

    def _refresh_wsrep(self) -> None:
        try:
            w = mariadb.wsrep_status(self.cfg.client, self.paths.socket)
            err = None
        except MariaDBError as e:
            w, err = None, str(e)
        now = time.time()
        with self._mu:
            prev = self.wsrep
            self.wsrep, self.wsrep_at, self.wsrep_error = w, now, err
            status = (w or {}).get("cluster_status")
            if (prev or {}).get("cluster_status") != status or self.cluster_status_since is None:
                self.cluster_status_since = now
                if prev is not None or w is not None:
                    log.info("wsrep cluster status: %s (%s)", status,
                             (w or {}).get("local_state_comment"))
            if mariadb.is_synced_primary(w):
                self.synced_since = self.synced_since or now
            else:
                self.synced_since = None

    def _maybe_rejoin(self) -> None:
        now = time.time()
        if now < self.next_attempt:
            return
        if self.cfg.data_mount and not is_mountpoint(self.cfg.data_mount):
            self.rejoin_note = f"data volume not mounted at {self.cfg.data_mount}"
            self.next_attempt = now + 5
            return
        statuses = self._survey()
        target = peers.rejoin_target(statuses, self.cfg.address)
        if target is None:
            note = ("waiting for a Primary, Synced peer whose view no longer lists this node "
                    f"(peers answering: {sum(1 for s in statuses.values() if s)}"
                    f"/{len(statuses)})")
            if note != self.rejoin_note:
                log.info("%s", note)
            self.rejoin_note = note
            self.next_attempt = now + max(self.cfg.poll_interval, 1.0)
            return
        if not self._op.acquire(blocking=False):
            return
        try:
            self.operation = "auto-rejoin"
            self.rejoin_note = None
            self.auto_starts += 1
            self._start_joiner(f"auto-rejoin: peer {target} is Primary and Synced without us")
        except (OpError, MariaDBError, OSError) as e:
            log.error("auto-rejoin failed: %s", e)
            with self._mu:
                self.failures += 1
                self.next_attempt = time.time() + min(self.cfg.backoff_max,
                                                      2.0 ** self.failures)
        finally:
            self.operation = None
            self._op.release()

    def _survey_peers(self) -> dict[str, dict | None]:
        if self._peer_ctx is None:
            self._peer_ctx = peers.client_context(self.cfg.ca_file, self.cfg.cert_file,
                                                  self.cfg.key_file)
        return peers.survey(list(self.cfg.peers), self.cfg.api_port, self._peer_ctx,
                            self._token, self.cfg.peer_timeout)

    # --- operations (API) --------------------------------------------------------------------
    @contextlib.contextmanager
    def operation_lock(self, name: str):
        if not self._op.acquire(blocking=False):
            raise OpError(409, f"another operation is in progress: {self.operation}",
                          operation=self.operation)
        self.operation = name
        try:
            yield
        finally:
            self.operation = None
            self._op.release()

    def _require_volume(self) -> None:
        if self.cfg.data_mount and not is_mountpoint(self.cfg.data_mount):
            raise OpError(409, f"data volume is not mounted at {self.cfg.data_mount}")

    def _require_stopped(self, what: str) -> None:
        if self.running():
            raise OpError(409, f"{what} needs mariadbd stopped; it is running "
                          f"(pid {self.db.pid}, {self.db.mode})")

    def _refuse_if_peer_primary(self, what: str) -> None:
        primary = peers.primary_peers(self._survey())
        if primary:
            raise OpError(409, f"refusing {what}: peer(s) {', '.join(primary)} report Primary; "
                          "a second Primary component would fork the history",
                          primary_peers=primary)

    def recover(self) -> dict:
        with self.operation_lock("recover"):
            self._require_volume()
            self._require_stopped("--wsrep-recover")
            if not mariadb.datadir_initialised(self.paths.datadir):
                raise OpError(409, "datadir is empty: nothing to recover")
            t0 = time.monotonic()
            try:
                uuid, seqno = self.db.recover()
            except MariaDBError as e:
                raise OpError(500, str(e)) from e
            with self._mu:
                self.recovered = {"uuid": uuid, "seqno": seqno, "at": time.time()}
            log.info("recovered position %s:%d in %.1fs", uuid, seqno, time.monotonic() - t0)
            return dict(self.recovered)

    def start_joiner(self) -> dict:
        with self.operation_lock("start-joiner"):
            if self.running():
                return {"started": False, "message": f"mariadbd already running ({self.db.mode})"}
            self._start_joiner("operator asked for a joiner start")
            return {"started": True, "mode": "joiner"}

    def _start_joiner(self, reason: str) -> None:
        self._require_volume()
        args: list[str] = []
        if not mariadb.datadir_initialised(self.paths.datadir):
            self.operation = f"{self.operation}: install-db"
            self.db.install_db()
            log.info("initialised empty datadir %s (a joiner: SST will fill it)",
                     self.paths.datadir)
        else:
            gs = mariadb.read_grastate(self.paths.datadir)
            if not (gs and gs.seqno >= 0 and gs.uuid != ZERO_UUID):
                pos = self.recovered
                if pos is None:
                    uuid, seqno = self.db.recover()
                    pos = {"uuid": uuid, "seqno": seqno}
                if pos["uuid"] != ZERO_UUID and pos["seqno"] >= 0:
                    args.append(f"--wsrep_start_position={pos['uuid']}:{pos['seqno']}")
        self._set_desired(MEMBER, reason)
        self._spawn("joiner", args, reason)

    def start_new_cluster(self, wait: float = 0.0) -> dict:
        with self.operation_lock("start-new-cluster"):
            self._require_volume()
            self._require_stopped("a new-cluster bootstrap")
            gs = mariadb.read_grastate(self.paths.datadir)
            if gs and gs.uuid != ZERO_UUID:
                raise OpError(409, f"datadir already holds cluster {gs.uuid} (seqno {gs.seqno}):"
                              " a new cluster would discard it; bootstrap from its position",
                              grastate=gs.as_dict())
            self._refuse_if_peer_primary("a new-cluster bootstrap")
            if not mariadb.datadir_initialised(self.paths.datadir):
                self.db.install_db()
            self._set_desired(MEMBER, "operator bootstrapped a new cluster here")
            self._spawn("new-cluster", ["--wsrep-new-cluster"], "new cluster")
        return self._wait_outcome(wait, "new-cluster")

    def start_bootstrap(self, uuid: str, seqno: int, set_safe_to_bootstrap: bool,
                        wait: float = 0.0) -> dict:
        with self.operation_lock("start-bootstrap"):
            self._require_volume()
            self._require_stopped("a bootstrap")
            gs = mariadb.read_grastate(self.paths.datadir)
            if gs is None:
                raise OpError(409, "no grastate.dat in the datadir: nothing to bootstrap from")
            own = (gs.uuid, gs.seqno) if gs.seqno >= 0 else None
            if own is None and self.recovered:
                own = (self.recovered["uuid"], self.recovered["seqno"])
            if own is None:
                own = self.db.recover()
            if own != (uuid.lower(), seqno):
                raise OpError(409, f"this node's position is {own[0]}:{own[1]}, not the "
                              f"{uuid}:{seqno} the bootstrap was decided on",
                              position={"uuid": own[0], "seqno": own[1]})
            self._refuse_if_peer_primary("a bootstrap")
            if not gs.safe_to_bootstrap:
                if not set_safe_to_bootstrap:
                    raise OpError(409, "grastate.dat says safe_to_bootstrap: 0 and the request "
                                  "did not ask to set it", grastate=gs.as_dict())
                mariadb.set_safe_to_bootstrap(self.paths.datadir)
                log.warning("set safe_to_bootstrap: 1 in grastate.dat (operator's decision)")
            self._set_desired(MEMBER, f"operator bootstrapped from {uuid}:{seqno}")
            self._spawn("bootstrap", ["--wsrep-new-cluster",
                                      f"--wsrep_start_position={uuid}:{seqno}"],
                        f"bootstrap from {uuid}:{seqno}")
        return self._wait_outcome(wait, "bootstrap")

    def pc_bootstrap(self, wait: float = 0.0) -> dict:
        with self.operation_lock("pc-bootstrap"):
            if not self.running():
                raise OpError(409, "mariadbd is not running")
            self._refresh_wsrep()
            status = (self.wsrep or {}).get("cluster_status")
            if status == "Primary":
                raise OpError(409, "this node is already in a Primary component")
            self._refuse_if_peer_primary("pc.bootstrap")
            try:
                mariadb.run_sql(self.cfg.client, self.paths.socket,
                                "SET GLOBAL wsrep_provider_options='pc.bootstrap=YES';\n")
            except MariaDBError as e:
                raise OpError(500, f"pc.bootstrap failed: {e}") from e
            log.warning("pc.bootstrap=YES set (was %s): operator's decision", status)
        return self._wait_outcome(wait, "pc-bootstrap")

    def stop(self) -> dict:
        with self.operation_lock("stop"):
            self._set_desired(STOPPED, "operator asked for a stop")
            if not self.running():
                return {"stopped": True, "was_running": False}
            self.db.terminate()
            deadline = time.monotonic() + self.cfg.stop_timeout
            while self.running() and time.monotonic() < deadline:
                time.sleep(0.2)
            if self.running():
                raise OpError(504, f"mariadbd still running {self.cfg.stop_timeout:.0f}s "
                              "after SIGTERM")
            ended = self.db.poll_exit()
            code = ended[0] if ended else None
            if ended is not None:
                self._on_exit(*ended)
            log.info("mariadbd stopped cleanly (code %s)", code)
            return {"stopped": True, "was_running": True, "code": code}

    def ensure_database(self, name: str, user: str, password: str, host: str) -> dict:
        try:
            sql = mariadb.database_sql(name, user, password, host)
        except ValueError as e:
            raise OpError(400, str(e)) from e
        return self._writer_sql(sql, f"database {name} ensured", secret=password)

    def drop_database(self, name: str, user: str, host: str) -> dict:
        try:
            sql = mariadb.drop_database_sql(name, user, host)
        except ValueError as e:
            raise OpError(400, str(e)) from e
        return self._writer_sql(sql, f"database {name} dropped")

    def set_root_password(self, password: str) -> dict:
        try:
            sql = mariadb.root_password_sql(password)
        except ValueError as e:
            raise OpError(400, str(e)) from e
        return self._writer_sql(sql, "root password set", secret=password)

    def _writer_sql(self, sql: str, done: str, secret: str | None = None) -> dict:
        with self.operation_lock("database"):
            self._refresh_wsrep()
            if not mariadb.is_synced_primary(self.wsrep):
                raise OpError(409, "this node is not a Synced member of a Primary component")
            try:
                mariadb.run_sql(self.cfg.client, self.paths.socket, sql)
            except MariaDBError as e:
                # a server message may quote the statement ("... near '...'"): never let the
                # password out through an error
                msg = re.sub(r"near '.*", "near (statement withheld)", str(e), flags=re.S)
                if secret:
                    msg = msg.replace(secret, "***")
                raise OpError(500, f"SQL failed: {msg}") from e
            log.info("%s", done)
            return {"ok": True}

    def _wait_outcome(self, wait: float, what: str) -> dict:
        deadline = time.monotonic() + max(0.0, min(wait, 600.0))
        while True:
            self._observe()
            with self._mu:
                w = self.wsrep
            alive = self.running()
            if mariadb.is_synced_primary(w):
                return {"started": True, "mode": what, "synced": True}
            if not alive:
                raise OpError(500, f"mariadbd exited during {what}", last_exit=self.last_exit)
            if time.monotonic() >= deadline:
                return {"started": True, "mode": what, "synced": False}
            time.sleep(0.2)

    # --- what the API reports ---------------------------------------------------------------
    def healthy(self) -> bool:
        with self._mu:
            fresh = time.time() - self.wsrep_at <= 2 * self.cfg.poll_interval + 3
            return fresh and self.running() and mariadb.is_synced_primary(self.wsrep)

    def status(self) -> dict:
        gs = mariadb.read_grastate(self.paths.datadir)
        with self._mu:
            running = self.running()
            wsrep = dict(self.wsrep) if (running and self.wsrep) else None
            if wsrep is not None:
                wsrep["cluster_status_since"] = self.cluster_status_since
                wsrep["at"] = self.wsrep_at
            return {
                "agent_version": AGENT_VERSION,
                "node": self.cfg.node,
                "address": self.cfg.address,
                "time": time.time(),
                "desired": self.state["desired"],
                "operation": self.operation,
                "mariadbd": {
                    "running": running, "pid": self.db.pid if running else None,
                    "mode": self.db.mode if running else None,
                    "started_at": self.db.started_at,
                    "last_exit": self.last_exit, "auto_starts": self.auto_starts,
                },
                "datadir_initialised": mariadb.datadir_initialised(self.paths.datadir),
                "data_mounted": (is_mountpoint(self.cfg.data_mount)
                                 if self.cfg.data_mount else None),
                "grastate": gs.as_dict() if gs else None,
                "recovered": self.recovered,
                "wsrep": wsrep,
                "wsrep_error": self.wsrep_error if running else None,
                "healthy": self.healthy(),
                "rejoin": ({"waiting": self.rejoin_note, "next_attempt": self.next_attempt,
                            "failures": self.failures}
                           if self.state["desired"] == MEMBER and not running else None),
            }
