"""What every handler needs: per-object locks, conditions from outcomes, quiet status writes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kopf
from pydantic import ValidationError

from flexinfra.api.conditions import Condition, ConditionType, Reason, set_condition
from flexinfra.metrics import OBJECT_READY, STATUS_WRITES
from flexinfra.status import status_patch

log = logging.getLogger(__name__)

#: prefixes of the TemporaryError messages raised to come back later; kopf logs every one at
#: ERROR, which pages people for a server that is merely booting (see RequeueLogFilter)
PROGRESSING = "progressing:"
TRANSIENT = "transient error:"


class RequeueLogFilter(logging.Filter):
    """Log kopf's "failed temporarily" at the level it deserves: INFO when the operator just
    waits for the cloud, WARNING when a call failed and will be retried."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and "failed temporarily" in str(record.msg):
            text = record.getMessage()
            if f"failed temporarily: {PROGRESSING}" in text:
                record.levelno, record.levelname = logging.INFO, "INFO"
            elif f"failed temporarily: {TRANSIENT}" in text:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def lease_active(namespace: str | None = None, **_: Any) -> bool:
    """kopf's ``when`` filter of every handler that acts: this instance holds the namespace's
    Lease (``flexinfra.lease``). An instance standing by is blind to the object: kopf stores
    no state for it and writes nothing (a handler that raised instead would write kopf's
    progress annotations, shared with the active instance, and postpone its passes)."""
    from flexinfra import lease

    if lease.KEEPER is None or namespace is None:
        return True
    return lease.KEEPER.want(namespace)


def deletion_filter(namespace: str | None = None, body: Any = None, **kw: Any) -> bool:
    """kopf's ``when`` filter of the delete handlers: the object holds the finalizer, and it
    is being deleted or this instance acts on its namespace.

    Never filtered out by the Lease alone on a deleting object: kopf removes its finalizer
    from an object being deleted when no handler asks for it ("no handlers requiring it"),
    and a standby that filtered the delete handler out did exactly that (found by the
    campaign: three sites vanished with all their resources). The handler runs instead, and
    a standby's Runner.delete comes back in a few seconds without acting. On a live object the
    Lease does filter it out, so that a standby stores no state for it (kopf would otherwise
    record the spec as handled, for both instances)."""
    from flexinfra.handlers.protection import holds_finalizer

    if not holds_finalizer(body):
        return False
    deleting = bool((body.get("metadata") or {}).get("deletionTimestamp"))
    return deleting or lease_active(namespace)


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


@contextmanager
def object_lock(uid: str, wait: bool) -> Iterator[bool]:
    """One reconcile per object at a time: the change handler and the drift timer share it.

    The timer passes ``wait=False`` and skips a round instead of queueing behind a change.
    """
    with _locks_guard:
        lock = _locks.setdefault(uid, threading.Lock())
    acquired = lock.acquire(blocking=wait)
    try:
        yield acquired
    finally:
        if acquired:
            lock.release()


def forget_lock(uid: str) -> None:
    with _locks_guard:
        _locks.pop(uid, None)
    transient_streaks.reset(uid)


class TransientStreaks:
    """Consecutive transient failures per object, for the retry backoff.

    kopf's ``retry`` counts every temporary error of a handler, and a long create requeues
    itself dozens of times while it waits on the cloud: backing off on that count would make
    one 503 after a minute of progress wait the maximum delay. The backoff grows with the
    failures in a row, and any pass that gets through resets it.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def next_delay(self, uid: str, first: float, cap: float) -> float:
        with self._lock:
            n = self._counts.get(uid, 0)
            self._counts[uid] = n + 1
        return min(first * 2 ** min(n, 10), cap)

    def reset(self, uid: str) -> None:
        with self._lock:
            self._counts.pop(uid, None)


transient_streaks = TransientStreaks()


def validation_message(err: ValidationError, prefix: str = "spec") -> str:
    """One line per problem, with the field path as written in the manifest."""
    parts = []
    for e in err.errors()[:5]:
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        parts.append(f"{prefix}.{loc}: {e['msg']}" if loc else f"{prefix}: {e['msg']}")
    return "; ".join(parts)


def conditions_for(
    old: list[Condition],
    generation: int | None,
    *,
    ready: bool,
    reason: Reason | str,
    message: str,
    progressing: bool,
    degraded: bool = False,
    degraded_reason: Reason | str = Reason.AS_EXPECTED,
    degraded_message: str = "no problem seen",
) -> list[Condition]:
    conds = set_condition(old, ConditionType.READY, ready, reason, message, generation)
    conds = set_condition(
        conds,
        ConditionType.PROGRESSING,
        progressing,
        reason if progressing else Reason.RECONCILED,
        message if progressing else "nothing in progress",
        generation,
    )
    return set_condition(
        conds, ConditionType.DEGRADED, degraded, degraded_reason, degraded_message, generation
    )


def parse_conditions(status: dict[str, Any] | None) -> list[Condition]:
    raw = (status or {}).get("conditions") or []
    out = []
    for c in raw:
        try:
            out.append(Condition.model_validate(c))
        except ValidationError:
            continue
    return out


def write_status(
    kind: str, body: kopf.Body, patch: kopf.Patch, desired: dict[str, Any]
) -> bool:
    """Put into ``patch.status`` only what differs; True when something will be written."""
    diff = status_patch(dict(body.get("status") or {}), desired)
    for key, value in diff.items():
        patch.status[key] = value
    if diff:
        STATUS_WRITES.labels(kind).inc()
        log.debug("%s %s/%s: status changes %s", kind, body.metadata.namespace,
                  body.metadata.name, ", ".join(sorted(diff)))
    ready = next(
        (c for c in desired.get("conditions", []) if c.get("type") == "Ready"), None
    )
    OBJECT_READY.labels(kind, body.metadata.namespace, body.metadata.name).set(
        1 if ready and ready.get("status") == "True" else 0
    )
    return bool(diff)
