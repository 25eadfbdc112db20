"""Owner tags and names: how an OpenStack object is known to belong to one custom resource.

Tags must fit Nova's rules (<= 60 chars, no ``/`` or ``,``), the strictest of the APIs that
have tags (Neutron, Nova >= 2.26, Octavia >= 2.5). Cinder has no tags: volumes carry the same
pairs as metadata. Nova server groups have neither: their name carries the owner UID.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

OWNER_PREFIX = "flexinfra-owner:"
ROLE_PREFIX = "flexinfra-role:"
INDEX_PREFIX = "flexinfra-index:"
TEMPLATE_PREFIX = "flexinfra-tmpl:"
PORT_PREFIX = "flexinfra-port:"
#: on a floating IP: keep the address when the site (or its LB) is re-created
RETAIN_TAG = "flexinfra-retain"
def name_prefix(namespace: str, name: str) -> str:
    """See :attr:`Owner.prefix`; also how another kind finds a name it did not make (a
    site looking for its GaleraCluster's network)."""
    base = f"fi-{namespace}-{name}"
    if "-" in namespace or "-" in name:
        digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:6]
        base = f"{base}-{digest}"
    return base


#: on a released-but-retained floating IP: which namespace/site may take it back
RETAINED_PREFIX = "flexinfra-retained:"
MAX_TAG = 60


@dataclass(frozen=True)
class Owner:
    """The Kubernetes object that owns a set of OpenStack objects."""

    uid: str
    namespace: str
    name: str
    kind: str = "WebSite"

    @property
    def prefix(self) -> str:
        """``fi-<namespace>-<name>``: the readable part of every object name.

        Joined with ``-``, a namespace or name that holds a ``-`` is ambiguous (``a-b`` + ``c``
        and ``a`` + ``b-c`` both give ``fi-a-b-c``): two owners would make objects of the
        same names, and adoption by name could take the other's. Then a short hash of
        ``namespace/name`` follows, which no other pair shares. Names without a ``-`` keep
        the plain form (three segments, which a hashed prefix never has).
        """
        return name_prefix(self.namespace, self.name)

    @property
    def owner_tag(self) -> str:
        return OWNER_PREFIX + self.uid

    @property
    def retained_tag(self) -> str:
        """Survives the UID: a re-created WebSite with the same namespace/name finds its IP."""
        digest = hashlib.sha256(f"{self.namespace}/{self.name}".encode()).hexdigest()[:24]
        return RETAINED_PREFIX + digest


def check_tag(tag: str) -> str:
    if len(tag) > MAX_TAG or "/" in tag or "," in tag:
        raise ValueError(f"tag {tag!r} breaks Nova's tag rules")
    return tag


def object_tags(owner: Owner, role: str, **extra: str | int) -> list[str]:
    """The full tag list of one object: owner, role and any extra ``key=value`` markers."""
    tags = [owner.owner_tag, ROLE_PREFIX + role]
    for key, value in sorted(extra.items()):
        tags.append(f"flexinfra-{key}:{value}")
    return [check_tag(t) for t in tags]


def metadata_tags(owner_uid: str, role: str, index: int) -> dict[str, str]:
    """The tag pairs as Cinder metadata (Cinder has no tags)."""
    return {
        OWNER_PREFIX.rstrip(":"): owner_uid,
        ROLE_PREFIX.rstrip(":"): role,
        INDEX_PREFIX.rstrip(":"): str(index),
    }


def tag_value(tags: frozenset[str] | list[str], prefix: str) -> str | None:
    for tag in tags:
        if tag.startswith(prefix):
            return tag[len(prefix) :]
    return None


def server_group_name(prefix: str, policy: str, owner_uid: str) -> str:
    """Nova server groups have no tags or metadata: the UID in the name is the owner key
    (``owns_by_name`` is the other half of that rule)."""
    return f"{prefix}-{policy}-{owner_uid}"


def owns_by_name(name: str, owner_uid: str) -> bool:
    return name.endswith("-" + owner_uid)


def has_owner(tags: frozenset[str] | list[str]) -> bool:
    """Whether any flexinfra owner tag is on the object (ours or another resource's)."""
    return any(t.startswith(OWNER_PREFIX) for t in tags)
