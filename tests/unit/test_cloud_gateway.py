"""Gateway plumbing that needs no cloud: error mapping, retries, tags, credentials parsing."""

from __future__ import annotations

import pytest
from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as os_exc

from flexinfra.cloud.connection import ConnectionCache, parse_cloud
from flexinfra.cloud.errors import CloudError, CredentialsError, TransientError, classify
from flexinfra.cloud.gateway import Gateway
from flexinfra.cloud.metrics import total_calls
from flexinfra.core import tags as T


def http_error(status: int, details: str = "") -> os_exc.HttpException:
    return os_exc.HttpException(message=f"{status}", details=details, http_status=status)


@pytest.mark.parametrize(
    ("exc", "kind", "words"),
    [
        (
            http_error(403, "Quota exceeded for instances: Requested 1, but already used 10"),
            CloudError,
            "raise the project's quota",
        ),
        (http_error(409, "Quota exceeded for resources: ['network']."), CloudError, "quota"),
        (http_error(413, "VolumeLimitExceeded: Maximum number of volumes"), CloudError, "quota"),
        (http_error(409, "Port is in use"), TransientError, "will retry"),
        (http_error(500, "oops"), TransientError, "will retry"),
        (http_error(401), CredentialsError, "check the Secret"),
        (ksa_exc.ConnectTimeout("timed out"), TransientError, "will retry"),
        (ksa_exc.ConnectFailure("refused"), TransientError, "cannot reach"),
    ],
)
def test_classify(exc, kind, words):
    err = classify(exc, "create server")
    assert isinstance(err, kind) and words in err.message


def test_classify_scrubs_secrets():
    err = classify(http_error(400, "bad body: password: hunter2"), "create")
    assert "hunter2" not in err.message


class Flaky:
    def __init__(self, failures):
        self.failures = list(failures)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return ["ok"]


def test_reads_are_retried_on_5xx_and_counted():
    gw = Gateway(conn=None, retry_budget=5)
    before = total_calls(verb="list", service="testsvc")
    fn = Flaky([http_error(500), http_error(503)])
    assert gw.call("testsvc", "thing", "list", fn) == ["ok"]
    assert fn.calls == 3
    assert total_calls(verb="list", service="testsvc") - before == 3


def test_writes_are_not_retried_on_500_but_are_on_429():
    gw = Gateway(conn=None, retry_budget=5)
    fn = Flaky([http_error(500)])
    with pytest.raises(TransientError):
        gw.call("testsvc", "thing", "create", fn)
    assert fn.calls == 1
    fn = Flaky([http_error(429)])
    assert gw.call("testsvc", "thing", "create", fn) == ["ok"]


def test_missing_ok_returns_none_on_404():
    gw = Gateway(conn=None)
    assert (
        gw.call("testsvc", "thing", "delete", Flaky([os_exc.NotFoundException()]), missing_ok=True)
        is None
    )


def test_tags_fit_nova_rules():
    owner = T.Owner("0b5c6a3e-1111-4222-8333-444455556666", "a" * 63, "b" * 63)
    for tag in [
        *T.object_tags(owner, "health_monitor", port=65535, index=49, tmpl="abcdefabcdef"),
        owner.retained_tag,
    ]:
        assert len(tag) <= 60 and "/" not in tag and "," not in tag
    with pytest.raises(ValueError):
        T.check_tag("a/b")


CLOUDS = """
clouds:
  demo:
    auth: {auth_url: http://127.0.0.1:5000/v3, username: u, password: s3cr3t-pw,
           project_name: p, user_domain_name: Default, project_domain_name: Default}
    region_name: RegionOne
"""


def test_credentials_errors_say_what_is_wrong_without_the_password():
    with pytest.raises(CredentialsError) as err:
        parse_cloud(CLOUDS, "prod")
    assert "'prod' is not in" in err.value.message and "demo" in err.value.message
    with pytest.raises(CredentialsError) as err:
        parse_cloud("clouds: {demo: {auth: {password: s3cr3t-pw\n", "demo")
    assert "not valid YAML" in err.value.message
    assert "s3cr3t" not in err.value.message


