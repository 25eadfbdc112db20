"""Errors the reconcile core raises, and the mapping from openstacksdk faults to them.

The kopf handlers turn each class into a condition reason: the class decides whether the user
must act (``InvalidSpec``, ``CredentialsError``), the cloud operator must act (``CloudError``),
or the operator simply retries (``TransientError``). Messages never carry credentials.
"""

from __future__ import annotations

import re

from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as os_exc


class FlexinfraError(Exception):
    """Base class; ``message`` is shown to the user as-is, so it must be actionable."""

    reason = "CloudError"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        #: (reason, message) of the steps done in the same pass before this failure: they
        #: happened, so they are reported (as Events) even though the pass failed
        self.events: list[tuple[str, str]] = []


class InvalidSpec(FlexinfraError):
    """The spec asks for something that cannot be built; the user must change it."""

    reason = "InvalidSpec"


class CloudError(FlexinfraError):
    """The cloud refuses (quota, policy, bad request); retrying unchanged will not help soon."""

    reason = "CloudError"


class TransientError(FlexinfraError):
    """A fault that retrying fixes: 5xx, timeouts, 409 in-use/pending, 429."""

    reason = "TransientError"


class CredentialsError(FlexinfraError):
    """The credentials Secret is missing, unreadable or rejected by Keystone."""

    reason = "CredentialsError"


_QUOTA_WORDS = re.compile(
    r"quota|limit ?exceeded|over ?quota|VolumeLimitExceeded|has been met", re.I
)
_SECRETS = re.compile(r"(password|secret|token|credential)(['\"]?\s*[:=]\s*)\S+", re.I)


def scrub(text: str) -> str:
    """Remove anything that looks like ``password: ...`` from a cloud message, just in case."""
    return _SECRETS.sub(r"\1\2***", text)[:400]


def _details(exc: Exception) -> str:
    details = getattr(exc, "details", None) or getattr(exc, "message", None) or str(exc)
    return scrub(str(details).strip())


def classify(exc: Exception, what: str) -> FlexinfraError:
    """Map an openstacksdk / keystoneauth exception raised while doing ``what`` to our errors.

    Order matters: a quota refusal arrives as 403 (Nova, Octavia), 409 (Neutron) or 413
    (Cinder); it must be a ``CloudError`` telling what to raise, not a retried 409.
    """
    if isinstance(exc, FlexinfraError):
        return exc
    if isinstance(exc, ksa_exc.AuthPluginException | os_exc.ConfigException):
        return CredentialsError(f"{what}: the credentials are incomplete ({type(exc).__name__})")
    if isinstance(exc, ksa_exc.Unauthorized):
        return CredentialsError(
            f"{what}: the cloud rejected the credentials (401); check the Secret"
        )
    if isinstance(exc, ksa_exc.ConnectionError | ksa_exc.DiscoveryFailure | ksa_exc.RequestTimeout):
        return TransientError(f"{what}: cannot reach the cloud ({type(exc).__name__}); will retry")
    status = getattr(exc, "status_code", None)
    details = _details(exc)
    if status is None and isinstance(exc, ksa_exc.HttpError):
        status = exc.http_status
    if status is not None and _QUOTA_WORDS.search(details) and status in (403, 409, 413):
        return CloudError(
            f"{what}: quota exceeded ({details}). Ask the cloud admin to raise the project's "
            "quota, or lower replicas / volume size"
        )
    if status == 401:
        return CredentialsError(
            f"{what}: the cloud rejected the credentials (401); check the Secret"
        )
    if status == 403:
        return CloudError(f"{what}: forbidden by the cloud's policy ({details})")
    if status == 429:
        return TransientError(f"{what}: throttled by the cloud (429); will retry", retry_after=5)
    if status == 409:
        return TransientError(
            f"{what}: conflict, object busy or in use (409: {details}); will retry"
        )
    if status is not None and status >= 500:
        return TransientError(f"{what}: cloud error {status} ({details}); will retry")
    if status == 400:
        return CloudError(f"{what}: the cloud refused the request (400: {details})")
    if isinstance(exc, os_exc.ResourceTimeout):
        return TransientError(f"{what}: timed out waiting ({details}); will retry")
    if isinstance(exc, os_exc.SDKException) and "timed out" in details.lower():
        return TransientError(f"{what}: {details}; will retry")
    if isinstance(exc, TimeoutError | ConnectionError):
        return TransientError(f"{what}: {type(exc).__name__}; will retry")
    if status is not None:
        return CloudError(f"{what}: the cloud answered {status} ({details})")
    return TransientError(f"{what}: unexpected {type(exc).__name__}: {scrub(str(exc))}")
