"""The one handler body every kind's kopf handlers call.

It holds what must be the same for every kind: one pass per object at a time (the change
handler and the drift timer share a lock), the backoff that grows with transient failures
*in a row*, Events for what was done (and a Warning when the user must act), status written
only when it changed (conditions Ready / Progressing / Degraded included), the requeue, and
the teardown by owner with the finalizer released only after the tag sweep.

It also holds what keeps every kind safe in production: one instance acts per namespace (the
Lease, ``flexinfra.lease``), the finalizer and the cloud binding go on before the first
cloud write and the credentials Secret is protected meanwhile (``handlers.protection``), and
nothing reaches an Event, the status or a log line without being scrubbed of credentials,
whatever raised it (``core.redact``).

A kind's handler module supplies the spec model, a function ``work(owner, spec) -> Outcome``
(usually ``reconcile(kind, ...)`` of ``reconcile.driver``) and a status builder; see
``handlers/website.py``.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import kopf
from pydantic import BaseModel, ValidationError

from flexinfra import lease
from flexinfra.api.conditions import Condition, Reason
from flexinfra.cloud.connection import connection_cache
from flexinfra.cloud.gateway import Gateway
from flexinfra.core.errors import ErrorCode, FlexinfraError, TransientError
from flexinfra.core.plan import Problem
from flexinfra.core.redact import scrub
from flexinfra.core.tags import Owner
from flexinfra.handlers.common import (
    PROGRESSING,
    TRANSIENT,
    conditions_for,
    forget_lock,
    object_lock,
    parse_conditions,
    transient_streaks,
    validation_message,
    write_status,
)
from flexinfra.handlers.protection import (
    check_binding,
    guard_for,
    holds_finalizer,
    protect_secret,
    release_secret,
)
from flexinfra.k8s import read_clouds_yaml
from flexinfra.metrics import RECONCILE_SECONDS, RECONCILE_TOTAL
from flexinfra.reconcile.guard import before_first_write
from flexinfra.reconcile.outcome import Outcome
from flexinfra.reconcile.teardown import TeardownOutcome
from flexinfra.settings import get_settings

log = logging.getLogger(__name__)

Work = Callable[[Owner, Any], Outcome]
#: (body, outcome, conditions) -> the desired ``status``, as written (camelCase)
StatusBuilder = Callable[[kopf.Body, Outcome, list[Condition]], dict[str, Any]]


def gateway_for(namespace: str, cloud: dict[str, Any]) -> Gateway:
    """The tenant's gateway, from the credentials Secret ``spec.cloud`` names."""
    text, secret_uid, version = read_clouds_yaml(
        namespace, cloud["secretName"], cloud.get("secretKey", "clouds.yaml")
    )
    return connection_cache.get(f"{secret_uid}", version, text, cloud["cloudName"])


def foreign_error(err: BaseException, what: str) -> TransientError:
    """An exception that is not the operator's own (a library's, a bug): logged with its
    traceback and turned into a retried error, both scrubbed. Left to kopf, it would reach
    the Error Event and the log as it is, credentials and traceback included."""
    text = scrub("".join(traceback.format_exception(err)), limit=None)
    log.error("%s: unexpected %s\n%s", what, type(err).__name__, text)
    return TransientError(f"internal error ({type(err).__name__}: {scrub(err, limit=200)}); "
                          "will retry", code=ErrorCode.UNEXPECTED)


def scrubbed(outcome: Outcome) -> Outcome:
    """The outcome as it may be shown: every message that reaches an Event or the status."""
    return replace(
        outcome,
        message=scrub(outcome.message),
        events=[(reason, scrub(message)) for reason, message in outcome.events],
        problems=[Problem(p.reason, scrub(p.message)) for p in outcome.problems],
    )


def standby(namespace: str) -> str | None:
    """Who acts on ``namespace`` instead of this instance (None: this one may act)."""
    keeper = lease.KEEPER
    if keeper is None:
        return None
    held, other = keeper.acquire(namespace)
    return None if held else (other or "another instance")


def backoff(uid: str) -> float:
    s = get_settings()
    return transient_streaks.next_delay(uid, s.retry_delay, s.retry_max_delay)


