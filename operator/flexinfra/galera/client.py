"""The operator's client for the node agents: HTTPS with the operator's client certificate
(mutual TLS against the cluster's CA) and the bearer token, timeouts on every call.

Errors are typed, so callers decide on classes, never on message text:

* :class:`AgentUnreachable`: no answer (connection refused, timeout, TLS failure). For
  ``decide`` this is "agent not reachable" evidence, timed by the caller;
* :class:`AgentError`: the agent answered with an error; ``status`` is the HTTP status
  (409 = refused because of the node's state, 400 = bad request, 401 = token, 500 = failed).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import ssl
import tempfile
from urllib.parse import quote

from flexinfra.galera.credentials import ClusterCredentials

DEFAULT_TIMEOUT = 5.0


class AgentUnreachable(Exception):
    pass


class AgentError(Exception):
    def __init__(self, status: int, message: str, details: dict):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.details = details


def client_context(ca_pem: str, cert_pem: str, key_pem: str) -> ssl.SSLContext:
    """An SSL context holding the client key in memory (the files exist for microseconds:
    ``load_cert_chain`` only takes paths)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="fx-agent-tls-") as d:
        cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
        for path, text in ((cert, cert_pem), (key, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
        ctx.load_cert_chain(cert, key)
    return ctx


class _NamedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to an address but checks the certificate against a *name*: the node's name,
    which its certificate carries as a DNS SAN. Certificates then do not depend on
    addresses (a node's port, floating IP or NAT may change; its name does not)."""

    def __init__(self, address: str, port: int, *, tls_name: str, context: ssl.SSLContext,
                 timeout: float):
        super().__init__(address, port, context=context, timeout=timeout)
        self._tls_name = tls_name

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._tls_name)


class AgentClient:
    def __init__(self, address: str, ctx: ssl.SSLContext, token: str, port: int = 8443,
                 timeout: float = DEFAULT_TIMEOUT, server_name: str | None = None):
        """``server_name``: the name the agent's certificate must carry (the node's name);
        None: its address (the certificate must then list the address)."""
        self.address = address
        self.port = port
        self.timeout = timeout
        self.server_name = server_name
        self._ctx = ctx
        self._token = token

    @classmethod
    def for_cluster(cls, creds: ClusterCredentials, address: str, **kw) -> AgentClient:
        ctx = client_context(creds.ca_cert, creds.client_cert, creds.client_key)
        return cls(address, ctx, creds.token, **kw)

    def __repr__(self) -> str:
        return f"AgentClient({self.server_name or ''}@{self.address}:{self.port})"

    def _call(self, method: str, path: str, body: dict | None = None,
              timeout: float | None = None) -> dict:
        if self.server_name:
            conn: http.client.HTTPSConnection = _NamedHTTPSConnection(
                self.address, self.port, tls_name=self.server_name, context=self._ctx,
                timeout=timeout or self.timeout)
        else:
            conn = http.client.HTTPSConnection(self.address, self.port, context=self._ctx,
                                               timeout=timeout or self.timeout)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read(4 << 20)
        except (OSError, ssl.SSLError, http.client.HTTPException) as e:
            raise AgentUnreachable(f"{self.address}:{self.port}: {type(e).__name__}: {e}") from e
        finally:
            with contextlib.suppress(Exception):
                conn.close()
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {"error": "agent answered with something that is not JSON"}
        if resp.status != 200:
            message = payload.pop("error", resp.reason) if isinstance(payload, dict) else ""
            raise AgentError(resp.status, str(message),
                             payload if isinstance(payload, dict) else {})
        return payload

    # --- operations ------------------------------------------------------------------------
    def status(self) -> dict:
        return self._call("GET", "/v1/status")

    def recover(self, timeout: float = 330.0) -> dict:
        """``--wsrep-recover``: ``{"uuid", "seqno", "at"}``."""
        return self._call("POST", "/v1/recover", {}, timeout=timeout)

    def start_joiner(self, timeout: float = 330.0) -> dict:
        return self._call("POST", "/v1/start", {"mode": "joiner"}, timeout=timeout)

    def start_new_cluster(self, wait: float = 60.0) -> dict:
        return self._call("POST", "/v1/start", {"mode": "new-cluster", "wait": wait},
                          timeout=wait + 330.0)

    def start_bootstrap(self, uuid: str, seqno: int, set_safe_to_bootstrap: bool,
                        wait: float = 60.0) -> dict:
        body = {"mode": "bootstrap", "uuid": uuid, "seqno": seqno,
                "set_safe_to_bootstrap": set_safe_to_bootstrap, "wait": wait}
        return self._call("POST", "/v1/start", body, timeout=wait + 330.0)

    def stop(self, timeout: float = 150.0) -> dict:
        return self._call("POST", "/v1/stop", {}, timeout=timeout)

    def pc_bootstrap(self, wait: float = 10.0) -> dict:
        return self._call("POST", "/v1/pc-bootstrap", {"wait": wait}, timeout=wait + 30.0)

    def ensure_database(self, name: str, user: str, password: str, host: str = "%") -> dict:
        return self._call("PUT", f"/v1/databases/{quote(name, safe='')}",
                          {"user": user, "password": password, "host": host}, timeout=30.0)

    def drop_database(self, name: str, user: str, host: str = "%") -> dict:
        return self._call("DELETE", f"/v1/databases/{quote(name, safe='')}",
                          {"user": user, "host": host}, timeout=30.0)

    def set_root_password(self, password: str) -> dict:
        """MariaDB's root may log in with this password (locally by socket as before, and
        from the network as ``root@'%'``)."""
        return self._call("PUT", "/v1/root-password", {"password": password}, timeout=30.0)
