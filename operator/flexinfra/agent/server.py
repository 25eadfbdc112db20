"""The agent's two listeners.

* **Control API** on ``api_port``: HTTPS only, TLS 1.2+, the server certificate signed by the
  cluster's CA, and the client must present a certificate signed by that same CA (anything
  else fails the handshake) **and** ``Authorization: Bearer <token>`` (compared in constant
  time; 401 otherwise). JSON in and out.
* **Health** on ``health_port``: plain HTTP for the load balancer's monitor, which can send
  neither a token nor a certificate. ``GET /health`` answers 200 when this node is Synced in a
  Primary component with ``wsrep_ready=ON``, else 503; it says nothing else (no version, no
  state names), and every other path is 404.

Routes (all JSON; errors are ``{"error": message, ...details}``):

    GET    /v1/status
    POST   /v1/recover                 mariadbd --wsrep-recover (mariadbd must be stopped)
    POST   /v1/start                   {"mode": "joiner"}
                                       {"mode": "new-cluster", "wait": s}
                                       {"mode": "bootstrap", "uuid": u, "seqno": n,
                                        "set_safe_to_bootstrap": bool, "wait": s}
    POST   /v1/stop                    clean shutdown; desired state -> stopped
    POST   /v1/pc-bootstrap            {"wait": s}: pc.bootstrap=YES on a non-Primary node
    PUT    /v1/databases/<name>        {"user", "password", "host"}: database + user + grant
    DELETE /v1/databases/<name>        {"user", "host"}
    PUT    /v1/root-password           {"password"}: root's password (local and remote)
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import re
import socket
import ssl
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .supervisor import OpError, Supervisor

log = logging.getLogger("flexinfra.agent")
MAX_BODY = 64 * 1024
_DB_PATH = re.compile(r"^/v1/databases/([A-Za-z0-9_]{1,64})$")


def server_context(ca_file: str, cert_file: str, key_file: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    ctx.load_verify_locations(cafile=ca_file)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class _TLSServer(ThreadingHTTPServer):
    """Handshakes in the request's own thread (a slow or bogus client cannot stall accept)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    max_connections = 32    # a client that never finishes its handshake holds one for 30 s

    def __init__(self, addr, handler, ctx: ssl.SSLContext, supervisor: Supervisor,
                 token: str):
        super().__init__(addr, handler)
        self.ctx = ctx
        self.supervisor = supervisor
        self.token_digest = hashlib.sha256(token.encode()).digest()
        self._slots = threading.BoundedSemaphore(self.max_connections)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            log.warning("refused a connection from %s: %d already open", client_address[0],
                        self.max_connections)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request, client_address):
        request.settimeout(30)
        try:
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log.info("TLS handshake refused from %s: %s", client_address[0],
                     getattr(e, "reason", None) or type(e).__name__)
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                tls.shutdown(socket.SHUT_RDWR)
            tls.close()


