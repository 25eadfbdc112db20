"""Where the golden harness finds the WebSite entry points: the only imports the refactor
may change (the recorded behaviour must not)."""

from flexinfra.kinds.website import (  # noqa: F401
    Owner,
    plan_website,
    reconcile_website,
    teardown_website,
)


def kind_facts() -> list[str]:
    """What the operator knows about each OpenStack kind, one line per kind (read from the
    tables spread over the code before the refactor; from the adapters after it)."""
    from flexinfra.cloud.adapters import ADAPTERS, LISTED, TEARDOWN, WAITING_KINDS

    order = [a.kind for a in TEARDOWN]
    lines = []
    for kind in sorted(k for k, a in ADAPTERS.items()):
        a = ADAPTERS[kind]
        lister = f"{a.proxy}.{a.lister}{dict(a.list_query) or ''}" if a.lister else "None.None"
        # before the refactor only Neutron and Octavia kinds had a quota name in a table
        quota = a.quota if a.service in ("network", "load-balancer") else None
        lines.append(
            f"{kind}: list={lister} service={a.service if a.lister else None} "
            f"status={a.status_field} waiting={kind in WAITING_KINDS} "
            f"touches={sorted(k.value for k in a.touches)} quota={quota} "
            f"teardown={order.index(kind) if kind in order else None} "
            f"lb_lane={a.needs_active_lb}"
        )
    lines.append(f"inventory lists: {[a.kind.value for a in LISTED]}")
    return lines
