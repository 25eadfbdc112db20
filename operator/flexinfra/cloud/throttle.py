"""How fast and how often the gateway calls the cloud: the token bucket, which answers may
be retried, and how long the cloud asks us to wait."""

from __future__ import annotations

import email.utils
import threading
import time

RETRYABLE_STATUS = {429, 502, 503, 504}
#: refused before the service acted: any call may be sent again
NOT_PROCESSED = {429, 503}
#: the service (or a proxy in front of it) may have acted: a write is checked first
AMBIGUOUS = {500, 502, 504}


class TokenBucket:
    """At most ``rate`` calls per second on average, bursts of ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> None:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            wait = 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate
            self.tokens -= 1
        if wait:
            time.sleep(wait)


def retry_after_of(exc: BaseException) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), capped at 10
    minutes (a broken header must not park a site for a day)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After") if response is not None else None
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), 600.0)


