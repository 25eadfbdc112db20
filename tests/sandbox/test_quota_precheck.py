"""The quota pre-check against the real sandbox OpenStack: a site the project's Octavia and
Cinder quotas cannot hold is refused before the first write, naming every shortfall.

Quotas are lowered on a scratch project made for the test (admin), never on the shared
``demo`` project. The sandbox's Octavia and Cinder do enforce them (403 "Quota has been met",
413 VolumeLimitExceeded), so the check refuses exactly what the cloud would.
CIDRs: 10.203.x.0/24 only.
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from types import SimpleNamespace

import openstack
import pytest
import yaml

from flexinfra.cloud.connection import ConnectionCache
from flexinfra.cloud.errors import CloudError
from flexinfra.core.plan import Plan
from flexinfra.kinds.website import plan_website, reconcile_website
from flexinfra.planning.website import ObservedSite
from flexinfra.reconcile.quota import check_quota
from tests.sandbox.conftest import new_owner, sandbox_template, site_spec, tear_down
from tests.sandbox.test_openstack import PATHS, connect

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(600)]

#: what the sandbox gives the demo member on its project
MEMBER_ROLES = ("member", "reader", "load-balancer_member")


@pytest.fixture
def scratch():
    """A throwaway project with its own member user, and a gateway logged in as that user.

    Its quotas may be changed freely; at the end they are reset and the project, the user and
    the ``default`` security group Neutron made for the project are deleted."""
    admin = connect("admin")
    name = f"fxq-{uuid.uuid4().hex[:6]}"
    password = secrets.token_urlsafe(18)
    project = admin.identity.create_project(
        name=name, domain_id="default", description="flexinfra quota test (temporary)"
    )
    user = gateway = None
    try:
        user = admin.identity.create_user(
            name=name, password=password, domain_id="default", default_project_id=project.id
        )
        for role in MEMBER_ROLES:
            admin.identity.assign_project_role_to_user(
                project, user, admin.identity.find_role(role, ignore_missing=False)
            )
        clouds = yaml.safe_load(PATHS.clouds_yaml.read_text())
        entry = clouds["clouds"]["demo"]
        entry["auth"].update(username=name, password=password, project_name=name)
        gateway = ConnectionCache().get(name, "1", yaml.safe_dump(clouds), "demo")
        yield SimpleNamespace(admin=admin, project=project, gateway=gateway)
    finally:
        if gateway is not None:
            gateway.close()
        with contextlib.suppress(openstack.exceptions.NotFoundException):
            admin.load_balancer.delete_quota(project.id)
        with contextlib.suppress(openstack.exceptions.NotFoundException):
            admin.block_storage.revert_quota_set(project.id)
        # listed tenant-wide, not with project_id=: that filter makes Neutron create it anew
        for group in admin.network.security_groups():
            if group.project_id == project.id:
                admin.network.delete_security_group(group)
        if user is not None:
            admin.identity.delete_user(user)
        admin.identity.delete_project(project)


def test_octavia_and_cinder_shortfalls_refuse_the_site_before_any_write(scratch):
    admin, project, gateway = scratch.admin, scratch.project, scratch.gateway
    admin.load_balancer.update_quota(project.id, load_balancers=0)
    admin.block_storage.update_quota_set(project.id, volumes=1)
    # the member reads what the admin set: the check depends on it
    assert gateway.load_balancer_quota().load_balancers == 0
    assert gateway.volume_quota().volumes == 1

    owner = new_owner("quota")
    spec = site_spec(
        gateway,
        "10.203.1.0/24",
        replicas=2,
        storage={"volumeSizeGb": 1},
        publicIP={"enabled": False},
    )
    template = sandbox_template(gateway)
    try:
        with pytest.raises(CloudError) as err:
            reconcile_website(owner, spec, template, gateway)
        message = err.value.message
        print("refused:", message)
        assert "nothing was created" in message and "raise the project's quota" in message
        assert "load balancers: need 1, 0 left" in message
        assert "volumes: need 2, 1 left" in message
        assert gateway.inventory(max_age=0).owned(owner.uid) == {}

        # back to the defaults (unlimited here): the same plan passes the check
        admin.load_balancer.delete_quota(project.id)
        admin.block_storage.revert_quota_set(project.id)
        actions = plan_website(owner, spec, template, gateway)
        assert {"load_balancer", "volume"} <= {a.kind for a in actions if a.verb == "create"}
        check_quota(gateway, Plan(actions=actions), ObservedSite())
    finally:
        tear_down(owner, gateway)  # only does something if the check let a write through
    assert gateway.inventory(max_age=0).owned(owner.uid) == {}
