"""The one door to OpenStack: throttling, bounded retries, metrics, and a tenant inventory.

Every call goes through ``Gateway.call`` so that each is counted and timed
(``flexinfra_openstack_requests_total{service,resource,verb,outcome}``), throttled (token
bucket per tenant) and, when safe, retried: reads on any transient fault, writes only on 429/503
(the request was not processed). A write that times out is *not* retried here: the next pass
finds the tagged object, if it was created, and adopts it.

The inventory lists each kind once for the whole tenant and serves every site from that
snapshot, so drift checks cost O(kinds) list calls per tenant per period, not O(sites).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as os_exc

from flexinfra.cloud.adapters import LISTED, LISTED_FOR_TEARDOWN, WAITING_KINDS, Adapter, adapter
from flexinfra.cloud.errors import classify, status_of
from flexinfra.cloud.metrics import DURATION, REQUESTS, outcome_of
from flexinfra.cloud.snapshot import NEVER, Snapshot
from flexinfra.cloud.throttle import (
    AMBIGUOUS,
    NOT_PROCESSED,
    RETRYABLE_STATUS,
    TokenBucket,
    retry_after_of,
)
from flexinfra.core.errors import ErrorCode, FlexinfraError, TransientError
from flexinfra.core.kinds import Kind
from flexinfra.core.objects import CloudObject

log = logging.getLogger(__name__)

def _has_tags(obj: Any, tags: list[str]) -> bool:
    have = obj.get("tags") if isinstance(obj, dict) else getattr(obj, "tags", None)
    return set(tags) <= set(have or [])


class Gateway:
    """One tenant (one credentials Secret version): connection, throttle, inventory."""

    def __init__(
        self,
        conn: Any,
        *,
        label: str = "",
        rate: float = 20.0,
        burst: int = 40,
        concurrency: int = 8,
        inventory_ttl: float = 30.0,
        retry_budget: float = 3.0,
    ) -> None:
        self.conn = conn
        self.label = label
        self.bucket = TokenBucket(rate, burst)
        #: calls in flight per service: 50 sites building at once would otherwise open
        #: hundreds of requests on an API with a few workers, and a request queued there
        #: spends its timeout waiting (Octavia creates timed out at 60 s that way); queued
        #: here, it costs nothing and times out only once it is sent
        self._concurrency = concurrency
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._slots_lock = threading.Lock()
        self.inventory_ttl = inventory_ttl
        self.retry_budget = retry_budget
        #: kind -> (when its last tenant-wide listing started, the objects it found)
        self._listings: dict[str, tuple[float, list[CloudObject]]] = {}
        self._listing_locks = {kind: threading.Lock() for kind in self.KINDS}
        #: owner -> kind -> a listing of that kind must have started after this (monotonic)
        self._stale_after: dict[str, dict[str, float]] = {}
        self._stale_after_all: dict[str, float] = {}
        self._listers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="inventory")
        self._members: dict[str, tuple[frozenset[str], list[CloudObject]]] = {}
        self._lookups: dict[tuple[str, str], tuple[float, Any]] = {}
        #: does Neutron take tags in a create's body? None: not known yet (first create asks)
        self.neutron_tags_on_create: bool | None = None
        self._tags_probe = threading.Lock()
        self._identity: tuple[str, str] | None = None
        #: the connection is unusable (see ``_listing``): the cache makes a new gateway
        self.broken = False
        #: (kind, name) -> when a create of it failed in a way that may have happened
        #: (``reconcile.executor.Executor._create_once``)
        self.uncertain_creates: dict[tuple[str, str], float] = {}

    # --- the one call path ---------------------------------------------------------------------
    def call(
        self,
        service: str,
        resource: str,
        verb: str,
        fn: Callable[..., Any],
        *args: Any,
        missing_ok: bool = False,
        found: Callable[[], Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``fn`` throttled, timed and counted; retry when safe; map errors.

        ``missing_ok``: a 404 returns None (a delete of something already gone is done).

        Retries: reads and deletes on any transient fault; any call on 429/503 (the service
        refused before acting). A write that failed with 500/502/504 may have happened (the
        create ran twice that way): it is retried only when ``found`` (a lookup of the object
        by its tags, from the adapter) says it did not, and what ``found`` returns is the
        result otherwise. A write that timed out is not retried here: the next pass lists
        afresh and finds it by its tags; a copy made anyway is removed
        (``reconcile.duplicates``). ``Retry-After`` is honoured as the cloud says it; past
        the retry budget, the error carries it (the pass comes back then).
        """
        idempotent = verb in ("list", "get", "find", "delete")
        deadline = time.monotonic() + self.retry_budget
        attempt = 0
        while True:
            attempt += 1
            self.bucket.take()
            started = time.monotonic()
            error: BaseException | None = None
            try:
                with self._slot(service):
                    started = time.monotonic()  # time the call, not the wait for a slot
                    result = fn(*args, **kwargs)
                    if verb == "list" and not isinstance(result, list):
                        result = list(result)  # pagination happens here: count it in this call
                return result
            except os_exc.NotFoundException as exc:
                error = exc
                if missing_ok:
                    return None
                raise classify(exc, f"{verb} {resource}") from None
            except (os_exc.SDKException, ksa_exc.ClientException, OSError) as exc:
                error = exc
                status = status_of(exc)
                retry_after = retry_after_of(exc)
                delay = retry_after if retry_after is not None else min(0.5 * 2 ** (attempt - 1),
                                                                        2.0)
                if idempotent:
                    transient = status in RETRYABLE_STATUS or status is None or status >= 500
                elif status in NOT_PROCESSED:
                    transient = True
                elif status in AMBIGUOUS and found is not None:
                    time.sleep(min(delay, 1.0))  # let the service finish what it was doing
                    made = found()
                    if made is not None:
                        log.warning("%s %s %s answered %s but happened: using the object "
                                    "found by its tags", service, resource, verb, status)
                        return made
                    transient = True
                else:
                    transient = False
                if transient and time.monotonic() + delay < deadline:
                    log.info(
                        "%s %s %s: %s; retry %d in %.1fs",
                        service,
                        resource,
                        verb,
                        type(exc).__name__,
                        attempt,
                        delay,
                    )
                    time.sleep(delay)
                    continue
                err = classify(exc, f"{verb} {resource}")
                if retry_after is not None and isinstance(err, TransientError):
                    err.retry_after = max(err.retry_after or 0.0, retry_after)
                raise err from None
            finally:
                elapsed = time.monotonic() - started
                DURATION.labels(service, resource, verb).observe(elapsed)
                REQUESTS.labels(service, resource, verb, outcome_of(error)).inc()

    def _slot(self, service: str) -> threading.BoundedSemaphore:
        with self._slots_lock:
            if service not in self._slots:
                self._slots[service] = threading.BoundedSemaphore(self._concurrency)
            return self._slots[service]

    # --- inventory -----------------------------------------------------------------------------
    #: (kind, adapter) of what every inventory lists, in listing order (from the adapters)
    LISTS: tuple[tuple[Kind, Adapter], ...] = tuple((a.kind, a) for a in LISTED)
    KINDS: tuple[Kind, ...] = tuple(a.kind for a in LISTED_FOR_TEARDOWN)
    #: what a site that only waits on the cloud (servers building, a load balancer PENDING_*)
    #: needs to see again: the network side changes only when someone writes to it
    WAITING_KINDS = WAITING_KINDS

    def inventory(
        self,
        max_age: float | None = None,
        *,
        with_snapshots: bool = False,
        owner_uid: str | None = None,
    ) -> Snapshot:
        """The tenant view: each kind listed tenant-wide, re-listed only when older than
        ``max_age`` (default: the TTL) or than the last ``invalidate`` of that kind that
        concerns ``owner_uid``.

        Freshness is per owner and per kind: a site that just acted needs listings started
        after its own writes, not after every other site's, and a site that only waits on its
        servers needs the servers listed again, not the networks. One listing serves every
        site whose marker it postdates, so N busy sites share refreshes instead of each
        re-listing the whole tenant on every pass. Stale kinds are listed in parallel.
        """
        max_age = self.inventory_ttl if max_age is None else max_age
        now = time.monotonic()
        listed = LISTED_FOR_TEARDOWN if with_snapshots else LISTED
        owner_marks = self._stale_after.get(owner_uid, {}) if owner_uid else {}
        wanted = {
            a.kind: max(
                now - max_age,
                owner_marks.get(a.kind, NEVER),
                self._stale_after_all.get(a.kind, NEVER),
            )
            for a in listed
        }
        stale = [a for a in listed if self._listings.get(a.kind, (NEVER, []))[0] <= wanted[a.kind]]
        calls = list(self._listers.map(lambda a: self._listing(a, wanted[a.kind])[2], stale))
        view = Snapshot(calls=sum(calls))
        for a in listed:
            view.listed_at[a.kind], view.objects[a.kind] = self._listings[a.kind]
        return view

    def fresh(self, kind: Kind | str, after: float) -> list[CloudObject]:
        """Every object of ``kind`` in the tenant, from a listing started after ``after``.

        Concurrent callers share one listing: whoever waits for the lock finds the listing
        the previous holder made and uses it if it is recent enough. So N sites waiting on
        their load balancers cost one list call per poll, not N GETs.
        """
        return self._listing(adapter(kind), after)[1]

    def _listing(self, a: Adapter, after: float) -> tuple[float, list[CloudObject], int]:
        with self._listing_locks[a.kind]:
            listed_at, objects = self._listings.get(a.kind, (NEVER, []))
            if listed_at > after:
                return listed_at, objects, 0
            started = time.monotonic()
            try:
                items = self.call(a.service, a.kind, "list", self.sdk(a.proxy, a.lister),
                                  **a.list_query)
            except FlexinfraError as err:
                if err.code is not ErrorCode.NOT_FOUND:
                    raise
                # a tenant-wide collection is never missing: the connection's endpoint is
                # wrong (found by the campaign: a version discovery that timed out left a
                # connection listing a path that does not exist, for good). Reconnect.
                self.broken = True
                raise TransientError(f"list {a.kind}: the endpoint answered 404 for a listing; "
                                     "reconnecting; will retry",
                                     code=ErrorCode.UNREACHABLE) from None
            objects = [a.to_object(item) for item in items]
            self._listings[a.kind] = (started, objects)
            if a.kind is Kind.POOL:  # members of pools that are gone need no memory
                ids = {pool.id for pool in objects}
                for gone in [pid for pid in self._members if pid not in ids]:
                    del self._members[gone]
            return started, objects, 1

    def sdk(self, proxy: str, method: str) -> Callable[..., Any]:
        """openstacksdk's ``conn.<proxy>.<method>``, resolved lazily: the first access
        authenticates and discovers the endpoint, and its faults must go through ``call``
        like any other. The only way to openstacksdk, for the adapters."""
        return lambda *a, **kw: getattr(getattr(self.conn, proxy), method)(*a, **kw)

    def invalidate(self, owner_uid: str | None = None, kinds: Iterable[str] | None = None) -> None:
        """Something changed (we acted, or we wait on the cloud): the owner's next read needs
        listings of ``kinds`` (default: all) started from now on; without an owner, every
        reader does."""
        now = time.monotonic()
        marks = (
            self._stale_after_all
            if owner_uid is None
            else self._stale_after.setdefault(owner_uid, {})
        )
        for kind in self.KINDS if kinds is None else kinds:
            marks[kind] = now

    def forget_owner(self, owner_uid: str) -> None:
        """The owner is gone (its teardown finished): drop its freshness markers, which would
        otherwise pile up, one set per deleted object, for the life of the process."""
        self._stale_after.pop(owner_uid, None)

    def members(self, pool: CloudObject, refresh: bool = False) -> list[CloudObject]:
        """Members of a pool; listed only when the pool's member IDs changed since last time
        (or ``refresh``: their operating status is wanted, the pool not being ONLINE).

        Octavia has no tenant-wide member list, but every pool lists its member IDs, so an
        idle tenant whose pools are ONLINE costs no member calls at all.
        """
        ids = frozenset(m["id"] for m in pool.get("members") or [])
        cached = self._members.get(pool.id)
        if cached is not None and cached[0] == ids and not refresh:
            return cached[1]
        if not ids:
            self._members[pool.id] = (ids, [])
            return []
        member = adapter(Kind.MEMBER)
        items = self.call(member.service, member.kind, "list",
                          self.sdk(member.proxy, "members"), pool.id)
        members = [member.to_object(m) for m in items]
        self._members[pool.id] = (frozenset(m.id for m in members), members)
        return members

    def forget_members(self, pool_id: str) -> None:
        """A member of this pool was changed in place (same IDs, other options): its next
        listing must not come from the cache."""
        self._members.pop(pool_id, None)

    # --- lookups (long-lived, cached) ----------------------------------------------------------
    def _cached(self, kind: str, key: str, ttl: float, fetch: Callable[[], Any]) -> Any:
        hit = self._lookups.get((kind, key))
        if hit is not None and time.monotonic() - hit[0] < ttl:
            return hit[1]
        value = fetch()
        self._lookups[(kind, key)] = (time.monotonic(), value)
        return value

    def forget_lookups(self) -> None:
        """A create refused as ``NOT_FOUND`` means the cloud changed under the cache."""
        self._lookups.clear()

    def find_image_id(self, name_or_id: str) -> str | None:
        def fetch() -> str | None:
            image = self.call(
                "image",
                "image",
                "find",
                self.sdk("image", "find_image"),
                name_or_id,
                ignore_missing=True,
            )
            return image.id if image is not None else None

        return self._cached("image", name_or_id, 300, fetch)

    def find_flavor(self, name_or_id: str) -> Any:
        def fetch() -> Any:
            return self.call(
                "compute",
                "flavor",
                "find",
                self.sdk("compute", "find_flavor"),
                name_or_id,
                ignore_missing=True,
            )

        return self._cached("flavor", name_or_id, 300, fetch)

    def availability_zones(self) -> frozenset[str]:
        def fetch() -> frozenset[str]:
            zones = self.call(
                "compute",
                "availability_zone",
                "list",
                self.sdk("compute", "availability_zones"),
            )
            return frozenset(z.name for z in zones if (z.state or {}).get("available", True))

        return self._cached("az", "", 300, fetch)

    def compute_limits(self) -> Any:
        return self.call("compute", "limits", "get", self.sdk("compute", "get_limits"))

    def network_quota(self) -> Any:
        def fetch() -> Any:
            conn = self.conn
            return conn.network.get_quota(conn.current_project_id, details=True)

        return self.call("network", "quota", "get", fetch)

    def load_balancer_quota(self, max_age: float = 60) -> Any:
        """Octavia's limits only (-1 or None: unlimited); it does not say what is used.

        Limits change rarely and every load balancer step of every site checks them, so a
        read is kept ``max_age`` seconds (what is used comes from the inventory, always
        current).
        """

        def fetch() -> Any:
            conn = self.conn
            return self.call(
                "load-balancer",
                "quota",
                "get",
                lambda: conn.load_balancer.get_quota(conn.current_project_id),
            )

        return self._cached("octavia-quota", "", max_age, fetch)

    def volume_quota(self) -> Any:
        """Cinder's limits, with ``usage`` and ``reservation`` per quota name."""

        def fetch() -> Any:
            conn = self.conn
            return conn.block_storage.get_quota_set(conn.current_project_id, usage=True)

        return self.call("block-storage", "quota", "get", fetch)

    # --- writes used by the executor ---------------------------------------------------------
    def neutron_create(
        self, kind: str, method: Callable[..., Any], tags: list[str] | None,
        found: Callable[[], Any] | None = None, **attrs: Any,
    ) -> Any:
        """Create with tags in the body (atomic) where Neutron takes them; else create, then
        tag (a crash in between leaves an untagged object with our name: adopted next pass).

        Which one is learnt once per tenant, by the first create; the creates that come
        meanwhile wait for the answer rather than all being refused with a 400. A create
        with tags in its body is believed only when what it returns carries them: a Neutron
        may refuse them for networks (400) yet accept and drop them for ports, so a tenant
        whose first create was a port learnt "yes" and made every port untagged (found by
        the takeover test: the teardown then left the port and its subnet behind). Any sign
        of "no" switches the tenant to create-then-tag for good.
        """
        if tags and self.neutron_tags_on_create is None:
            with self._tags_probe:
                if self.neutron_tags_on_create is None:
                    try:
                        created = self.call("network", kind, "create", method, tags=tags,
                                            found=found, **attrs)
                    except FlexinfraError as err:
                        if err.code is not ErrorCode.BAD_REQUEST:
                            raise
                    else:
                        self.neutron_tags_on_create = _has_tags(created, tags)
                        return self._tagged(kind, created, tags)
                    # refused as a bad request: if the same create without tags goes
                    # through, the tags were what this Neutron refused (if it fails too, it
                    # raises, and the question stays open for the next create)
                    created = self.call("network", kind, "create", method, **attrs)
                    self.neutron_tags_on_create = False
                    return self._tagged(kind, created, tags)
        if tags and self.neutron_tags_on_create:
            created = self.call("network", kind, "create", method, tags=tags, found=found,
                                **attrs)
            if not _has_tags(created, tags):
                self.neutron_tags_on_create = False
            return self._tagged(kind, created, tags)
        created = self.call("network", kind, "create", method, **attrs)
        return self._tagged(kind, created, tags)

    def _tagged(self, kind: str, created: Any, tags: list[str] | None) -> Any:
        """``created`` with ``tags`` on it (set now if the create did not put them)."""
        if tags and not _has_tags(created, tags):
            self.call("network", kind, "tag", self.sdk("network", "set_tags"), created, tags)
            if isinstance(created, dict):
                created = {**created, "tags": list(tags)}
            else:
                with contextlib.suppress(Exception):  # an SDK resource: keep what we know
                    created.tags = list(tags)
        return created

    def identity(self) -> tuple[str, str]:
        """(auth URL, project ID) of the tenant: what an object's resources are bound to. The
        project comes from Keystone (the token), so a clouds.yaml that names the same project
        differently still matches."""
        if self._identity is None:
            conn = self.conn
            config = getattr(conn, "config", None)
            auth = getattr(config, "auth", None) or {}
            auth_url = str(auth.get("auth_url") or "").rstrip("/")
            project = self.call("identity", "project", "get", lambda: conn.current_project_id)
            self._identity = (auth_url, str(project))
        return self._identity

    def close(self) -> None:
        self._listers.shutdown(wait=False)
        with contextlib.suppress(Exception):  # closing must never fail a reconcile
            self.conn.close()


__all__ = ["Gateway", "Snapshot"]
