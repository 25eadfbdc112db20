"""Exactly one operator instance acts on the objects of a namespace: a coordination.k8s.io Lease.

Why a Lease per namespace, and not kopf peering: kopf's peering object is per scope (a
``ClusterKopfPeering`` for a cluster-wide operator, a ``KopfPeering`` in each namespace for a
namespaced one), so a cluster-wide instance and a namespaced one never see each other. That
is the README's own path: ``make demo`` leaves a cluster-wide operator running, then the e2e
tests start namespaced ones, and both built the same sites. Peering also pauses every
instance of equal priority (two replicas of one Deployment), and needs its own CRDs.

A Lease ``flexinfra-operator`` in each namespace that holds flexinfra objects is the unit of
ownership whatever the scope of the instances: an instance acts on an object only while it
holds the Lease of the object's namespace. A namespaced instance claims its namespaces at
start; a cluster-wide one claims a namespace when it first has something to do there. The
holder renews every ``renew`` seconds; a holder that dies (SIGKILL, node lost) stops renewing
and another instance takes the namespace once ``duration`` has passed since the last renewal.

Safety margin: a holder believes it holds only while its last successful renewal is younger
than ``duration - 2 * renew``, so it stops starting passes before anyone else may take over.
A pass already running when the holder is cut off may overlap with the successor's first
pass; the duplicate check by tag (``reconcile.duplicates``) removes what such an overlap makes.

The decision (``decide``) is a pure function of the Lease's spec and the clock; I/O is in
``LeaseKeeper``.

Deleting the namespace deletes its Lease with everything else, while the objects' teardowns
still run, and a terminating namespace refuses a new Lease: every instance would then stand
by and the teardowns never end. So the Lease carries a finalizer (``LEASE_FINALIZER``): it
stays, terminating, and keeps working as a Lease until no object of the namespace holds
cloud resources; then its holder removes the finalizer (``lease_finalizers``). An instance
that stops cleanly removes it too when nothing is left to protect; after a SIGKILL it stays
until an instance runs again (a namespace deleted meanwhile waits for one, as it would for
any object's finalizer).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)

LEASE_NAME = "flexinfra-operator"
#: keeps a deleted Lease until the namespace's teardowns are done (module docstring)
LEASE_FINALIZER = "flexinfra.io/teardown"


class Verdict(StrEnum):
    MINE = "mine"  # held by me and not expired: renew
    FREE = "free"  # absent, released or expired: take it
    TAKEN = "taken"  # held by another live instance


@dataclass(frozen=True)
class LeaseView:
    """What a Lease says, as plain data (``None``: there is no Lease yet)."""

    holder: str | None
    renewed: float | None  # epoch seconds of renewTime
    duration: float | None
    transitions: int = 0
    resource_version: str | None = None


def decide(view: LeaseView | None, me: str, now: float, default_duration: float) -> Verdict:
    """Whose namespace it is, from the Lease alone."""
    if view is None or not view.holder:
        return Verdict.FREE
    if view.holder == me:
        return Verdict.MINE
    if view.renewed is None:
        return Verdict.FREE
    if now - view.renewed > (view.duration or default_duration):
        return Verdict.FREE
    return Verdict.TAKEN


def lease_finalizers(current: list[str], deleting: bool, teardowns_done: bool | None
                     ) -> list[str]:
    """The Lease's finalizers after a renewal. Pure. A live Lease gets ours (a terminating
    object takes no new finalizer: a Lease made before this rule stays without it); a
    terminating one keeps it until the namespace's teardowns are done (``None``: not asked)."""
    out = list(current)
    if not deleting and LEASE_FINALIZER not in out:
        out.append(LEASE_FINALIZER)
    if deleting and teardowns_done and LEASE_FINALIZER in out:
        out.remove(LEASE_FINALIZER)
    return out


