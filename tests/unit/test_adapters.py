"""The adapter registry is complete and consistent (what each adapter says is pinned by
golden/kinds.txt; this checks the registry's shape)."""

from __future__ import annotations

from flexinfra.cloud.adapters import ADAPTERS, LISTED, TEARDOWN, WAITING_KINDS, adapter
from flexinfra.core.kinds import Kind


def test_every_kind_has_one_adapter_that_says_it_is_that_kind():
    assert set(ADAPTERS) == set(Kind)
    assert all(a.kind is kind for kind, a in ADAPTERS.items())
    assert adapter("load_balancer") is ADAPTERS[Kind.LOAD_BALANCER]


def test_teardown_ranks_are_a_strict_order_and_listed_kinds_have_a_lister():
    ranks = [a.teardown_rank for a in TEARDOWN]
    assert ranks == sorted(set(ranks))
    assert all(a.lister for a in LISTED)
    assert {a.kind for a in LISTED} >= WAITING_KINDS


def test_what_needs_an_active_load_balancer_makes_it_busy_again():
    lane = {a.kind for a in ADAPTERS.values() if a.needs_active_lb}
    assert lane == {Kind.LISTENER, Kind.POOL, Kind.HEALTH_MONITOR, Kind.MEMBER}
    assert all(Kind.LOAD_BALANCER in ADAPTERS[k].touches for k in lane)