def test_connection_cache_reuses_while_the_entry_is_unchanged():
    cache = ConnectionCache()
    first = cache.get("secret-uid", "1", CLOUDS, "demo")
    assert cache.get("secret-uid", "1", CLOUDS, "demo") is first
    # a new resourceVersion with the same entry (a label, the in-use finalizer): same gateway
    assert cache.get("secret-uid", "2", CLOUDS, "demo") is first
    rotated = CLOUDS.replace("s3cr3t", "n3w-s3cr3t")
    assert rotated != CLOUDS
    second = cache.get("secret-uid", "3", rotated, "demo")
    assert second is not first


def test_a_rotated_secret_does_not_break_the_passes_in_flight():
    """The replaced gateway stays usable for the grace period (it was closed at once, and a
    pass holding it failed with RuntimeError from its shut-down listing pool)."""
    cache = ConnectionCache(grace=60)
    first = cache.get("secret-uid", "1", CLOUDS, "demo")
    cache.get("secret-uid", "2", CLOUDS.replace("s3cr3t", "n3w-s3cr3t"), "demo")
    assert list(first._listers.map(lambda x: x * 2, [1, 2])) == [2, 4]


def test_connections_keep_enough_sockets_for_concurrent_calls():
    from flexinfra.cloud.connection import POOL_SIZE

    gateway = ConnectionCache().get("secret-uid", "1", CLOUDS, "demo")
    adapters = gateway.conn.session.session.adapters
    assert {scheme: a._pool_maxsize for scheme, a in adapters.items()} == {
        "http://": POOL_SIZE, "https://": POOL_SIZE}


class CountingLists:
    """A connection whose every list call returns nothing and is counted."""

    def __init__(self):
        self.lists = 0

    def __getattr__(self, proxy):
        outer = self

        class Proxy:
            def __getattr__(self, method):
                def call(*args, **kwargs):
                    outer.lists += 1
                    return []
                return call
        return Proxy()


def test_inventory_freshness_is_per_owner_and_refreshes_are_shared():
    conn = CountingLists()
    gw = Gateway(conn=conn, inventory_ttl=60)
    per_refresh = len(Gateway.LISTS)
    gw.inventory(owner_uid="a")
    assert conn.lists == per_refresh
    gw.inventory(owner_uid="b")  # young enough, nobody wrote: shared
    assert conn.lists == per_refresh
    gw.invalidate("a")  # site a acted: only a needs a newer listing
    gw.inventory(owner_uid="b")
    assert conn.lists == per_refresh
    gw.inventory(owner_uid="a")
    assert conn.lists == 2 * per_refresh
    gw.invalidate("a")
    gw.invalidate("b")  # both acted: one refresh started after both serves both
    gw.inventory(owner_uid="a")
    gw.inventory(owner_uid="b")
    assert conn.lists == 3 * per_refresh
    gw.invalidate()  # global: everyone refreshes
    gw.inventory(owner_uid="c")
    assert conn.lists == 4 * per_refresh


def test_a_site_that_only_waits_re_lists_only_what_moves_by_itself():
    conn = CountingLists()
    gw = Gateway(conn=conn, inventory_ttl=60)
    gw.inventory(owner_uid="a")
    before = conn.lists
    gw.invalidate("a", Gateway.WAITING_KINDS)
    view = gw.inventory(owner_uid="a")
    assert conn.lists - before == len(Gateway.WAITING_KINDS) == view.calls
    assert set(view.objects) == {kind for kind, *_ in Gateway.LISTS}


