"""Handler wiring, fast: the kopf handler functions with the reconcile core replaced.

The cloud is faked here on purpose (this is about what the handler writes to Kubernetes:
status patches, events, retries); the real cloud path is covered by tests/e2e and
tests/sandbox.
"""

from __future__ import annotations

import copy

import kopf
import pytest

from flexinfra.api import FINALIZER
from flexinfra.api.conditions import Reason
from flexinfra.api.website import ServerStatus, WebSiteResources
from flexinfra.cloud.errors import CloudError, TransientError
from flexinfra.handlers import common
from flexinfra.handlers import website as handler
from flexinfra.reconcile.outcome import Outcome

SPEC = {
    "cloud": {"secretName": "tenant", "cloudName": "demo"},
    "template": "web",
    "replicas": 2,
    "network": {"cidr": "10.20.1.0/24"},
}
TEMPLATES = {("fixweb", "web"): [{"image": "cirros", "flavor": "m1.tiny"}]}


def body(spec=None, status=None, generation=1, finalizers=(FINALIZER,)) -> kopf.Body:
    """A site that has written to the cloud before (it holds the finalizer), by default."""
    raw = {
        "apiVersion": "flexinfra.io/v1alpha1", "kind": "WebSite",
        "metadata": {"name": "client-a", "namespace": "fixweb", "uid": "u-1",
                     "generation": generation, "finalizers": list(finalizers)},
        "spec": copy.deepcopy(spec or SPEC),
    }
    if status is not None:
        raw["status"] = status
    return kopf.Body(raw)


@pytest.fixture
def events(monkeypatch):
    seen: list[tuple[str, str, str]] = []
    def record(body, *, type, reason, message):
        seen.append((type, reason, message))

    # the handlers post with kopf.event: kopf.info/warn obey posting.level, set to WARNING
    # so that kopf's own per-handler chatter does not write Events on every timer run
    monkeypatch.setattr(kopf, "event", record)
    return seen


@pytest.fixture
def cloud(monkeypatch):
    """Replace the gateway and the reconcile core; record the calls."""
    calls: list = []
    state = {"outcome": None, "raise": None}

    def fake_reconcile(owner, spec, template, gateway, require_member_health=True,
                       database=None):
        calls.append((owner, spec, template))
        if state["raise"]:
            raise state["raise"]
        return state["outcome"]

    monkeypatch.setattr(handler, "gateway_for", lambda ns, cloud: object())
    monkeypatch.setattr(handler, "reconcile_website", fake_reconcile)
    state["calls"] = calls
    return state


def ready_outcome() -> Outcome:
    return Outcome(
        ready=True, reason=Reason.RECONCILED, message="2/2 servers serving",
        resources=WebSiteResources(network="n1", servers=[ServerStatus(name="s0", id="i0")]),
        url="http://203.0.113.10", ready_replicas=2,
        events=[("Created", "network fi-fixweb-client-a-net created")],
    )


def busy_outcome() -> Outcome:
    out = ready_outcome()
    out.ready, out.reason, out.requeue_after = False, Reason.PROGRESSING, 5.0
    out.message = "waiting for load balancer ACTIVE"
    out.events = []
    return out


def run(b: kopf.Body, from_timer=False) -> kopf.Patch:
    patch = kopf.Patch()
    handler.run(b, patch, TEMPLATES, from_timer=from_timer)
    return patch


def applied(b: kopf.Body, patch: kopf.Patch) -> kopf.Body:
    raw = dict(b)
    raw["status"] = {**(b.get("status") or {}), **patch.get("status", {})}
    return kopf.Body(raw)


