"""Conditions: Ready / Progressing / Degraded, with reasons from a closed set.

Argo CD and `kubectl wait --for=condition=Ready` read these. The helpers here are pure: they
return a new list and never touch ``lastTransitionTime`` unless the status really flipped, so
an unchanged reconcile produces an identical status and no write.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Literal

from pydantic import Field

from flexinfra.api.base import StatusModel
from flexinfra.core.reasons import Reason

__all__ = ["Condition", "ConditionType", "Reason", "get_condition", "set_condition"]


class ConditionType(StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"


Status = Literal["True", "False", "Unknown"]


class Condition(StatusModel):
    type: str = Field(description="Ready, Progressing or Degraded.")
    status: Status
    reason: str = Field(description="A CamelCase word from a closed set; see the docs.")
    message: str = Field(default="", description="What happened and, if it needs you, what to do.")
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this condition was computed for."
    )
    last_transition_time: str | None = Field(
        default=None, description="When status last changed (RFC 3339)."
    )


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def set_condition(
    conditions: list[Condition],
    type_: ConditionType | str,
    status: bool | Status,
    reason: Reason | str,
    message: str,
    generation: int | None,
    now: str | None = None,
) -> list[Condition]:
    """Return ``conditions`` with ``type_`` set; the transition time moves only on a flip."""
    status_str: Status = (
        ("True" if status else "False") if isinstance(status, bool) else status
    )
    previous = get_condition(conditions, type_)
    flipped = previous is None or previous.status != status_str
    updated = Condition(
        type=str(type_),
        status=status_str,
        reason=str(reason),
        message=message,
        observed_generation=generation,
        last_transition_time=(now or now_rfc3339()) if flipped else previous.last_transition_time,
    )
    out = [c for c in conditions if c.type != str(type_)] + [updated]
    order = {t.value: i for i, t in enumerate(ConditionType)}
    return sorted(out, key=lambda c: order.get(c.type, len(order)))


def get_condition(conditions: list[Condition], type_: ConditionType | str) -> Condition | None:
    return next((c for c in conditions if c.type == str(type_)), None)
