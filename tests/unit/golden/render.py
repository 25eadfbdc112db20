"""Deterministic text for plans, passes and cloud calls, one record per line.

The golden files are compared as text, so a difference shows as a readable diff. Only what
the machinery decides is rendered: verbs, kinds, names, keys, targets, parameters (``Ref``s
as ``<ref key.field>``), reasons, the order of the actions and what each must wait for
before it starts (``reconcile.executor.schedule``: recorded, before the refactor, by a copy
of the executor's rules, and equal since), waits, blocks, problems and invalid-spec
messages.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any

from flexinfra.reconcile.executor import schedule


def enc(value: Any) -> Any:
    """A JSON-able, order-stable form of a parameter value."""
    if isinstance(value, enum.Enum):
        return value.value
    if type(value).__name__ == "Ref":
        return f"<ref {value.key}.{value.field}>"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: enc(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {f"<{type(value).__name__}>": fields}
    if isinstance(value, dict):
        return {str(k): enc(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [enc(v) for v in value]
    if isinstance(value, frozenset | set):
        return sorted(enc(v) for v in value)
    return value


def dump(value: Any) -> str:
    return json.dumps(enc(value), sort_keys=True, separators=(",", ":"))


def action_line(a, deps: list[int]) -> str:
    return (
        f"A {enc(a.verb)} {enc(a.kind)} {a.name!r} key={a.key} target={a.target_id} "
        f"| {a.reason} | {dump(dict(a.params))} | after={deps}"
    )


def plan_lines(plan, invalid: list[str] | None = None, schedule_fn=schedule) -> list[str]:
    lines = []
    for a, deps in zip(plan.actions, schedule_fn(plan.actions), strict=True):
        lines.append(action_line(a, deps))
    lines += [f"W {w}" for w in plan.waiting]
    lines += [f"B {b}" for b in plan.blocked]
    lines += [f"P {p.reason}: {p.message}" for p in plan.problems]
    lines += [f"I {i}" for i in invalid or []]
    lines.append(
        f"= ready_replicas={plan.ready_replicas} url={plan.url} converged={plan.converged}"
    )
    return lines
