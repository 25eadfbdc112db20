"""Traffic to the sandbox's cloud, only ever to addresses on this machine, always bounded.

Every request the demo, the tests and the benchmarks send to a floating IP, a VIP or a fixed
IP goes through ``check_local`` first: ``ip route get`` must resolve the address on one of
the sandbox's links (or loopback), never via a default gateway. A load is a ``Client``: a
fixed number of requests at a fixed rate, with a deadline, that stops by itself and says
how many failed and who answered.
"""

from __future__ import annotations

import collections
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from flexinfra_sandbox.dataplane import default_gateways


class NotLocal(RuntimeError):
    """The address would leave this machine: nothing is sent."""


def check_local(address: str) -> str:
    """The route to ``address`` if it stays on this machine; else raise ``NotLocal``."""
    p = subprocess.run(["ip", "-4", "route", "get", address], capture_output=True, text=True)
    route = p.stdout.strip()
    words = route.split()
    if p.returncode != 0:
        raise NotLocal(f"{address}: no route ({p.stderr.strip()})")
    via = words[words.index("via") + 1] if "via" in words else None
    dev = words[words.index("dev") + 1] if "dev" in words else ""
    if via in default_gateways() or not (dev == "lo" or dev.startswith("fx")):
        raise NotLocal(f"{address} would leave this machine: {route.splitlines()[0]}")
    return route.splitlines()[0]


def fetch(url: str, timeout: float = 5.0) -> str:
    """GET ``url`` (checked local first); the body's first line."""
    check_local(urllib.parse.urlsplit(url).hostname or "")
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return (r.read().decode(errors="replace").strip().splitlines() or [""])[0]


@dataclass
class Result:
    total: int = 0
    failed: int = 0
    answers: collections.Counter = field(default_factory=collections.Counter)
    #: (seconds since start, error) of each failure
    failures: list[tuple[float, str]] = field(default_factory=list)

    def summary(self) -> str:
        who = ", ".join(f"{a} x{n}" for a, n in sorted(self.answers.items()))
        return f"{self.failed}/{self.total} failed; answered by: {who or 'nobody'}"


class Client:
    """A bounded client: ``count`` GETs of ``url``, one every ``interval`` seconds, each with
    ``timeout``, stopping at ``deadline`` seconds at the latest, or when ``stop()`` is called.
    Runs in a thread (``start``/``join``) or inline (``run``)."""

    def __init__(self, url: str, count: int = 600, interval: float = 0.2,
                 timeout: float = 2.0, deadline: float = 300.0):
        self.url, self.count, self.interval = url, count, interval
        self.timeout, self.deadline = timeout, deadline
        self.result = Result()
        #: time.monotonic() of the first request (failures are timed from it)
        self.started: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        check_local(urllib.parse.urlsplit(url).hostname or "")

    def run(self) -> Result:
        t0 = self.started = time.monotonic()
        for _ in range(self.count):
            if self._stop.is_set() or time.monotonic() - t0 > self.deadline:
                break
            started = time.monotonic()
            self.result.total += 1
            try:
                with urllib.request.urlopen(self.url, timeout=self.timeout) as r:
                    body = r.read().decode(errors="replace").strip().splitlines()
                self.result.answers[body[0] if body else ""] += 1
            except (OSError, urllib.error.URLError) as e:
                self.result.failed += 1
                self.result.failures.append((round(started - t0, 2), str(e)))
            time.sleep(max(0.0, self.interval - (time.monotonic() - started)))
        return self.result

    def start(self) -> Client:
        self._thread = threading.Thread(target=self.run, name="bounded-client", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Result:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + self.interval + 5)
        return self.result