def test_ready_outcome_is_written_once_then_nothing(cloud, events):
    cloud["outcome"] = ready_outcome()
    b = body()
    patch = run(b)
    status = patch["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "Reconciled"
    assert ready["observedGeneration"] == 1
    assert status["url"] == "http://203.0.113.10"
    assert status["resources"]["network"] == "n1"
    assert ("Normal", "Created", "network fi-fixweb-client-a-net created") in events

    # the same outcome again (a drift round finding nothing): no write, no event
    events.clear()
    cloud["outcome"].events = []
    second = run(applied(b, patch), from_timer=True)
    assert "status" not in second or not second["status"]
    assert events == []


def test_busy_outcome_asks_kopf_to_come_back(cloud, events):
    cloud["outcome"] = busy_outcome()
    with pytest.raises(kopf.TemporaryError) as err:
        run(body())
    assert err.value.delay == 5.0


def test_invalid_spec_is_a_condition_and_reaches_no_cloud(cloud, events):
    bad = {**SPEC, "network": {"cidr": "10.20.1.0/24", "existingNetwork": "x"}}
    patch = run(body(spec=bad))
    ready = next(c for c in patch["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert "exactly one" in ready["message"]
    assert cloud["calls"] == []
    assert events and events[0][0] == "Warning"


def test_missing_template_names_it(cloud, events):
    patch = kopf.Patch()
    # the object never wrote (no finalizer, hence no drift timer): it is looked at again
    # after a drift interval, in case the template appears
    with pytest.raises(kopf.TemporaryError) as err:
        handler.run(body(spec={**SPEC, "template": "nope"}, finalizers=()), patch, TEMPLATES,
                    from_timer=False)
    assert err.value.delay == handler.get_settings().drift_interval
    ready = next(c for c in patch["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidSpec" and "'nope'" in ready["message"]
    assert cloud["calls"] == []


def test_transient_errors_back_off_with_failures_in_a_row_not_with_progress(cloud, events):
    b = body()
    handler.transient_streaks.reset(b.metadata.uid)  # whatever earlier tests left
    cloud["outcome"] = busy_outcome()
    for _ in range(12):  # a long create: many progress requeues (kopf's retry count grows)
        with pytest.raises(kopf.TemporaryError):
            run(b)
    cloud["raise"] = TransientError("network: 503 from the cloud", retry_after=1.0)
    delays = []
    for _ in range(3):
        with pytest.raises(kopf.TemporaryError) as err:
            run(b)
        delays.append(err.value.delay)
    assert delays == [5.0, 10.0, 20.0]  # the first failure waits the first delay, then doubles
    cloud["raise"] = None  # a pass that gets through resets the streak
    with pytest.raises(kopf.TemporaryError):
        run(b)
    cloud["raise"] = TransientError("503", retry_after=30.0)
    with pytest.raises(kopf.TemporaryError) as err:
        run(b)
    assert err.value.delay == 30.0  # the cloud's Retry-After wins when longer


def test_cloud_error_is_a_condition_not_a_retry_storm(cloud, events):
    cloud["raise"] = CloudError("quota exceeded for instances: raise the quota or lower replicas")
    patch = run(body())
    ready = next(c for c in patch["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "CloudError" and "quota" in ready["message"]


def test_timer_skips_while_a_change_handler_holds_the_object(cloud, events):
    cloud["outcome"] = ready_outcome()
    with common.object_lock("u-1", wait=True):
        patch = run(body(), from_timer=True)
    assert cloud["calls"] == [] and not patch


@pytest.mark.parametrize(
    ("message", "level"),
    [
        ("Handler 'website_changed' failed temporarily: progressing: waiting for servers",
         "INFO"),
        ("Handler 'website_changed' failed temporarily: transient error: 503 (retrying)",
         "WARNING"),
        ("Handler 'website_changed' failed temporarily: something else", "ERROR"),
    ],
)
def test_requeues_are_logged_at_the_level_they_deserve(message, level):
    import logging

    record = logging.LogRecord("kopf.objects", logging.ERROR, __file__, 1, message, None, None)
    assert common.RequeueLogFilter().filter(record)
    assert record.levelname == level


def test_progress_requeue_carries_the_progress_marker(cloud, events):
    cloud["outcome"] = busy_outcome()
    with pytest.raises(kopf.TemporaryError) as err:
        run(body())
    assert str(err.value).startswith(common.PROGRESSING)


def test_servers_kept_in_error_show_as_degraded(cloud, events):
    from flexinfra.core.errors import ErrorCode
    from flexinfra.core.plan import Problem

    cloud["raise"] = CloudError(
        "fi-fixweb-client-a-web-1 went to ERROR 3 times in a row", code=ErrorCode.BLOCKED,
        problems=[Problem(Reason.SERVER_FAILED, "server web-1 kept in ERROR")],
    )
    patch = run(body())
    conds = {c["type"]: c for c in patch["status"]["conditions"]}
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == "CloudError"
    assert conds["Degraded"]["status"] == "True"
    assert conds["Degraded"]["reason"] == "ServerFailed"
    assert conds["Degraded"]["message"] == "server web-1 kept in ERROR"
    cloud["raise"] = None  # fixed: Degraded goes back to False
    cloud["outcome"] = ready_outcome()
    again = run(applied(body(), patch))
    conds = {c["type"]: c for c in again["status"]["conditions"]}
    assert conds["Degraded"]["status"] == "False" and conds["Degraded"]["reason"] == "AsExpected"


def test_degradation_is_an_event_once_and_recovery_another(cloud, events):
    from flexinfra.core.plan import Problem

    failing = ready_outcome()
    failing.problems = [Problem(Reason.MEMBER_ERROR,
                                "web-1 (10.0.0.6) fails the load balancer's health check")]
    cloud["outcome"] = failing
    patch = run(body())
    warnings = [e for e in events if e[0] == "Warning"]
    assert warnings == [("Warning", "MemberError",
                         "web-1 (10.0.0.6) fails the load balancer's health check")]
    events.clear()
    again = run(applied(body(), patch), from_timer=True)  # still failing: no new Event
    assert [e for e in events if e[0] == "Warning"] == []
    cloud["outcome"] = ready_outcome()
    run(applied(applied(body(), patch), again), from_timer=True)
    assert ("Normal", "Recovered",
            "no longer degraded (was: web-1 (10.0.0.6) fails the load balancer's health "
            "check)") in events


def test_a_drift_pass_that_repairs_comes_back_until_converged(cloud, events):
    """Item 7: a repair of several steps advanced one step per drift interval (a server
    deleted behind the operator's back served again after 147 s at a 60 s interval)."""
    cloud["outcome"] = busy_outcome()
    with pytest.raises(kopf.TemporaryError) as err:
        run(body(), from_timer=True)
    assert err.value.delay == 5.0
    cloud["outcome"] = ready_outcome()
    run(body(), from_timer=True)  # converged: no requeue, the timer's interval again
