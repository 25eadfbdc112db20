"""From openstacksdk / keystoneauth faults to flexinfra's errors and their codes.

This is the one place that reads what the cloud says in words (a quota refusal arrives as a
403, 409 or 413 whose only mark is its text; a missing image as a 400 "could not be found"):
it turns that into an ``ErrorCode`` once, and everything above decides on the code.
"""

from __future__ import annotations

import re

from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as os_exc

from flexinfra.core import redact
from flexinfra.core.errors import (
    CloudError,
    CredentialsError,
    ErrorCode,
    FlexinfraError,
    InvalidSpec,
    TransientError,
)

__all__ = [
    "CloudError",
    "CredentialsError",
    "ErrorCode",
    "FlexinfraError",
    "InvalidSpec",
    "TransientError",
    "classify",
    "scrub",
]

_QUOTA_WORDS = re.compile(
    r"quota|limit ?exceeded|over ?quota|VolumeLimitExceeded|has been met", re.I
)
_MISSING_WORDS = re.compile(r"could not be found|not found", re.I)
_TIMED_OUT = re.compile(r"timed out", re.I)


def scrub(text: str) -> str:
    """A cloud message with credentials masked (``core.redact``: by shape and by value)."""
    return redact.scrub(text)


def _details(exc: Exception) -> str:
    details = getattr(exc, "details", None) or getattr(exc, "message", None) or str(exc)
    return scrub(str(details).strip())


def status_of(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None) or getattr(exc, "http_status", None)


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
        return TransientError(
            f"{what}: cannot reach the cloud ({type(exc).__name__}); will retry",
            code=ErrorCode.UNREACHABLE,
        )
    status = getattr(exc, "status_code", None)
    details = _details(exc)
    if status is None and isinstance(exc, ksa_exc.HttpError):
        status = exc.http_status
    if status is not None and _QUOTA_WORDS.search(details) and status in (403, 409, 413):
        return CloudError(
            f"{what}: quota exceeded ({details}). Ask the cloud admin to raise the project's "
            "quota, or lower replicas / volume size",
            code=ErrorCode.QUOTA_EXCEEDED,
        )
    if status == 401:
        return CredentialsError(
            f"{what}: the cloud rejected the credentials (401); check the Secret"
        )
    if status == 403:
        return CloudError(
            f"{what}: forbidden by the cloud's policy ({details})", code=ErrorCode.FORBIDDEN
        )
    if status == 429:
        return TransientError(
            f"{what}: throttled by the cloud (429); will retry",
            code=ErrorCode.THROTTLED,
            retry_after=5,
        )
    if status == 409:
        return TransientError(
            f"{what}: conflict, object busy or in use (409: {details}); will retry",
            code=ErrorCode.CONFLICT,
        )
    if status is not None and status >= 500:
        return TransientError(f"{what}: cloud error {status} ({details}); will retry")
    if status == 400:
        missing = _MISSING_WORDS.search(details)
        return CloudError(
            f"{what}: the cloud refused the request (400: {details})",
            code=ErrorCode.NOT_FOUND if missing else ErrorCode.BAD_REQUEST,
        )
    if isinstance(exc, os_exc.ResourceTimeout):
        return TransientError(
            f"{what}: timed out waiting ({details}); will retry", code=ErrorCode.TIMEOUT
        )
    if isinstance(exc, os_exc.SDKException) and _TIMED_OUT.search(details):
        return TransientError(f"{what}: {details}; will retry", code=ErrorCode.TIMEOUT)
    if isinstance(exc, TimeoutError | ConnectionError):
        code = ErrorCode.TIMEOUT if isinstance(exc, TimeoutError) else ErrorCode.UNREACHABLE
        return TransientError(f"{what}: {type(exc).__name__}; will retry", code=code)
    if status is not None:
        return CloudError(
            f"{what}: the cloud answered {status} ({details})",
            code=ErrorCode.NOT_FOUND if status == 404 else ErrorCode.REFUSED,
        )
    return TransientError(f"{what}: unexpected {type(exc).__name__}: {scrub(str(exc))}",
                          code=ErrorCode.UNEXPECTED)
