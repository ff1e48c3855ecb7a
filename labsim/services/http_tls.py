"""Certificates for the HTTPS provisioning server: a self-signed one made at start, or
the scenario's own files."""

from __future__ import annotations

import datetime
import os

from labsim.services.http import HttpServerConfig

def make_self_signed(hostnames: list[str]) -> tuple[bytes, bytes]:
    """(cert PEM, key PEM), ECDSA P-256: made in well under a millisecond at start where
    RSA-2048 takes tens; new HTTPS connections per second measured the same for both
    (~300/s against a Python client), so nothing is lost. Real phones with RSA-only TLS
    stacks need ``cert_file``/``key_file``."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def tls_options(config: HttpServerConfig, host: str):
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from twisted.internet import ssl

    if config.cert_file:
        with open(config.cert_file, "rb") as f:
            cert_pem = f.read()
        with open(config.key_file or config.cert_file, "rb") as f:
            key_pem = f.read()
    else:
        cert_pem, key_pem = make_self_signed(list(dict.fromkeys([host, "localhost", "127.0.0.1"])))
        if config.cert_dir:
            os.makedirs(config.cert_dir, exist_ok=True)
            with open(os.path.join(config.cert_dir, "cert.pem"), "wb") as f:
                f.write(cert_pem)
            key_path = os.path.join(config.cert_dir, "key.pem")
            with open(os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(key_pem)
    # cryptography objects, not pyOpenSSL's (deprecated there since pyOpenSSL 24.3).
    return ssl.CertificateOptions(
        privateKey=load_pem_private_key(key_pem, password=None),
        certificate=x509.load_pem_x509_certificate(cert_pem),
    )
