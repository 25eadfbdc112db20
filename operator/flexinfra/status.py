"""Pure status arithmetic: build the next status, and the patch that gets there.

Writing only what changed is what keeps an idle operator at zero Kubernetes writes (Argo CD
and etcd stay quiet); comparing the serialized form avoids false diffs from defaults.
"""

from __future__ import annotations

from typing import Any


def status_patch(current: dict[str, Any] | None, desired: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning ``current`` into ``desired`` (top-level keys), or {}.

    Keys absent from ``desired`` are left alone (other writers, e.g. kopf, may own them).
    """
    current = current or {}
    return {k: v for k, v in desired.items() if current.get(k) != v}
