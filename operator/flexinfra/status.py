"""Pure status arithmetic: build the next status, and the patch that gets there.

Writing only what changed is what keeps an idle operator at zero Kubernetes writes (Argo CD
and etcd stay quiet); comparing the serialized form avoids false diffs from defaults.
"""

from __future__ import annotations

from typing import Any


def status_patch(current: dict[str, Any] | None, desired: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning ``current`` into ``desired`` (top-level keys), or {}.

    Top-level keys absent from ``desired`` are left alone (other writers, e.g. kopf, may own
    them). Below a key it owns, a merge patch merges objects: a nested key that ``desired``
    no longer has must be sent as null, or it stays forever and every pass finds the same
    difference again (seen: ``status.recovery.bootstrapNode``). Nulls compare as absent (the
    apiserver drops them).
    """
    current = current or {}
    return {k: _merge(current.get(k), v) for k, v in desired.items()
            if _clean(current.get(k)) != _clean(v)}


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _merge(current: Any, desired: Any) -> Any:
    if isinstance(current, dict) and isinstance(desired, dict):
        patch = {k: _merge(current.get(k), v) for k, v in desired.items()}
        patch.update({k: None for k in current if k not in desired})
        return patch
    return desired
