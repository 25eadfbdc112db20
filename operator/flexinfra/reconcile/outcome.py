"""What one reconcile pass decided, before it is written anywhere: the one result type from
the driver to the handler (status, conditions, Events, requeue)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flexinfra.api.conditions import Reason
from flexinfra.core.errors import FlexinfraError, TransientError
from flexinfra.core.plan import Problem


@dataclass
class Outcome:
    ready: bool
    reason: Reason | str
    message: str
    #: the kind's ``status.resources`` (None: keep what the status says, e.g. on an error)
    resources: Any = None
    url: str | None = None
    ready_replicas: int | None = None
    #: come back after this many seconds (None: only on the next change or drift check)
    requeue_after: float | None = None
    #: (reason, message) of what was done, posted as Normal Events
    events: list[tuple[str, str]] = field(default_factory=list)
    #: the actions done, described
    actions: list[str] = field(default_factory=list)
    #: the Progressing condition; None: progressing while not ready
    progressing: bool | None = None
    #: a Warning Event when the message changes (the user or the cloud's admin must act)
    warning: bool = False
    #: what is degraded (the Degraded condition), e.g. a server kept in ERROR
    problems: list[Problem] = field(default_factory=list)
    #: more status fields a kind's own steps report (camelCase keys, as written)
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def is_progressing(self) -> bool:
        return (not self.ready) if self.progressing is None else self.progressing

    @classmethod
    def from_error(cls, err: FlexinfraError, *, retry_after: float) -> Outcome:
        """A failed pass: transient errors are retried (``retry_after`` unless the cloud said
        when), the others wait for someone to act."""
        if isinstance(err, TransientError):
            return cls(False, Reason.TRANSIENT_ERROR, f"{err.message} (retrying)",
                       progressing=True, requeue_after=err.retry_after or retry_after,
                       events=err.events, problems=err.problems)
        reason = err.reason if err.reason in set(Reason) else Reason.CLOUD_ERROR
        return cls(False, reason, err.message, progressing=False, warning=True,
                   events=err.events, problems=err.problems)
