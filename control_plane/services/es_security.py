"""Elasticsearch security for the local node: a CA govctl generates, TLS on HTTP, file-realm users per component.

At first start the supervisor generates a CA and a node certificate (ECDSA P-256: the JVM's TLS
has no SM2), and a random password per component:

| user | role | may |
| --- | --- | --- |
| ``govctl`` | ``govctl_control_plane`` | manage its own indices (``soc-*``, ``govctl-*``) and their templates |
| ``govctl_shipper`` | ``govctl_shipper`` | create documents in ``soc-events-*`` (no reads, no updates, no deletes) |
| ``govctl_analyst`` | ``govctl_analyst`` | read the SOC and audit indices |

The passwords live in one JSON file created 0600 (``services.elasticsearch.credentials``); the
node gets only their PBKDF2-HMAC-SHA512 hashes (the file realm's ``{PBKDF2}`` format).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import secrets
from datetime import datetime, timedelta, timezone
from pathlib import Path

from control_plane.credentials import write_private
from control_plane.errors import ConfigError

from control_plane.es import ANALYST_USER, CONTROL_PLANE_USER, SHIPPER_USER, USERS, client_kwargs, load_credentials  # noqa: F401 - one definition, in es

ROLES_YML = """\
# written by govctl services: one role per component, least privilege
govctl_control_plane:
  cluster: [monitor, manage_index_templates]
  indices:
    - names: ["soc-*", "govctl-*"]
      privileges: [all]
govctl_shipper:
  cluster: []
  indices:
    - names: ["soc-events-*"]
      privileges: [create_doc, create_index, auto_configure]
govctl_analyst:
  cluster: [monitor]
  indices:
    - names: ["soc-*", "govctl-audit*"]
      privileges: [read, view_index_metadata]
"""


def pbkdf2_hash(password: str, *, cost: int = 10000) -> str:
    """The file realm's ``{PBKDF2}cost$salt$hash`` (PBKDF2-HMAC-SHA512, 256-bit key, 32-byte salt)."""
    salt = secrets.token_bytes(32)
    dk = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, cost, dklen=32)
    return f"{{PBKDF2}}{cost}${base64.b64encode(salt).decode()}${base64.b64encode(dk).decode()}"


def ensure_ca(ca_cert: Path, ca_key: Path) -> None:
    """Generate the CA (10 years) if it is not there yet."""
    if ca_cert.exists() and not ca_key.exists():
        # never replace a CA that clients already trust with a new one: the running node's certificate would no longer verify
        raise ConfigError(f"the Elasticsearch CA certificate {ca_cert} exists but its key {ca_key} does not",
                           hint="put the key back beside the certificate, or remove both (and the node's certs) to start a new CA")
    if ca_cert.exists() and ca_key.exists():
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "govctl"), x509.NameAttribute(NameOID.COMMON_NAME, "govctl local CA")])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    write_private(ca_key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    write_private(ca_cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def issue_node_cert(ca_cert: Path, ca_key: Path, cert_out: Path, key_out: Path, hosts: list[str]) -> None:
    """A server certificate for the node, valid for ``hosts`` (addresses and names), signed by the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    ca_priv = serialization.load_pem_private_key(ca_key.read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for h in dict.fromkeys(hosts):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_priv, hashes.SHA256())  # type: ignore[arg-type]
    )  # fmt: skip
    write_private(key_out, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    write_private(cert_out, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def write_realm(conf: Path, creds: dict[str, str]) -> None:
    """The node's file realm: users (hashes only), their roles, and the role definitions."""
    write_private(conf / "users", "".join(f"{u}:{pbkdf2_hash(creds[u])}\n" for u in USERS).encode())
    roles: dict[str, list[str]] = {}
    for u, r in USERS.items():
        roles.setdefault(r, []).append(u)
    write_private(conf / "users_roles", "".join(f"{r}:{','.join(us)}\n" for r, us in roles.items()).encode())
    write_private(conf / "roles.yml", ROLES_YML.encode())


def yml_settings(cert_dir: str) -> str:
    """The security part of elasticsearch.yml."""
    return (
        "xpack.security.enabled: true\n"
        "xpack.security.authc.password_hashing.algorithm: pbkdf2\n"
        "xpack.security.http.ssl.enabled: true\n"
        f"xpack.security.http.ssl.key: {cert_dir}/node.key\n"
        f"xpack.security.http.ssl.certificate: {cert_dir}/node.crt\n"
        f"xpack.security.http.ssl.certificate_authorities: [{cert_dir}/ca.crt]\n"
        "xpack.security.transport.ssl.enabled: true\n"
        "xpack.security.transport.ssl.verification_mode: certificate\n"
        f"xpack.security.transport.ssl.key: {cert_dir}/node.key\n"
        f"xpack.security.transport.ssl.certificate: {cert_dir}/node.crt\n"
        f"xpack.security.transport.ssl.certificate_authorities: [{cert_dir}/ca.crt]\n"
        "xpack.security.authc.anonymous.roles: []\n"
    )
