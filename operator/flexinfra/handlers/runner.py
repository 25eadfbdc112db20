"""The one handler body every kind's kopf handlers call.

It holds what must be the same for every kind: one pass per object at a time (the change
handler and the drift timer share a lock), the backoff that grows with transient failures
*in a row*, Events for what was done (and a Warning when the user must act), status written
only when it changed (conditions Ready / Progressing / Degraded included), the requeue, and
the teardown by owner with the finalizer released only after the tag sweep.

A kind's handler module supplies the spec model, a function ``work(owner, spec) -> Outcome``
(usually ``reconcile(kind, ...)`` of ``reconcile.driver``) and a status builder; see
``handlers/website.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kopf
from pydantic import BaseModel, ValidationError

from flexinfra.api.conditions import Condition, Reason
from flexinfra.cloud.connection import connection_cache
from flexinfra.cloud.gateway import Gateway
from flexinfra.core.errors import FlexinfraError
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
from flexinfra.k8s import read_clouds_yaml
from flexinfra.metrics import RECONCILE_SECONDS, RECONCILE_TOTAL
from flexinfra.reconcile.outcome import Outcome
from flexinfra.reconcile.teardown import TeardownOutcome
from flexinfra.settings import get_settings

Work = Callable[[Owner, Any], Outcome]
#: (body, outcome, conditions) -> the desired ``status``, as written (camelCase)
StatusBuilder = Callable[[kopf.Body, Outcome, list[Condition]], dict[str, Any]]


def gateway_for(namespace: str, cloud: dict[str, Any]) -> Gateway:
    """The tenant's gateway, from the credentials Secret ``spec.cloud`` names."""
    text, secret_uid, version = read_clouds_yaml(
        namespace, cloud["secretName"], cloud.get("secretKey", "clouds.yaml")
    )
    return connection_cache.get(f"{secret_uid}", version, text, cloud["cloudName"])


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
            return work(self.owner(body), spec)
        except FlexinfraError as e:
            return Outcome.from_error(e, retry_after=get_settings().retry_delay)

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
        with object_lock(uid, wait=not from_timer) as acquired:
            if not acquired:
                return  # the timer skips a round rather than queue behind a change
            started = time.monotonic()
            outcome = self.outcome(body, work)
            RECONCILE_SECONDS.labels(self.kind).observe(time.monotonic() - started)
            RECONCILE_TOTAL.labels(self.kind, str(outcome.reason)).inc()
            self.post_events(body, outcome)
            write_status(self.kind, body, patch, self.desired_status(body, outcome))
        transient = outcome.reason == Reason.TRANSIENT_ERROR
        if not transient:
            transient_streaks.reset(uid)
        if outcome.requeue_after is not None and not from_timer:
            delay = max(backoff(uid), outcome.requeue_after) if transient else outcome.requeue_after
            marker = TRANSIENT if transient else PROGRESSING
            raise kopf.TemporaryError(f"{marker} {outcome.message}", delay=delay)

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
        with object_lock(meta.uid, wait=True):
            try:
                outcome = teardown(self.owner(body), gateway_for(meta.namespace,
                                                                 dict(body.spec["cloud"])))
            except FlexinfraError as e:
                message = (f"cannot delete cloud resources yet: {e.message}. The finalizer "
                           "stays until they are gone (fix the credentials; or remove the "
                           "finalizer to abandon them)")
                self.write_deleting(body, patch, message)
                raise kopf.TemporaryError(f"{TRANSIENT} {message}",
                                          delay=backoff(meta.uid)) from None
            for reason, message in outcome.events:
                kopf.event(body, type="Normal", reason=reason, message=message)
            transient_streaks.reset(meta.uid)
            if not outcome.done:
                message = "deleting: waiting for " + ", ".join(outcome.remaining[:8])
                self.write_deleting(body, patch, message)
                raise kopf.TemporaryError(f"{PROGRESSING} {message}",
                                          delay=outcome.requeue_after or 3)
        forget_lock(meta.uid)
        kopf.event(body, type="Normal", reason="Deleted",
                   message=f"every cloud resource owned by this {self.noun} is gone")

    def write_deleting(self, body: kopf.Body, patch: kopf.Patch, message: str) -> None:
        outcome = Outcome(False, Reason.DELETING, message, progressing=True)
        write_status(self.kind, body, patch, self.desired_status(body, outcome))
