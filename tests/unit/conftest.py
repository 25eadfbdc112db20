"""Unit tests never reach a Kubernetes API: the sandbox's KUBECONFIG may be in the
environment, and a handler test must not put finalizers on a real Secret. The few writes the
handlers make outside kopf's patch are recorded instead (``k8s_writes``)."""

from __future__ import annotations

import pytest

from flexinfra import k8s


class NoKubernetes:
    def __getattr__(self, name):
        raise RuntimeError(f"unit test reached the Kubernetes API ({name})")


@pytest.fixture(autouse=True)
def k8s_writes(monkeypatch) -> list[tuple]:
    writes: list[tuple] = []
    for factory in ("core", "custom", "coordination"):
        monkeypatch.setattr(k8s, factory, lambda: NoKubernetes())
    monkeypatch.setattr(k8s, "set_object_finalizer",
                        lambda *a, **kw: writes.append(("object-finalizer", *a, kw)))
    monkeypatch.setattr(k8s, "set_secret_finalizer",
                        lambda *a: writes.append(("secret-finalizer", *a)))
    monkeypatch.setattr(k8s, "annotate", lambda *a: writes.append(("annotate", *a)))
    monkeypatch.setattr(k8s, "list_objects", lambda plural, ns: [])
    k8s.SECRETS_SEEN.clear()
    return writes