class _JsonHandler(BaseHTTPRequestHandler):
    server_version = "flexinfra-agent"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # request lines only: no headers, no bodies
        log.debug("%s %s", self.client_address[0], fmt % args)

    def _send(self, status: int, body: dict) -> None:
        data = (json.dumps(body, sort_keys=True) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        digest = hashlib.sha256(given.strip().encode()).digest()
        ok = hmac.compare_digest(digest, self.server.token_digest)
        return ok and scheme.lower() == "bearer"

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise OpError(413, "request body too large")
        if not length:
            return {}
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError as e:
            raise OpError(400, "body is not JSON") from e
        if not isinstance(body, dict):
            raise OpError(400, "body must be a JSON object")
        return body

    def _dispatch(self, method: str) -> None:
        if not self._authorised():
            # read and drop the body so the connection stays in sync, then refuse
            length = int(self.headers.get("Content-Length") or 0)
            if 0 < length <= MAX_BODY:
                self.rfile.read(length)
            log.warning("refused %s %s from %s: bad or missing token", method,
                        self.path.split("?")[0], self.client_address[0])
            self._send(401, {"error": "unauthorised"})
            return
        sup: Supervisor = self.server.supervisor
        path = self.path.split("?")[0]
        try:
            body = self._body() if method in ("POST", "PUT", "DELETE") else {}
            result = self._route(sup, method, path, body)
        except OpError as e:
            log.info("%s %s -> %d %s", method, path, e.status, e.message)
            self._send(e.status, {"error": e.message, **e.details})
            return
        except Exception as e:
            log.exception("%s %s failed", method, path)
            self._send(500, {"error": f"internal error: {type(e).__name__}"})
            return
        if method != "GET":
            log.info("%s %s -> 200", method, path)
        self._send(200, result)

    @staticmethod
    def _route(sup: Supervisor, method: str, path: str, body: dict) -> dict:
        wait = _num(body.get("wait", 0))
        if method == "GET" and path == "/v1/status":
            return sup.status()
        if method == "POST" and path == "/v1/recover":
            return sup.recover()
        if method == "POST" and path == "/v1/start":
            mode = body.get("mode")
            if mode == "joiner":
                return sup.start_joiner()
            if mode == "new-cluster":
                return sup.start_new_cluster(wait=wait)
            if mode == "bootstrap":
                uuid, seqno = body.get("uuid"), body.get("seqno")
                if not isinstance(uuid, str) or not isinstance(seqno, int) or seqno < 0:
                    raise OpError(400, "bootstrap needs uuid (string) and seqno (int >= 0)")
                return sup.start_bootstrap(uuid, seqno,
                                           bool(body.get("set_safe_to_bootstrap")), wait=wait)
            raise OpError(400, "mode must be joiner, new-cluster or bootstrap")
        if method == "POST" and path == "/v1/stop":
            return sup.stop()
        if method == "POST" and path == "/v1/pc-bootstrap":
            return sup.pc_bootstrap(wait=wait)
        if method == "PUT" and path == "/v1/root-password":
            return sup.set_root_password(str(body.get("password") or ""))
        m = _DB_PATH.match(path)
        if m and method == "PUT":
            return sup.ensure_database(m.group(1), str(body.get("user") or ""),
                                       str(body.get("password") or ""),
                                       str(body.get("host") or "%"))
        if m and method == "DELETE":
            return sup.drop_database(m.group(1), str(body.get("user") or ""),
                                     str(body.get("host") or "%"))
        raise OpError(404, "no such route")

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError) as e:
        raise OpError(400, "wait must be a number of seconds") from e


class _HealthHandler(BaseHTTPRequestHandler):
    server_version = "agent"
    sys_version = ""

    def log_message(self, fmt, *args):
        pass

    def _answer(self, head_only: bool) -> None:
        if self.path.split("?")[0] != "/health":
            status, text = HTTPStatus.NOT_FOUND, b"not found\n"
        elif self.server.supervisor.healthy():
            status, text = HTTPStatus.OK, b"OK\n"
        else:
            status, text = HTTPStatus.SERVICE_UNAVAILABLE, b"unavailable\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text)))
        self.send_header("Connection", "close")
        self.end_headers()
        if not head_only:
            self.wfile.write(text)

    def do_GET(self):
        self._answer(False)

    def do_HEAD(self):
        self._answer(True)


class _HealthServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, supervisor: Supervisor):
        super().__init__(addr, handler)
        self.supervisor = supervisor

    def finish_request(self, request, client_address):
        request.settimeout(5)
        super().finish_request(request, client_address)


def make_servers(cfg, supervisor: Supervisor, token: str):
    ctx = server_context(cfg.ca_file, cfg.cert_file, cfg.key_file)
    api = _TLSServer((cfg.listen, cfg.api_port), _JsonHandler, ctx, supervisor, token)
    health = _HealthServer((cfg.listen, cfg.health_port), _HealthHandler, supervisor)
    return api, health
