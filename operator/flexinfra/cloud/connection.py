"""One cached openstacksdk connection per credentials Secret version.

The key is the Secret (uid or namespace/name) plus its resourceVersion and the cloud name: a
new Secret version gets a new connection (and the old one is closed), an unchanged one reuses
its Keystone token across every reconcile of every site of that tenant.
"""

from __future__ import annotations

import hashlib
import json
import threading

import openstack.connection
import yaml
from keystoneauth1.session import TCPKeepAliveAdapter
from openstack.config import loader

from flexinfra.cloud.errors import CredentialsError
from flexinfra.cloud.gateway import Gateway
from flexinfra.core import redact

#: no call hangs forever, yet a busy cloud gets time: Octavia creates a load balancer's VIP
#: port in Neutron before it answers, which took over 15 s with 10 sites building at once
#: (a write that times out is not retried: the next pass finds it by its tags)
DEFAULT_API_TIMEOUT = 60


def parse_cloud(clouds_yaml_text: str, cloud_name: str) -> dict:
    """The ``clouds.<cloud_name>`` entry. Messages never quote the text (it holds passwords)."""
    try:
        data = yaml.safe_load(clouds_yaml_text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" near line {mark.line + 1}" if mark is not None else ""
        raise CredentialsError(
            f"the credentials Secret's clouds.yaml is not valid YAML{where}"
        ) from None
    clouds = data.get("clouds") if isinstance(data, dict) else None
    if not isinstance(clouds, dict):
        raise CredentialsError("the credentials Secret's clouds.yaml has no `clouds:` mapping")
    entry = clouds.get(cloud_name)
    if not isinstance(entry, dict):
        names = ", ".join(sorted(str(k) for k in clouds)) or "none"
        raise CredentialsError(
            f"cloud {cloud_name!r} is not in the Secret's clouds.yaml (it has: {names}); "
            "fix spec.cloud.cloudName or the Secret"
        )
    if not isinstance(entry.get("auth"), dict) or not entry["auth"].get("auth_url"):
        raise CredentialsError(f"cloud {cloud_name!r} in clouds.yaml has no auth.auth_url")
    remember_secrets(entry)
    return entry


#: auth keys whose values are secrets: masked wherever they would appear (``core.redact``)
SECRET_KEYS = ("password", "application_credential_secret", "token", "secret", "passcode",
               "client_secret", "access_token")


def remember_secrets(entry: dict) -> None:
    """Teach the redactor this entry's secrets before anything can echo them."""
    auth = entry.get("auth") or {}
    redact.REDACTOR.remember(*(auth.get(k) for k in SECRET_KEYS),
                             *(entry.get(k) for k in SECRET_KEYS))


def connect(entry: dict, *, app_name: str = "flexinfra") -> openstack.connection.Connection:
    config = dict(entry)
    config.setdefault("api_timeout", DEFAULT_API_TIMEOUT)
    try:
        region = loader.OpenStackConfig(load_yaml_config=False, load_envvars=False).get_one(
            **config
        )
    except Exception as err:
        raise CredentialsError(
            f"the clouds.yaml entry cannot be used ({type(err).__name__}); check auth_type "
            "and the auth keys"
        ) from None
    conn = openstack.connection.Connection(config=region, app_name=app_name)
    _widen_connection_pools(conn)
    return conn


#: connections kept open per service endpoint; every site of a tenant shares one connection
#: object, and a pass makes several calls at once (requests' default keeps only 10)
POOL_SIZE = 64


def _widen_connection_pools(conn: openstack.connection.Connection) -> None:
    """Keep keystoneauth's TCP keep-alive adapter, with room for every concurrent call, so
    connections are reused instead of opened, discarded and logged about."""
    http = conn.session.session  # keystoneauth Session -> requests.Session
    for scheme, adapter in list(http.adapters.items()):
        http.mount(
            scheme,
            TCPKeepAliveAdapter(
                pool_connections=16,
                pool_maxsize=POOL_SIZE,
                tls_ciphers=getattr(adapter, "tls_ciphers", None),
                tls_min_version=getattr(adapter, "tls_min_version", None),
            ),
        )


class ConnectionCache:
    """One gateway per (Secret, cloud name), kept while what it was made from is unchanged.

    The key of "unchanged" is the parsed clouds.yaml entry, not the Secret's
    resourceVersion: a metadata change (a label, the in-use finalizer the operator puts on the
    Secret) must not throw away the tenant's connection and inventory.

    A rotated Secret gets a new gateway; the old one is closed only after ``grace`` seconds,
    so that the passes in flight that hold it finish with the credentials they started with
    (closing at once broke them with ``RuntimeError``: its listing pool was shut down).
    """

    def __init__(self, grace: float = 600.0, **gateway_options) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[str, Gateway]] = {}
        self._options = gateway_options
        self.grace = grace

    def get(
        self, secret_key: str, resource_version: str, clouds_yaml_text: str, cloud_name: str
    ) -> Gateway:
        entry = parse_cloud(clouds_yaml_text, cloud_name)
        fingerprint = hashlib.sha256(
            json.dumps(entry, sort_keys=True, default=str).encode()).hexdigest()
        with self._lock:
            hit = self._entries.get((secret_key, cloud_name))
            if hit is not None and hit[0] == fingerprint and not hit[1].broken:
                return hit[1]
            gateway = Gateway(connect(entry), label=f"{secret_key}/{cloud_name}", **self._options)
            self._entries[(secret_key, cloud_name)] = (fingerprint, gateway)
        if hit is not None:
            self._retire(hit[1])
        return gateway

    def _retire(self, gateway: Gateway) -> None:
        timer = threading.Timer(self.grace, gateway.close)
        timer.daemon = True
        timer.start()

    def configure(self, **gateway_options) -> None:
        """Options for gateways made from now on (set once at start-up from the settings)."""
        with self._lock:
            self._options.update(gateway_options)


#: the process-wide cache the handlers use
connection_cache = ConnectionCache()
