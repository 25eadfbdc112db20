"""The two closed vocabularies of a plan: what kind of OpenStack object, and what to do to it.

They are ``StrEnum``s so that logs, Events, metrics labels and ``flexinfra plan`` print the
same words as before (``create load_balancer ...``), while code compares members, not text.
"""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    """An OpenStack object kind; ``cloud.adapters`` holds what the operator knows of each."""

    NETWORK = "network"
    SUBNET = "subnet"
    ROUTER = "router"
    ROUTER_INTERFACE = "router_interface"
    PORT = "port"
    SECURITY_GROUP = "security_group"
    SECURITY_GROUP_RULE = "security_group_rule"
    FLOATING_IP = "floating_ip"
    SERVER = "server"
    SERVER_GROUP = "server_group"
    VOLUME = "volume"
    SNAPSHOT = "snapshot"
    LOAD_BALANCER = "load_balancer"
    LISTENER = "listener"
    POOL = "pool"
    HEALTH_MONITOR = "health_monitor"
    MEMBER = "member"

    @property
    def label(self) -> str:
        """How people read it (Events, messages): ``load balancer``."""
        return self.value.replace("_", " ")


class Verb(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    ADOPT = "adopt"  # tag an object found without our tags (a create whose tagging was lost)
    TAG = "tag"  # set an object's tags (e.g. a failure count on a port)
    ATTACH = "attach"  # a volume to a server
    ASSOCIATE = "associate"  # a floating IP to a port

    @property
    def past(self) -> str:
        """The Event reason for a done action: ``Created``, ``Adopted``, ..."""
        return _PAST[self]


_PAST = {
    Verb.CREATE: "Created",
    Verb.UPDATE: "Updated",
    Verb.DELETE: "Deleted",
    Verb.ADOPT: "Adopted",
    Verb.TAG: "Tagged",
    Verb.ATTACH: "Attached",
    Verb.ASSOCIATE: "Associated",
}
