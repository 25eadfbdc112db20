"""Item 1 (deletion that always ends) and item 4's decision (one instance per namespace).

* the finalizer goes on just before the first cloud write, with the cloud binding; a pass
  that writes nothing adds nothing (so an object that never wrote deletes at once);
* a change of cloud, project or cloudName on an object holding resources is InvalidSpec
  before any write;
* the credentials Secret is protected while an object holding resources names it;
* the Lease decision, pure.
"""

from __future__ import annotations

import json

import pytest

from flexinfra import k8s
from flexinfra.api import FINALIZER
from flexinfra.core.errors import InvalidSpec, TransientError
from flexinfra.handlers import protection as P
from flexinfra.lease import (
    LEASE_FINALIZER,
    LeaseKeeper,
    LeaseView,
    Verdict,
    decide,
    lease_finalizers,
)
from flexinfra.reconcile.guard import before_first_write, before_write


class Gw:
    def __init__(self, project="p1", url="http://ks:5000/v3"):
        self.id = (url, project)

    def identity(self):
        return self.id


def raw(finalizers=(), annotations=None, cloud_name="demo"):
    return {"metadata": {"name": "a", "namespace": "ns", "uid": "u1",
                         "finalizers": list(finalizers), "annotations": annotations or {}},
            "spec": {"cloud": {"secretName": "tenant", "cloudName": cloud_name}}}


def test_first_write_adds_the_finalizer_binding_and_secret_protection(k8s_writes):
    hook = P.guard_for("websites", raw())
    with before_first_write(hook):
        before_write(Gw())
        before_write(Gw())  # once per pass
    kinds = [w[0] for w in k8s_writes]
    assert kinds == ["secret-finalizer", "object-finalizer"]  # the Secret first
    _, plural, ns, name, finalizer, present, kw = k8s_writes[1]
    assert (plural, ns, name, finalizer, present) == ("websites", "ns", "a", FINALIZER, True)
    assert json.loads(kw["annotations"][P.BINDING_ANNOTATION]) == {
        "authURL": "http://ks:5000/v3", "projectID": "p1", "cloudName": "demo"}


def test_no_hook_no_write():
    before_write(Gw())  # outside a Runner pass (flexinfra plan, tests): nothing happens


def test_a_move_to_another_project_is_refused_before_any_write(k8s_writes):
    bound = {P.BINDING_ANNOTATION: json.dumps(P.binding(Gw().identity(), "demo"))}
    for gw, name in ((Gw(project="p2"), "demo"), (Gw(url="http://other/v3"), "demo"),
                     (Gw(), "renamed")):
        hook = P.guard_for("websites", raw([FINALIZER], bound, cloud_name=name))
        with before_first_write(hook), pytest.raises(InvalidSpec) as err:
            before_write(gw)
        assert "cannot move" in err.value.message
    assert k8s_writes == []
    # the same place: fine, and nothing to write (finalizer and binding already there)
    with before_first_write(P.guard_for("websites", raw([FINALIZER], bound))):
        before_write(Gw())
    assert k8s_writes == []


def test_teardown_refuses_credentials_of_another_project():
    bound = {P.BINDING_ANNOTATION: json.dumps(P.binding(Gw().identity(), "demo"))}
    with pytest.raises(InvalidSpec):
        P.check_binding(raw([FINALIZER], bound), Gw(project="p2"))
    P.check_binding(raw([FINALIZER], bound), Gw())
    P.check_binding(raw([FINALIZER]), Gw(project="p2"))  # nothing recorded: an older object


def test_a_pass_stops_before_writing_when_the_lease_is_lost(k8s_writes):
    class Lost:
        def holds(self, ns):
            return False

    with before_first_write(P.guard_for("websites", raw(), Lost())), \
            pytest.raises(TransientError):
        before_write(Gw())
    assert k8s_writes == []


def test_the_secret_stays_protected_while_another_object_with_resources_names_it():
    other = raw([FINALIZER])
    other["metadata"]["uid"] = "u2"
    never_wrote = raw()
    never_wrote["metadata"]["uid"] = "u3"
    assert P.secret_still_needed([raw([FINALIZER]), other], "tenant", "u1")
    assert not P.secret_still_needed([raw([FINALIZER]), never_wrote], "tenant", "u1")
    assert not P.secret_still_needed([other], "another-secret", "u1")


def test_finalizer_patches_are_guarded_by_what_was_read():
    assert k8s.finalizer_patch([], "f", True) == [
        {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}]
    assert k8s.finalizer_patch(["kopf"], "f", True) == [
        {"op": "test", "path": "/metadata/finalizers", "value": ["kopf"]},
        {"op": "replace", "path": "/metadata/finalizers", "value": ["kopf", "f"]}]
    assert k8s.finalizer_patch(["kopf", "f"], "f", False)[1]["value"] == ["kopf"]
    assert k8s.finalizer_patch(["f"], "f", True) == []


