"""CPU seconds spent per program between two snapshots of /proc.

On a 2-core machine the cloud is CPU-bound well before 10 sites, so apply→Ready time is
mostly a matter of how much CPU the operator makes the cloud (and itself) burn. This shows
where it goes. Processes that start and end between two snapshots are not seen.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")

#: first match wins: a substring of the command line -> the label it is counted under
LABELS = (
    ("flexinfra run", "operator"),
    ("bench/run.py", "bench (baseline + kubectl client)"),
    ("nova-api", "nova-api"),
    ("nova-compute", "nova-compute"),
    ("nova-conductor", "nova-conductor"),
    ("nova-scheduler", "nova-scheduler"),
    ("neutron", "neutron"),
    ("octavia", "octavia"),
    ("cinder", "cinder"),
    ("keystone", "keystone"),
    ("glance", "glance"),
    ("placement", "placement"),
    ("mariadbd", "mariadb"),
    ("mysqld", "mariadb"),
    ("beam", "rabbitmq"),
    ("kube-apiserver", "kube-apiserver"),
    ("etcd", "etcd"),
)


def _label(cmdline: str) -> str:
    for needle, label in LABELS:
        if needle in cmdline:
            return label
    return "other"


def snapshot() -> dict[int, tuple[str, float]]:
    """pid -> (label, CPU seconds so far)."""
    out: dict[int, tuple[str, float]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(proc.name)] = (_label(cmdline), (int(fields[11]) + int(fields[12])) / TICK)
    return out


def spent(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> Counter:
    """CPU seconds per label between the snapshots (new processes count from zero)."""
    total: Counter = Counter()
    for pid, (label, seconds) in after.items():
        start = before.get(pid, (label, 0.0))[1]
        total[label] += max(0.0, seconds - start)
    return total


def summary(cpu: Counter, top: int = 6) -> str:
    parts = [f"{label}={seconds:.0f}" for label, seconds in cpu.most_common(top) if seconds >= 1]
    return f"total={sum(cpu.values()):.0f}s (" + ", ".join(parts) + ")"