@dataclass
class Runner:
    kind: str  # "WebSite"
    spec_model: type[BaseModel]
    status: StatusBuilder
    #: how the Event after a teardown names the object ("site")
    noun: str = "object"

    @property
    def plural(self) -> str:
        """Every flexinfra kind's plural is its lower-cased name plus "s" (``api.kinds``
        holds the same; not imported here, so a kind's handlers load no other kind)."""
        return self.kind.lower() + "s"

    def owner(self, body: kopf.Body) -> Owner:
        meta = body.metadata
        return Owner(uid=meta.uid, namespace=meta.namespace, name=meta.name, kind=self.kind)

    def outcome(self, body: kopf.Body, work: Work) -> Outcome:
        """One pass, errors included: a bad spec or a failed pass is an Outcome too."""
        try:
            spec = self.spec_model.model_validate(dict(body.spec))
        except ValidationError as e:
            return Outcome(False, Reason.INVALID_SPEC, f"{validation_message(e)}; fix the manifest",
                           progressing=False, warning=True)
        try:
            with before_first_write(guard_for(self.plural, body, lease.KEEPER)):
                return work(self.owner(body), spec)
        except FlexinfraError as e:
            return Outcome.from_error(e, retry_after=get_settings().retry_delay)
        except Exception as e:  # not ours: scrubbed, retried, never handed to kopf as is
            return Outcome.from_error(foreign_error(e, f"{self.kind} {body.metadata.name}"),
                                      retry_after=get_settings().retry_delay)

    def desired_status(self, body: kopf.Body, outcome: Outcome) -> dict[str, Any]:
        problems = outcome.problems
        conditions = conditions_for(
            parse_conditions(body.get("status")),
            body.metadata.get("generation"),
            ready=outcome.ready,
            reason=outcome.reason,
            message=outcome.message,
            progressing=outcome.is_progressing,
            degraded=bool(problems),
            degraded_reason=problems[0].reason if problems else Reason.AS_EXPECTED,
            degraded_message="; ".join(p.message for p in problems) or "no problem seen",
        )
        return {**self.status(body, outcome, conditions), **outcome.status}

    def run(self, body: kopf.Body, patch: kopf.Patch, work: Work, *, from_timer: bool) -> None:
        """One pass under the object's lock; raise kopf.TemporaryError to come back."""
        uid = body.metadata.uid
        other = standby(body.metadata.namespace)
        if other is not None:
            if from_timer:
                return
            raise kopf.TemporaryError(f"{PROGRESSING} standing by: {other} acts on namespace "
                                      f"{body.metadata.namespace}",
                                      delay=lease.KEEPER.duration if lease.KEEPER else 15)
        with object_lock(uid, wait=not from_timer) as acquired:
            if not acquired:
                return  # the timer skips a round rather than queue behind a change
            started = time.monotonic()
            outcome = scrubbed(self.outcome(body, work))
            RECONCILE_SECONDS.labels(self.kind).observe(time.monotonic() - started)
            RECONCILE_TOTAL.labels(self.kind, str(outcome.reason)).inc()
            self.post_events(body, outcome)
            write_status(self.kind, body, patch, self.desired_status(body, outcome))
            if holds_finalizer(body):  # made before the in-use protection, or removed
                self.protect(body)
        transient = outcome.reason == Reason.TRANSIENT_ERROR
        if not transient:
            transient_streaks.reset(uid)
        if (outcome.requeue_after is None and not outcome.ready and not from_timer
                and not holds_finalizer(body) and self.spec_valid(body)):
            # no finalizer, hence no drift timer (kopf's timers need one): an object that
            # never wrote and waits for someone (a Secret, a template) is looked at again
            outcome.requeue_after = get_settings().drift_interval
        # a drift pass that found something to repair comes back like any other pass until the
        # repair is done (kopf retries a timer that raises after the delay, keeping its state in
        # memory: no write); it used to return, and a repair of several steps advanced one
        # step per drift interval
        if outcome.requeue_after is not None:
            delay = max(backoff(uid), outcome.requeue_after) if transient else outcome.requeue_after
            marker = TRANSIENT if transient else PROGRESSING
            raise kopf.TemporaryError(f"{marker} {outcome.message}", delay=delay)

    def spec_valid(self, body: kopf.Body) -> bool:
        try:
            self.spec_model.model_validate(dict(body.spec))
        except ValidationError:
            return False
        return True

    def protect(self, body: kopf.Body) -> None:
        try:
            protect_secret(body.metadata.namespace, str(body.spec["cloud"]["secretName"]))
        except Exception as e:  # the next pass tries again; the pass itself went through
            log.warning("%s %s: cannot protect its credentials Secret: %s", self.kind,
                        body.metadata.name, scrub(e))

    def post_events(self, body: kopf.Body, outcome: Outcome) -> None:
        """What was done, as Normal Events; the conditions' news once, when they change: a
        Warning when something becomes degraded (a member fails its health check, a server
        keeps failing), a Normal ``Recovered`` when it no longer is."""
        old = {c.type: c for c in parse_conditions(body.get("status"))}
        old_ready, old_degraded = old.get("Ready"), old.get("Degraded")
        degraded = "; ".join(p.message for p in outcome.problems)
        was_degraded = old_degraded is not None and old_degraded.status == "True"
        if degraded and (not was_degraded or old_degraded.message != degraded):
            kopf.event(body, type="Warning", reason=str(outcome.problems[0].reason),
                       message=degraded)
        elif not degraded and was_degraded:
            kopf.event(body, type="Normal", reason=str(Reason.RECOVERED),
                       message=f"no longer degraded (was: {old_degraded.message})")
        for reason, message in outcome.events:
            kopf.event(body, type="Normal", reason=reason, message=message)
        changed = old_ready is None or (old_ready.reason, old_ready.message) != (
            str(outcome.reason), outcome.message)
        if changed and outcome.warning:
            kopf.event(body, type="Warning", reason=str(outcome.reason), message=outcome.message)
        elif changed and outcome.ready:
            kopf.event(body, type="Normal", reason=str(outcome.reason), message=outcome.message)

    def delete(
        self,
        body: kopf.Body,
        patch: kopf.Patch,
        teardown: Callable[[Owner, Gateway], TeardownOutcome],
    ) -> None:
        """Ordered teardown; the finalizer goes only when a tag sweep finds nothing left."""
        meta = body.metadata
        other = standby(meta.namespace)
        if other is not None:  # keep the finalizer; look again soon (a takeover may be due)
            raise kopf.TemporaryError(f"{PROGRESSING} standing by: {other} acts on namespace "
                                      f"{meta.namespace}",
                                      delay=lease.KEEPER.renew if lease.KEEPER else 3)
        with object_lock(meta.uid, wait=True):
            try:
                try:
                    gateway = gateway_for(meta.namespace, dict(body.spec["cloud"]))
                    check_binding(body, gateway)
                    outcome = teardown(self.owner(body), gateway)
                except FlexinfraError:
                    raise
                except Exception as e:
                    raise foreign_error(e, f"{self.kind} {meta.name} teardown") from None
            except FlexinfraError as e:
                message = (f"cannot delete cloud resources yet: {scrub(e.message)}. The finalizer "
                           "stays until they are gone (fix the credentials; or remove the "
                           "finalizer to abandon them)")
                self.write_deleting(body, patch, message)
                raise kopf.TemporaryError(f"{TRANSIENT} {message}",
                                          delay=backoff(meta.uid)) from None
            for reason, message in outcome.events:
                kopf.event(body, type="Normal", reason=reason, message=scrub(message))
            transient_streaks.reset(meta.uid)
            if not outcome.done:
                message = "deleting: waiting for " + ", ".join(outcome.remaining[:8])
                self.write_deleting(body, patch, message)
                raise kopf.TemporaryError(f"{PROGRESSING} {message}",
                                          delay=outcome.requeue_after or 3)
            release_secret(meta.namespace, str(body.spec["cloud"]["secretName"]), meta.uid)
        forget_lock(meta.uid)
        kopf.event(body, type="Normal", reason="Deleted",
                   message=f"every cloud resource owned by this {self.noun} is gone")

    def write_deleting(self, body: kopf.Body, patch: kopf.Patch, message: str) -> None:
        outcome = Outcome(False, Reason.DELETING, message, progressing=True)
        write_status(self.kind, body, patch, self.desired_status(body, outcome))