@pytest.mark.parametrize(("view", "now", "verdict"), [
    (None, 100, Verdict.FREE),
    (LeaseView(None, 90, 15), 100, Verdict.FREE),  # released
    (LeaseView("me", 10, 15), 100, Verdict.MINE),  # mine, even late: renew it
    (LeaseView("other", 90, 15), 100, Verdict.TAKEN),
    (LeaseView("other", 80, 15), 100, Verdict.FREE),  # expired: the holder died
    (LeaseView("other", 80, None), 100, Verdict.FREE),  # default duration 15
    (LeaseView("other", 80, 30), 100, Verdict.TAKEN),  # the holder's own duration counts
])
def test_lease_decision(view, now, verdict):
    assert decide(view, "me", now, 15) is verdict


def test_a_holder_stops_believing_it_holds_before_others_may_take_over():
    clock = {"t": 1000.0}
    keeper = LeaseKeeper(api=object(), me="me", duration=15, renew=3,
                         clock=lambda: clock["t"])
    keeper._held["ns"] = 1000.0
    assert keeper.holds("ns")
    clock["t"] = 1008.9  # renewed 8.9 s ago: still < 15 - 2*3
    assert keeper.holds("ns")
    clock["t"] = 1009.1
    assert not keeper.holds("ns")


class FakeLeases:
    """coordination.k8s.io Leases in memory, with the API's optimistic concurrency."""

    def __init__(self):
        self.leases, self.version = {}, 0

    def _obj(self, body):
        from types import SimpleNamespace as NS

        spec = body["spec"]
        meta = body["metadata"]
        return NS(metadata=NS(resource_version=meta["resourceVersion"],
                              finalizers=meta.get("finalizers"),
                              deletion_timestamp=meta.get("deletionTimestamp")),
                  spec=NS(holder_identity=spec.get("holderIdentity"),
                          renew_time=spec.get("renewTime"),
                          lease_duration_seconds=spec.get("leaseDurationSeconds"),
                          lease_transitions=spec.get("leaseTransitions")))

    def read_namespaced_lease(self, name, ns):
        from kubernetes.client.rest import ApiException

        if ns not in self.leases:
            raise ApiException(status=404)
        return self._obj(self.leases[ns])

    def create_namespaced_lease(self, ns, body):
        from kubernetes.client.rest import ApiException

        if ns in self.leases:
            raise ApiException(status=409)
        self.version += 1
        self.leases[ns] = {**body, "metadata": {**body["metadata"],
                                                "resourceVersion": str(self.version)}}

    def replace_namespaced_lease(self, name, ns, body):
        from kubernetes.client.rest import ApiException

        if self.leases[ns]["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
            raise ApiException(status=409)
        self.version += 1
        kept = {k: v for k, v in self.leases[ns]["metadata"].items() if k == "deletionTimestamp"}
        self.leases[ns] = {**body, "metadata": {**body["metadata"], **kept,
                                                "resourceVersion": str(self.version)}}


def test_one_instance_per_namespace_and_takeover_after_the_holder_dies():
    api, clock = FakeLeases(), {"t": 1_000_000.0}
    a = LeaseKeeper(api, me="a", duration=15, renew=3, clock=lambda: clock["t"])
    b = LeaseKeeper(api, me="b", duration=15, renew=3, clock=lambda: clock["t"])
    assert a.acquire("ns") == (True, None)
    assert b.acquire("ns") == (False, "a")
    clock["t"] += 5
    assert a.try_hold("ns") == (True, None)  # renewal
    clock["t"] += 10  # 10 s after a's last renewal: still a's
    assert b.try_hold("ns")[0] is False
    clock["t"] += 6  # a died (no renewal for 16 s > 15)
    assert b.acquire("ns") == (True, None)
    assert not a.holds("ns")  # a's own margin ran out long before
    assert a.try_hold("ns") == (False, "b")  # a back from the dead: stands by
    b.release_all()
    assert a.try_hold("ns") == (True, None)  # released: taken at once


def test_a_namespace_taken_by_a_handler_wakes_the_objects_filtered_out_before():
    """A cluster-wide instance takes a namespace when a handler first acts there: objects
    whose events came just before (filtered out by ``want``) must be woken, or a new site
    created in the same second as another object is never built (found by ``make demo``)."""
    api, clock = FakeLeases(), {"t": 5_000_000.0}
    a = LeaseKeeper(api, me="a", duration=15, renew=3, clock=lambda: clock["t"])
    woken = []
    a.on_acquire = woken.append
    assert a.want("ns") is False  # a site's event, filtered out
    assert a.acquire("ns") == (True, None)  # another object's handler takes the namespace
    assert woken == ["ns"]
    a.renew_once()
    assert a.acquire("ns") == (True, None) and woken == ["ns"]  # once


def test_the_lease_finalizer_rule():
    assert lease_finalizers([], deleting=False, teardowns_done=None) == [LEASE_FINALIZER]
    assert lease_finalizers(["x"], deleting=True, teardowns_done=None) == ["x"]  # none added
    assert lease_finalizers([LEASE_FINALIZER], deleting=True, teardowns_done=False) == [
        LEASE_FINALIZER]
    assert lease_finalizers([LEASE_FINALIZER, "x"], deleting=True, teardowns_done=True) == ["x"]


def test_a_deleted_lease_keeps_working_until_the_namespace_teardowns_are_done():
    """A namespace deletion deletes the Lease too: it stays (finalizer), the holder keeps
    renewing it and the standby keeps standing by; once no object holds resources, the
    holder lets it go."""
    api, clock = FakeLeases(), {"t": 3_000_000.0}
    busy = {"ns": True}
    a = LeaseKeeper(api, me="a", duration=15, renew=3, clock=lambda: clock["t"])
    b = LeaseKeeper(api, me="b", duration=15, renew=3, clock=lambda: clock["t"])
    a.teardowns_pending = b.teardowns_pending = busy.__getitem__
    assert a.acquire("ns") == (True, None)
    assert api.leases["ns"]["metadata"]["finalizers"] == [LEASE_FINALIZER]
    api.leases["ns"]["metadata"]["deletionTimestamp"] = "2026-12-05T08:00:00Z"
    clock["t"] += 3
    assert a.try_hold("ns") == (True, None)
    assert api.leases["ns"]["metadata"]["finalizers"] == [LEASE_FINALIZER]
    assert b.try_hold("ns") == (False, "a")
    busy["ns"] = False
    clock["t"] += 3
    assert a.try_hold("ns") == (True, None)
    assert api.leases["ns"]["metadata"]["finalizers"] == []  # the apiserver then removes it


def test_a_clean_stop_drops_the_lease_finalizer_only_when_nothing_is_left_to_protect():
    api, clock = FakeLeases(), {"t": 4_000_000.0}
    busy = {"ns": True, "other": False}
    a = LeaseKeeper(api, me="a", duration=15, renew=3, clock=lambda: clock["t"])
    a.teardowns_pending = busy.__getitem__
    assert a.acquire("ns")[0] and a.acquire("other")[0]
    a.release_all()
    assert api.leases["ns"]["metadata"]["finalizers"] == [LEASE_FINALIZER]
    assert api.leases["other"]["metadata"]["finalizers"] == []
    assert api.leases["ns"]["spec"]["holderIdentity"] is None


def test_a_standby_polls_what_it_wants_and_wakes_the_namespace_it_takes_over():
    api, clock = FakeLeases(), {"t": 2_000_000.0}
    a = LeaseKeeper(api, me="a", duration=15, renew=3, clock=lambda: clock["t"])
    b = LeaseKeeper(api, me="b", duration=15, renew=3, clock=lambda: clock["t"])
    woken = []
    b.on_acquire = woken.append
    a.start(claim=["ns"])
    a._stop.set()  # no threads in this test: renew by hand
    assert b.want("ns") is False  # kopf's filter: no I/O, not held
    b.renew_once()
    assert woken == [] and not b.holds("ns")
    clock["t"] += 16  # a is gone
    b.renew_once()
    assert woken == ["ns"] and b.want("ns") is True
    b.renew_once()
    assert woken == ["ns"]  # once, on the takeover


def test_a_standby_never_lets_kopf_drop_the_finalizer_of_an_object_being_deleted(monkeypatch):
    """kopf removes the finalizer of a deleting object when no handler asks for it: the delete
    handler's filter must match a deleting object whoever holds the Lease."""
    from flexinfra import lease
    from flexinfra.handlers.common import deletion_filter, lease_active

    class Standby:
        def want(self, ns):
            return False

    monkeypatch.setattr(lease, "KEEPER", Standby())
    live = raw([FINALIZER])
    deleting = raw([FINALIZER])
    deleting["metadata"]["deletionTimestamp"] = "2026-12-04T18:00:00Z"
    assert not lease_active("ns")
    assert not deletion_filter("ns", live)  # live: blind (kopf stores nothing)
    assert deletion_filter("ns", deleting)  # deleting: the handler runs, keeps the finalizer
    assert not deletion_filter("ns", raw([]))  # never wrote: nothing to clean up
