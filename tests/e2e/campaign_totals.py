"""The fault campaign's totals, printed at the end of the run (tests/e2e/conftest.py)."""

from __future__ import annotations

import json
import os
from collections import Counter

TOTALS: Counter[str] = Counter()
#: what each bad input was refused by
REFUSED: list[tuple[str, str]] = []


def add(key: str, n: int = 1) -> None:
    TOTALS[key] += n


def refused(what: str, by: str) -> None:
    TOTALS["bad inputs tried"] += 1
    TOTALS["bad inputs refused before any write"] += 1
    REFUSED.append((what, by))


def report() -> list[str]:
    if not TOTALS:
        return []
    keys = ["bad inputs tried", "bad inputs refused before any write", "faults injected",
            "crashes", "leaks found", "duplicates found"]
    lines = [f"{k}: {TOTALS.get(k, 0)}" for k in keys]
    lines += [f"  {k}: {v}" for k, v in sorted(TOTALS.items()) if k not in keys]
    lines += [f"  refused: {what} ({by})" for what, by in REFUSED]
    path = os.environ.get("FLEXINFRA_CAMPAIGN_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump({"totals": dict(TOTALS), "refused": REFUSED}, f, indent=1)
    return lines
