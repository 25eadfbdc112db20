"""The hook run once per pass just before its first cloud write.

Why a hook here, set by the handler layer: what must be true before anything is written
belongs to Kubernetes, not to the cloud machinery. The Runner sets it for the pass (a
``ContextVar``, so no kind's signature changes) to

* put the object's finalizer on (an object that never wrote deletes at once, even when its
  Secret is missing: there is nothing to clean up);
* record what the resources are made with (cloud, project, ``cloudName``) and refuse a pass
  whose credentials point elsewhere (``InvalidSpec``), before it builds a second copy there;
* protect the credentials Secret (a finalizer while objects with resources name it);
* check that this instance still holds the namespace's Lease.

The driver calls ``before_write(gateway)`` once, when a pass has writes to make; the teardown
needs none (it runs only on objects that hold the finalizer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

Hook = Callable[[Any], None]

_hook: ContextVar[Hook | None] = ContextVar("flexinfra_before_write", default=None)


@contextmanager
def before_first_write(hook: Hook) -> Iterator[None]:
    token = _hook.set(hook)
    try:
        yield
    finally:
        _hook.reset(token)


def before_write(gateway: Any) -> None:
    """Run the pass's hook (if any); it raises to stop the pass before the write."""
    hook = _hook.get()
    if hook is not None:
        hook(gateway)
