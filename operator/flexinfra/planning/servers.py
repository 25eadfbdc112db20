"""Servers as the fleet planner sees them: index, template hash, zone, address, failures.

A server's index (``flexinfra-index``) names its port and its volume, which outlive it: a
successor of the same index gets the same port (hence address) and the same volume.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from flexinfra.core import faults
from flexinfra.core import tags as T
from flexinfra.core.objects import CloudObject

ACTIVE = "ACTIVE"
BUILDING = {"BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING", "REBOOT", "HARD_REBOOT"}
FAILED = {"ERROR", "DELETED", "SOFT_DELETED", "SHELVED", "SHELVED_OFFLOADED", "UNKNOWN"}
#: servers of one index that may go to ERROR in a row before we stop re-creating them
MAX_SERVER_FAILURES = 3
#: on a server's port: ``<template hash>:<n>`` failures in a row, and the last failed server
FAILURES_PREFIX = "flexinfra-failures:"
FAILED_PREFIX = "flexinfra-failed:"


@dataclass(frozen=True)
class FleetIntent:
    """Servers from one recipe, spread over zones, kept at ``replicas``."""

    prefix: str
    replicas: int
    availability_zones: tuple[str, ...]
    image: str
    flavor: str
    user_data: str | None
    key_name: str | None
    server_metadata: Mapping[str, str]
    #: what a server is made of; a server with another hash is replaced
    template_hash: str
    volume_size_gb: int | None
    volume_type: str | None
    anti_affinity: str  # 'soft' | 'hard'
    #: a server serves once it is a member of the pool of each of these listener ports
    pool_ports: tuple[int, ...] = ()
    #: servers are ``<prefix>-<role>-<index>``
    role: str = "web"
    #: where image, flavor and boot script come from, as the user knows it (messages)
    recipe: str = "spec"
    #: every replica's port exists before the first server is created: a kind whose servers
    #: are configured with each other's addresses (Galera's gcomm:// list) knows them all
    #: before it renders any boot script. Ports are kept across replacement anyway, so a
    #: node's address never changes.
    ports_first: bool = False
    #: the boot script of the server at an index (overrides ``user_data``): per-node
    #: configuration (its name, address, certificate). Called only for servers created.
    user_data_for: Callable[[int], str | None] | None = field(default=None, compare=False)

    def boot_script(self, index: int) -> str | None:
        return self.user_data_for(index) if self.user_data_for else self.user_data

    @property
    def server_group_policy(self) -> str:
        return "anti-affinity" if self.anti_affinity == "hard" else "soft-anti-affinity"

    @property
    def in_place(self) -> bool:
        """Replace a server in place (the old one first, its successor takes its volume)
        rather than surge (the new one first): servers with data volumes do."""
        return bool(self.volume_size_gb)

    @property
    def server_prefix(self) -> str:
        return f"{self.prefix}-{self.role}-"

    def server_name(self, index: int) -> str:
        return f"{self.server_prefix}{index}"

    def volume_name(self, index: int) -> str:
        return f"{self.prefix}-vol-{index}"


@dataclass
class FleetObserved:
    servers: list[CloudObject] = field(default_factory=list)
    ports: dict[int, CloudObject] = field(default_factory=dict)  # by index
    volumes: dict[int, CloudObject] = field(default_factory=dict)  # by index
    server_groups: list[CloudObject] = field(default_factory=list)
    #: the load balancer side, by listener port: servers are drained from these first
    pools: dict[int, CloudObject] = field(default_factory=dict)
    members: dict[int, list[CloudObject]] = field(default_factory=dict)
    image_id: str | None = None
    flavor_id: str | None = None
    available_zones: frozenset[str] | None = None


@dataclass(frozen=True)
class ServerView:
    obj: CloudObject
    index: int
    template_hash: str | None
    az: str | None
    address: str | None  # fixed IP of its port

    @property
    def status(self) -> str:
        return self.obj.status or "UNKNOWN"

    @property
    def fault(self) -> faults.ServerFault:
        return faults.server_fault(self.obj.get("fault"))


def server_views(servers: list[CloudObject], ports: Mapping[int, CloudObject]) -> list[ServerView]:
    views = []
    for server in servers:
        index_text = T.tag_value(server.tags, T.INDEX_PREFIX) or server.name.rsplit("-", 1)[-1]
        try:
            index = int(index_text)
        except ValueError:
            index = -1
        port = ports.get(index)
        views.append(
            ServerView(
                obj=server,
                index=index,
                template_hash=T.tag_value(server.tags, T.TEMPLATE_PREFIX),
                az=server.get("availability_zone"),
                address=port_address(port) if port else None,
            )
        )
    return sorted(views, key=lambda v: v.index)


def port_address(port: CloudObject) -> str | None:
    fixed = port.get("fixed_ips") or []
    return fixed[0].get("ip_address") if fixed else None


def is_current(view: ServerView, intent: FleetIntent) -> bool:
    """Built from the current template, in an allowed zone, and not failed."""
    if view.status in FAILED or view.template_hash != intent.template_hash:
        return False
    return not intent.availability_zones or view.az in intent.availability_zones


def failure_record(port: CloudObject | None) -> tuple[str | None, int, str | None]:
    """(template hash, failures in a row, id of the last failed server) kept on a port."""
    if port is None:
        return None, 0, None
    value = T.tag_value(port.tags, FAILURES_PREFIX) or ""
    tmpl, _, count = value.rpartition(":")
    n = int(count) if count.isdigit() else 0
    return (tmpl or None), n, T.tag_value(port.tags, FAILED_PREFIX)


def failures_in_a_row(view: ServerView, port: CloudObject | None) -> int:
    """How many servers of this index failed in a row, ``view`` (in ERROR) included.

    Idempotent: the port remembers the last failed server it counted, so seeing the same
    ERROR server again on the next pass does not count it twice."""
    tmpl, n, last = failure_record(port)
    if last == view.obj.id:
        return n
    return n + 1 if tmpl == view.template_hash else 1


def choose_zone(intent: FleetIntent, current_zones: list[str | None]) -> str | None:
    """The allowed zone with the fewest current servers (ties: the order given in the spec)."""
    if not intent.availability_zones:
        return None
    return min(
        intent.availability_zones,
        key=lambda z: (current_zones.count(z), intent.availability_zones.index(z)),
    )


def members_by_address(members: Mapping[int, list[CloudObject]]) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {}
    for port, pool_members in members.items():
        for m in pool_members:
            found.setdefault(m.get("address"), set()).add(port)
    return found
