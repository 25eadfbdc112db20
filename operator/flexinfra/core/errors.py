"""Errors the reconcile core raises, each with a structured ``code``.

The class decides who must act, hence the condition reason: the user (``InvalidSpec``,
``CredentialsError``), the cloud's operator (``CloudError``), or nobody, the operator retries
(``TransientError``). The ``code`` says what happened, so that code above the cloud layer
branches on it, never on message text. Messages are shown to users as they are and never
carry credentials. ``cloud.errors.classify`` maps openstacksdk faults to these.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flexinfra.core.plan import Problem


class ErrorCode(StrEnum):
    INVALID_SPEC = "invalid_spec"
    BLOCKED = "blocked"  # the cloud cannot build what is asked (no valid host, ERROR loop)
    QUOTA_EXCEEDED = "quota_exceeded"
    FORBIDDEN = "forbidden"  # 403 that is not a quota
    BAD_REQUEST = "bad_request"
    REFUSED = "refused"  # any other refusal by the cloud
    NOT_FOUND = "not_found"  # 404, or a 400 naming an object the cloud does not have
    CONFLICT = "conflict"  # 409: busy, in use, or already exists
    THROTTLED = "throttled"  # 429
    SERVER_ERROR = "server_error"  # 5xx
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    CREDENTIALS = "credentials"
    INTERNAL = "internal"  # a bug of ours
    UNEXPECTED = "unexpected"


class FlexinfraError(Exception):
    """Base class; ``message`` is shown to the user as-is, so it must be actionable."""

    reason = "CloudError"
    default_code = ErrorCode.UNEXPECTED

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        retry_after: float | None = None,
        problems: list[Problem] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.retry_after = retry_after
        #: what is degraded meanwhile (the Degraded condition), e.g. a server kept in ERROR
        self.problems = list(problems or [])
        #: (reason, message) of the steps done in the same pass before this failure: they
        #: happened, so they are reported (as Events) even though the pass failed
        self.events: list[tuple[str, str]] = []


class InvalidSpec(FlexinfraError):
    """The spec asks for something that cannot be built; the user must change it."""

    reason = "InvalidSpec"
    default_code = ErrorCode.INVALID_SPEC


class CloudError(FlexinfraError):
    """The cloud refuses (quota, policy, bad request); retrying unchanged will not help soon."""

    reason = "CloudError"
    default_code = ErrorCode.REFUSED


class TransientError(FlexinfraError):
    """A fault that retrying fixes: 5xx, timeouts, 409 in-use/pending, 429."""

    reason = "TransientError"
    default_code = ErrorCode.SERVER_ERROR


class CredentialsError(FlexinfraError):
    """The credentials Secret is missing, unreadable or rejected by Keystone."""

    reason = "CredentialsError"
    default_code = ErrorCode.CREDENTIALS
