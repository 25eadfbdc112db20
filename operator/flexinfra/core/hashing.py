"""One way to turn what something is made of into a short, stable hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def content_hash(material: Mapping[str, Any], length: int = 12) -> str:
    """``length`` hex chars of SHA-256 over the sorted JSON of ``material``.

    Stable across releases on purpose: a server's template hash is in its tags, and a
    different hash for the same material would replace every server of every site."""
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:length]