def identity() -> str:
    """Unique per process: a restarted instance is a new holder (it must not inherit the
    namespaces of the instance it replaces without the others being allowed to take them)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _stamp(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=value.tzinfo or dt.UTC).timestamp()
    text = str(value).replace("Z", "+00:00")
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def view_of(lease: Any) -> LeaseView:
    spec = lease.spec
    return LeaseView(
        holder=spec.holder_identity,
        renewed=_epoch(spec.renew_time),
        duration=float(spec.lease_duration_seconds) if spec.lease_duration_seconds else None,
        transitions=int(spec.lease_transitions or 0),
        resource_version=lease.metadata.resource_version,
    )


class LeaseKeeper:
    """The namespaces this instance holds, kept by a renewal thread."""

    def __init__(self, api: Any = None, *, me: str | None = None, duration: float = 15.0,
                 renew: float = 3.0, clock: Any = time.time) -> None:
        self._api = api
        self.me = me or identity()
        self.duration = duration
        self.renew = renew
        self.clock = clock
        #: namespace -> epoch of the last renewal this instance made
        self._held: dict[str, float] = {}
        #: namespace -> (checked at, holder) of a namespace another instance holds
        self._others: dict[str, tuple[float, str]] = {}
        #: namespaces this instance has objects in (the renewal thread tries to take them)
        self._wanted: set[str] = set()
        #: called (from the renewal thread) with a namespace this instance just took over:
        #: its objects saw no event meanwhile, so something must wake their handlers
        self.on_acquire: Any = None
        #: whether an object of a namespace still holds cloud resources (set by the
        #: handlers, which know the kinds): a deleted Lease stays until it says no
        self.teardowns_pending: Any = lambda namespace: True
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # --- I/O ---------------------------------------------------------------------------------
    @property
    def api(self) -> Any:
        if self._api is None:
            from flexinfra import k8s

            self._api = k8s.coordination()
        return self._api

    def _read(self, namespace: str) -> Any | None:
        from kubernetes.client.rest import ApiException

        try:
            return self.api.read_namespaced_lease(LEASE_NAME, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def _body(self, now: float, acquired: float | None, transitions: int,
              lease: Any = None, namespace: str | None = None) -> dict:
        """A whole Lease (a replace sets every field: the finalizers are carried over)."""
        spec = {"holderIdentity": self.me, "leaseDurationSeconds": int(self.duration),
                "renewTime": _stamp(now), "leaseTransitions": transitions}
        if acquired is not None:
            spec["acquireTime"] = _stamp(acquired)
        meta = getattr(lease, "metadata", None)
        deleting = getattr(meta, "deletion_timestamp", None) is not None
        current = list(getattr(meta, "finalizers", None) or [])
        done = (not self.teardowns_pending(namespace)
                if deleting and namespace and LEASE_FINALIZER in current else None)
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": LEASE_NAME,
                             "finalizers": lease_finalizers(current, deleting, done)},
                "spec": spec}

    def try_hold(self, namespace: str) -> tuple[bool, str | None]:
        """Take or renew the namespace's Lease; (held, the other holder if not)."""
        from kubernetes.client.rest import ApiException

        now = self.clock()
        try:
            lease = self._read(namespace)
            view = view_of(lease) if lease is not None else None
            verdict = decide(view, self.me, now, self.duration)
            if verdict is Verdict.TAKEN:
                return self._lost(namespace, now, view.holder if view else None)
            body = self._body(now, None if verdict is Verdict.MINE else now,
                              (view.transitions if view else 0)
                              + (0 if verdict is Verdict.MINE else 1), lease, namespace)
            if lease is None:
                self.api.create_namespaced_lease(namespace, body)
            else:
                # optimistic concurrency: a replace with the resourceVersion we read fails with
                # 409 if another instance wrote the Lease meanwhile
                body["metadata"]["resourceVersion"] = view.resource_version
                self.api.replace_namespaced_lease(LEASE_NAME, namespace, body)
        except ApiException as e:
            if e.status == 409:  # someone else created or renewed it first
                return self._lost(namespace, now, None)
            log.warning("lease %s/%s: %s %s", namespace, LEASE_NAME, e.status, e.reason)
            return self.holds(namespace), None
        with self._lock:
            first = namespace not in self._held
            self._held[namespace] = now
            self._others.pop(namespace, None)
        if first:
            log.info("lease %s/%s: acting on this namespace as %s", namespace, LEASE_NAME,
                     self.me)
        return True, None

    def _lost(self, namespace: str, now: float, holder: str | None) -> tuple[bool, str | None]:
        with self._lock:
            was = self._held.pop(namespace, None)
            self._others[namespace] = (now, holder or "another instance")
        if was is not None:
            log.warning("lease %s/%s: taken by %s; standing by", namespace, LEASE_NAME, holder)
        return False, holder or "another instance"

    # --- the decisions the handlers ask ----------------------------------------------------
    def want(self, namespace: str) -> bool:
        """For kopf's ``when`` filters (in its event loop: no I/O here): note the interest,
        answer from memory. The renewal thread takes a wanted namespace once it is free."""
        with self._lock:
            self._wanted.add(namespace)
        return self.holds(namespace)

    def holds(self, namespace: str) -> bool:
        """Held, with the safety margin (see the module docstring)."""
        with self._lock:
            renewed = self._held.get(namespace)
        margin = self.duration - 2 * self.renew
        return renewed is not None and self.clock() - renewed < margin

    def acquire(self, namespace: str) -> tuple[bool, str | None]:
        """For a handler about to act: (may act, who acts instead). Cheap when held; a standby
        asks the apiserver at most once per ``renew`` seconds per namespace."""
        if self.holds(namespace):
            return True, None
        with self._lock:
            other = self._others.get(namespace)
            was_held = namespace in self._held
        if other is not None and self.clock() - other[0] < self.renew:
            return False, other[1]
        got, other_holder = self.try_hold(namespace)
        if got and not was_held:
            # taken here rather than by the renewal thread: the namespace's other objects
            # had their events filtered out meanwhile (``want``), and nothing else wakes them
            self._wake(namespace)
        return got, other_holder

    def release_all(self) -> None:
        """On a clean stop: hand the namespaces over at once instead of after ``duration``."""
        with self._lock:
            held = list(self._held)
            self._held.clear()
        for namespace in held:
            try:
                lease = self._read(namespace)
                if lease is not None and view_of(lease).holder == self.me:
                    body = self._body(self.clock(), None, view_of(lease).transitions, lease)
                    body["spec"]["holderIdentity"] = None
                    if not self.teardowns_pending(namespace):  # nothing left to protect
                        body["metadata"]["finalizers"] = [
                            f for f in body["metadata"]["finalizers"] if f != LEASE_FINALIZER]
                    body["metadata"]["resourceVersion"] = lease.metadata.resource_version
                    self.api.replace_namespaced_lease(LEASE_NAME, namespace, body)
            except Exception as e:  # best effort: expiry hands it over anyway
                log.info("lease %s/%s: not released (%s)", namespace, LEASE_NAME, e)

    # --- renewal -------------------------------------------------------------------------------
    def start(self, claim: list[str] | tuple[str, ...] = ()) -> None:
        """Claim ``claim`` now, before kopf starts (its resume handlers then run here, with
        no wake-up needed), and renew from then on."""
        for namespace in claim:
            with self._lock:
                self._wanted.add(namespace)
            self.try_hold(namespace)
        if self._thread is None:
            self._thread = threading.Thread(target=self._renew_loop, name="lease-renewal",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.release_all()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew):
            self.renew_once()

    def renew_once(self) -> None:
        """Renew what is held; try to take what is wanted and not held (a standby's poll: one
        read per namespace per period); wake the objects of a namespace just taken over."""
        with self._lock:
            held = set(self._held)
            wanted = set(self._wanted) - held
        for namespace in sorted(held | wanted):
            try:
                got, _ = self.try_hold(namespace)
            except Exception as e:  # keep renewing the others
                log.warning("lease %s/%s: renewal failed: %s", namespace, LEASE_NAME, e)
                continue
            if got and namespace not in held:
                self._wake(namespace)

    def _wake(self, namespace: str) -> None:
        if self.on_acquire is None:
            return
        try:
            self.on_acquire(namespace)
        except Exception as e:  # the drift timer wakes those that wrote, later
            log.warning("lease %s/%s: waking its objects failed: %s", namespace,
                        LEASE_NAME, e)


#: the process-wide keeper; ``None`` when leases are off (unit tests, ``flexinfra plan``)
KEEPER: LeaseKeeper | None = None


def set_keeper(keeper: LeaseKeeper | None) -> None:
    global KEEPER
    KEEPER = keeper
