"""What the other nodes' agents say: the evidence behind the agent's own restart decisions.

An agent asks its peers' control APIs (mTLS with its own certificate, which carries the
clientAuth usage, and the cluster's token) for their status. Two questions only:

* is there a Primary, Synced node whose view no longer contains me? Then my old incarnation has
  left the cluster and a joiner start is safe and useful (auto-rejoin);
* does any peer report Primary? Then a bootstrap or ``pc.bootstrap`` here would make a second
  Primary component: refused, whatever the operator asked.
"""

from __future__ import annotations

import http.client
import json
import ssl
from concurrent.futures import ThreadPoolExecutor


def client_context(ca_file: str, cert_file: str, key_file: str) -> ssl.SSLContext:
    """Peers verify the cluster's CA only, not the peer's name: node certificates name the
    node, and an agent knows its peers by address. The CA is the cluster's own (every
    certificate it signed is one of this cluster's nodes or its operator), and the token is
    still required."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    ctx.check_hostname = False
    ctx.load_cert_chain(cert_file, key_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def fetch_status(address: str, port: int, ctx: ssl.SSLContext, token: str,
                 timeout: float) -> dict | None:
    """A peer's /v1/status, or None when it cannot be asked (down, refused, garbled)."""
    conn = http.client.HTTPSConnection(address, port, context=ctx, timeout=timeout)
    try:
        conn.request("GET", "/v1/status", headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        body = resp.read(1 << 20)
        if resp.status != 200:
            return None
        return json.loads(body)
    except (OSError, ssl.SSLError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def survey(addresses: list[str], port: int, ctx: ssl.SSLContext, token: str,
           timeout: float) -> dict[str, dict | None]:
    if not addresses:
        return {}
    with ThreadPoolExecutor(max_workers=len(addresses)) as pool:
        results = pool.map(lambda a: fetch_status(a, port, ctx, token, timeout), addresses)
        return dict(zip(addresses, results, strict=True))


def primary_peers(statuses: dict[str, dict | None]) -> list[str]:
    return [a for a, s in statuses.items()
            if s and (s.get("wsrep") or {}).get("cluster_status") == "Primary"]


def rejoin_target(statuses: dict[str, dict | None], my_address: str) -> str | None:
    """A peer that is Primary + Synced + ready and whose view has no node at my address."""
    for addr, s in statuses.items():
        w = (s or {}).get("wsrep") or {}
        if not (w.get("cluster_status") == "Primary" and w.get("local_state_comment") == "Synced"
                and w.get("ready")):
            continue
        hosts = {a.rsplit(":", 1)[0] for a in w.get("incoming_addresses") or []}
        if my_address not in hosts:
            return addr
    return None
