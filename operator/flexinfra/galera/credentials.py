"""The per-cluster TLS material and token that guard the node agents.

One private CA per GaleraCluster signs:

* one **server certificate per node** (SAN = the node's addresses, IP SANs for IPs), which also
  carries the clientAuth usage: agents ask their peers' status with it before an automatic
  rejoin;
* the **operator's client certificate** (clientAuth only).

Plus a random **bearer token**: an agent wants both a certificate from the cluster's CA and
the token, so a leaked node certificate alone (it sits on a VM's disk) does not open the API
of the other clusters, and a leaked token alone opens nothing.

Keys are ECDSA P-256 (small PEMs: user_data is limited to 64 KiB). Everything is stored in one
Kubernetes Secret per cluster, ``<cluster>-agent-tls``, whose ``data`` is
:meth:`ClusterCredentials.to_secret_data`::

    ca.crt  ca.key  client.crt  client.key  token
    node-<name>.crt  node-<name>.key        (one pair per node)

Node certificates are generated once and kept, so rendering a node's user_data again gives the
same bytes.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=3650)
_CLOCK_SKEW = dt.timedelta(minutes=5)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _name(cn: str, cluster: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "flexinfra"),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, cluster[:64]),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn[:64])])


def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass
class ClusterCredentials:
    cluster: str
    ca_cert: str
    ca_key: str
    client_cert: str
    client_key: str
    token: str
    nodes: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (cert, key)

    # --- creation -------------------------------------------------------------------------
    @classmethod
    def generate(cls, cluster: str) -> ClusterCredentials:
        now = dt.datetime.now(dt.UTC)
        ca_key = _key()
        ca_name = _name(f"{cluster} agent CA", cluster)
        ca = (x509.CertificateBuilder()
              .subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(now - _CLOCK_SKEW).not_valid_after(now + VALIDITY)
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                           crl_sign=True, content_commitment=False,
                                           key_encipherment=False, data_encipherment=False,
                                           key_agreement=False, encipher_only=False,
                                           decipher_only=False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))
        creds = cls(cluster=cluster, ca_cert=_cert_pem(ca), ca_key=_key_pem(ca_key),
                    client_cert="", client_key="", token=new_token())
        creds.client_cert, creds.client_key = creds._issue("flexinfra-operator", [],
                                                           server=False)
        return creds

    def ensure_node(self, name: str, addresses: list[str]) -> bool:
        """Issue ``name``'s server certificate unless it exists with exactly these SANs.
        Returns True when something changed (the Secret must be written)."""
        want = sorted(addresses)
        if name in self.nodes and sorted(san_of(self.nodes[name][0])) == want:
            return False
        self.nodes[name] = self._issue(name, want, server=True)
        return True

    def _issue(self, cn: str, addresses: list[str], server: bool) -> tuple[str, str]:
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.encode())
        ca_key = serialization.load_pem_private_key(self.ca_key.encode(), password=None)
        key = _key()
        now = dt.datetime.now(dt.UTC)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
        b = (x509.CertificateBuilder()
             .subject_name(_name(cn, self.cluster)).issuer_name(ca_cert.subject)
             .public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - _CLOCK_SKEW).not_valid_after(now + VALIDITY)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                          key_cert_sign=False, crl_sign=False,
                                          content_commitment=False, data_encipherment=False,
                                          key_agreement=True, encipher_only=False,
                                          decipher_only=False), critical=True)
             .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                 ca_cert.public_key()), critical=False))
        if addresses:
            b = b.add_extension(x509.SubjectAlternativeName([_san(a) for a in addresses]),
                                critical=False)
        return _cert_pem(b.sign(ca_key, hashes.SHA256())), _key_pem(key)

    # --- the Secret ----------------------------------------------------------------------
    def to_secret_data(self) -> dict[str, str]:
        """String data for the Secret (``stringData``; base64 it for ``data``)."""
        out = {"ca.crt": self.ca_cert, "ca.key": self.ca_key, "client.crt": self.client_cert,
               "client.key": self.client_key, "token": self.token}
        for name, (cert, key) in sorted(self.nodes.items()):
            out[f"node-{name}.crt"] = cert
            out[f"node-{name}.key"] = key
        return out

    @classmethod
    def from_secret_data(cls, cluster: str, data: dict[str, str]) -> ClusterCredentials:
        missing = [k for k in ("ca.crt", "ca.key", "client.crt", "client.key", "token")
                   if not data.get(k)]
        if missing:
            raise ValueError(f"agent credentials Secret lacks {', '.join(missing)}")
        nodes = {}
        for key, value in data.items():
            if key.startswith("node-") and key.endswith(".crt"):
                name = key[len("node-"):-len(".crt")]
                if data.get(f"node-{name}.key"):
                    nodes[name] = (value, data[f"node-{name}.key"])
        return cls(cluster=cluster, ca_cert=data["ca.crt"], ca_key=data["ca.key"],
                   client_cert=data["client.crt"], client_key=data["client.key"],
                   token=data["token"], nodes=nodes)

    def __repr__(self) -> str:  # never print keys or the token
        return f"ClusterCredentials(cluster={self.cluster!r}, nodes={sorted(self.nodes)})"


def _san(address: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(address))
    except ValueError:
        return x509.DNSName(address)


def san_of(cert_pem: str) -> list[str]:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return ([str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
            + ext.get_values_for_type(x509.DNSName))
