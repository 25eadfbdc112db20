"""Fixtures shared by the OpenStack and VM sandbox tests."""

from __future__ import annotations

import uuid

import pytest

from tests.sandbox.test_openstack import Cloud, connect


@pytest.fixture(scope="module")
def conn():
    return connect("demo")


@pytest.fixture
def cloud(conn, request):
    """A scratch area named after the test (prefix: the module's ``NAME_PREFIX``), emptied
    and checked empty after it."""
    prefix = getattr(request.module, "NAME_PREFIX", "t")
    c = Cloud(conn, f"{prefix}{uuid.uuid4().hex[:6]}-{request.node.name[5:25].replace('_', '-')}")
    request.addfinalizer(c.teardown)
    return c
