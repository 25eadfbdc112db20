"""How the operator is started: the arguments kopf gets."""

from __future__ import annotations

from kopf._cogs.structs import references

from flexinfra.runner import operator_kwargs
from flexinfra.settings import Settings


def test_cluster_wide_by_default_with_arguments_kopf_accepts():
    kwargs = operator_kwargs(Settings())
    assert kwargs["clusterwide"] is True
    # what kopf's namespace observer does first; it raised TypeError on namespaces=None
    assert references.select_specific_namespaces(kwargs["namespaces"]) == set()
    assert kwargs["standalone"] is True
    assert kwargs["liveness_endpoint"] == "http://0.0.0.0:8081/healthz"


def test_namespaced_when_namespaces_are_given():
    kwargs = operator_kwargs(Settings(namespaces=["fixweb"], health_port=0))
    assert kwargs["clusterwide"] is False
    assert references.select_specific_namespaces(kwargs["namespaces"]) == {"fixweb"}
    assert kwargs["liveness_endpoint"] is None