def test_fresh_listings_are_shared_by_concurrent_waiters():
    import threading
    import time

    class SlowLists(CountingLists):
        def __getattr__(self, proxy):
            time.sleep(0.05)
            return super().__getattr__(proxy)

    conn = SlowLists()
    gw = Gateway(conn=conn, inventory_ttl=60)
    after = time.monotonic()
    threads = [threading.Thread(target=gw.fresh, args=("load_balancer", after))
               for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert conn.lists == 1  # ten waiters, one listing started after they asked
    gw.fresh("load_balancer", time.monotonic())
    assert conn.lists == 2  # asking for a newer one lists again


def test_calls_in_flight_are_capped_per_service():
    import threading
    import time

    gw = Gateway(conn=None, rate=1000, burst=1000, concurrency=3)
    inflight = {"network": 0, "compute": 0}
    peak = {"network": 0, "compute": 0}
    lock = threading.Lock()

    def slow(service):
        with lock:
            inflight[service] += 1
            peak[service] = max(peak[service], inflight[service])
        time.sleep(0.05)
        with lock:
            inflight[service] -= 1

    threads = [
        threading.Thread(target=gw.call, args=(svc, "x", "get", slow, svc))
        for svc in ("network", "compute") for _ in range(12)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == {"network": 3, "compute": 3}  # each service its own three slots


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (http_error(403, "Quota exceeded for instances"), "quota_exceeded"),
        (http_error(400, "Flavor m1.gone could not be found."), "not_found"),
        (http_error(400, "Invalid input for cidr"), "bad_request"),
        (http_error(404, "Network x could not be found"), "not_found"),
        (http_error(409, "Security group rule already exists"), "conflict"),
        (http_error(429), "throttled"),
        (http_error(503), "server_error"),
        (ksa_exc.ConnectFailure("refused"), "unreachable"),
    ],
)
def test_errors_carry_a_code_decisions_read(exc, code):
    assert classify(exc, "create").code == code


class NeutronRefusing:
    """A create that refuses tags in its body (400), or refuses everything (bad request)."""

    def __init__(self, refuse_all: bool = False) -> None:
        self.refuse_all, self.calls = refuse_all, []

    def __call__(self, **attrs):
        self.calls.append(sorted(attrs))
        if "tags" in attrs or self.refuse_all:
            raise http_error(400, "Invalid input")
        return {"id": "net-1"}


def test_neutron_tags_on_create_are_learnt_from_codes_not_words():
    gw = Gateway(conn=None)
    gw.sdk = lambda proxy, method: lambda *a, **kw: None  # set_tags
    create = NeutronRefusing()
    assert gw.neutron_create("network", create, ["t"], name="n") == {"id": "net-1",
                                                                      "tags": ["t"]}
    assert gw.neutron_tags_on_create is False and create.calls == [["name", "tags"], ["name"]]
    # a create refused for another reason leaves the question open for the next one
    gw = Gateway(conn=None)
    refusing = NeutronRefusing(refuse_all=True)
    with pytest.raises(CloudError):
        gw.neutron_create("network", refusing, ["t"], name="n")
    assert gw.neutron_tags_on_create is None


def test_tags_accepted_in_a_create_but_dropped_are_set_and_not_trusted_again():
    """This sandbox's Neutron refuses tags in a network's POST but takes and drops them in a
    port's: a tenant whose first create was a port learnt "yes" and made untagged ports."""
    gw = Gateway(conn=None)
    tagged = []
    gw.sdk = lambda proxy, method: lambda res, tags: tagged.append((res["id"], tags))
    ports = []

    def create_port(**attrs):
        ports.append(sorted(attrs))
        return {"id": f"port-{len(ports)}", "tags": []}  # tags accepted, then dropped

    first = gw.neutron_create("port", create_port, ["t"], name="p")
    assert first["tags"] == ["t"] and tagged == [("port-1", ["t"])]
    assert gw.neutron_tags_on_create is False
    gw.neutron_create("port", create_port, ["t"], name="p")
    assert ports[-1] == ["name"] and tagged[-1] == ("port-2", ["t"])  # create, then tag


def test_a_connection_that_lists_404_is_replaced():
    """A tenant-wide listing cannot be missing: the connection's endpoint is wrong (seen in
    the campaign after a version discovery timed out). The pass retries; the cache makes a
    new gateway instead of keeping the broken one for good."""
    cache = ConnectionCache()
    first = cache.get("secret-uid", "1", CLOUDS, "demo")

    def not_found(**_):
        raise os_exc.NotFoundException(message="404", http_status=404)

    first.sdk = lambda proxy, method: not_found
    with pytest.raises(TransientError):
        first.inventory(max_age=0)
    assert first.broken
    assert cache.get("secret-uid", "1", CLOUDS, "demo") is not first
