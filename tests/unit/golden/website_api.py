"""Where the golden harness finds the WebSite entry points: the only imports the refactor
may change (the recorded behaviour must not)."""

from flexinfra.reconcile.website import (  # noqa: F401
    Owner,
    plan_website,
    reconcile_website,
    teardown_website,
)


def kind_facts() -> list[str]:
    """What the operator knows about each OpenStack kind, one line per kind (read from the
    tables spread over the code before the refactor; from the adapters after it)."""
    from flexinfra.cloud.gateway import STATUS_FIELD, Gateway
    from flexinfra.planning.model import PlannedAction
    from flexinfra.reconcile.quota import NEUTRON, OCTAVIA
    from flexinfra.reconcile.teardown import ORDER
    from flexinfra.reconcile.website import TOUCHES

    listed = {e[0]: e[1:] for e in (*Gateway.LISTS, Gateway.SNAPSHOT_LIST)}
    kinds = sorted(set(TOUCHES) | set(listed) | set(ORDER))
    lines = []
    for kind in kinds:
        service, proxy, method, query = listed.get(kind, (None, None, None, None))
        quota = NEUTRON.get(kind) or OCTAVIA.get(kind)
        lines.append(
            f"{kind}: list={proxy}.{method}{query or ''} service={service} "
            f"status={STATUS_FIELD.get(kind, 'status')} waiting={kind in Gateway.WAITING_KINDS} "
            f"touches={sorted(TOUCHES.get(kind, []))} quota={quota} "
            f"teardown={ORDER.index(kind) if kind in ORDER else None} "
            f"lb_lane={PlannedAction('create', kind, 'x', 'y').needs_active_lb}"
        )
    lines.append(f"inventory lists: {[e[0] for e in Gateway.LISTS]}")
    return lines
