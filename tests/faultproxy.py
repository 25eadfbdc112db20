"""A small fault-injecting HTTP proxy in front of a real OpenStack service.

Point a test clouds.yaml at it with an endpoint override (``network_endpoint_override:
http://127.0.0.1:<port>``); every request is forwarded to the real service unless a rule
matches, in which case the proxy answers with an error status (500, 409, 429 ...), or stalls
(``timeout``: the client's read times out, nothing reaches the service), or forwards and then
stalls (``slow_ok``: the service DID act, the client still times out — the nasty case that
adoption by tag must handle). Nothing is stubbed: the cloud behind it is the real one.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Fault:
    method: str  # "POST", or "*" for any
    path: str  # regex searched in the request path
    status: int | None = 500  # None with stall
    stall: float = 0.0  # seconds to hang before answering (or closing)
    forward_first: bool = False  # forward to the real service, then stall / answer
    times: int = 1  # how many matching requests to hit; -1 = forever
    body: str = '{"error": "injected by faultproxy"}'
    headers: dict[str, str] = field(default_factory=dict)
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            (self.method in ("*", method))
            and re.search(self.path, path) is not None
            and (self.times < 0 or self.hits < self.times)
        )


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.faults: list[Fault] = []
        self.seen: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def inject(self, fault: Fault) -> Fault:
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()

    def _take(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    def _forward(self, method: str, path: str, headers, body: bytes | None):
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=120)
        out = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection")}
        out["Host"] = f"{self.upstream_host}:{self.upstream_port}"
        conn.request(method, path, body=body, headers=out)
        response = conn.getresponse()
        data = response.read()
        return response.status, response.getheaders(), data

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                fault = proxy._take(self.command, self.path)
                status, headers, data = None, [], b""
                if fault is None or fault.forward_first:
                    status, headers, data = proxy._forward(
                        self.command, self.path, self.headers, body
                    )
                if fault is not None:
                    if fault.stall:
                        time.sleep(fault.stall)
                    if fault.status is None:
                        proxy.seen.append((self.command, self.path, 0))
                        self.close_connection = True
                        return
                    if not fault.forward_first:
                        status, data = fault.status, fault.body.encode()
                        headers = [("Content-Type", "application/json"), *fault.headers.items()]
                proxy.seen.append((self.command, self.path, status))
                self.send_response(status)
                for key, value in headers:
                    if key.lower() in ("transfer-encoding", "connection", "content-length"):
                        continue
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _any

        return Handler
