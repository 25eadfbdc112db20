"""What a failed server's fault means, as a code.

Nova records a server's fault as ``{"code": 500, "message": "...", ...}`` and gives the same
500 for "no host could take it" (retrying unchanged fails again) as for a host that broke
(retrying helps). The message is the only thing that tells them apart, so it is read here,
once, and every decision above reads the ``ServerFault`` instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class ServerFault(StrEnum):
    NONE = "none"
    NO_VALID_HOST = "no_valid_host"  # the scheduler found no host (anti-affinity, capacity)
    OTHER = "other"


_NO_VALID_HOST = re.compile(r"no valid host", re.I)


def server_fault(fault: Mapping[str, Any] | None) -> ServerFault:
    if not isinstance(fault, Mapping) or not fault:
        return ServerFault.NONE
    if _NO_VALID_HOST.search(str(fault.get("message", ""))):
        return ServerFault.NO_VALID_HOST
    return ServerFault.OTHER


def fault_message(fault: Mapping[str, Any] | None) -> str:
    """Nova's words, for the user."""
    return str(fault.get("message") or "").strip() if isinstance(fault, Mapping) else ""
