"""TLS certificates for the WS-Management double, made here with the cryptography
package: a self-signed one (as `winrm quickconfig -transport:https` with a
self-signed certificate gives) and a small CA with a host certificate it issued."""
from __future__ import annotations

import datetime
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Issued:
    cert_pem: str
    key_pem: str
    ca_pem: str  # the issuer's certificate (the certificate itself when self-signed)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the DER certificate, AB:CD:… (what `openssl x509 -fingerprint -sha256` prints)."""
        der = x509.load_pem_x509_certificate(self.cert_pem.encode()).public_bytes(serialization.Encoding.DER)
        digest = hashlib.sha256(der).hexdigest().upper()
        return ":".join(digest[i:i + 2] for i in range(0, 64, 2))

    def write(self, folder: Path) -> tuple[Path, Path]:
        """cert.pem and key.pem (0600) in folder, for ssl.SSLContext.load_cert_chain."""
        folder.mkdir(parents=True, exist_ok=True)
        cert, key = folder / "cert.pem", folder / "key.pem"
        cert.write_text(self.cert_pem)
        key.touch(mode=0o600)
        key.write_text(self.key_pem)
        return cert, key


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _san(address: str) -> x509.SubjectAlternativeName:
    try:
        return x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))])
    except ValueError:
        return x509.SubjectAlternativeName([x509.DNSName(address)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=30)))


def self_signed(address: str = "127.0.0.1") -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(_name(address), _name(address), key.public_key()).add_extension(_san(address), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return Issued(cert_pem=pem, key_pem=_pem(key), ca_pem=pem)


def issued_by_ca(address: str = "127.0.0.1", ca_name: str = "Nubo test CA") -> Issued:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_id = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (_builder(_name(ca_name), _name(ca_name), ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(ca_id, critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(_name(address), ca.subject, key.public_key()).add_extension(_san(address), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_id), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return Issued(cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem=_pem(key),
                  ca_pem=ca.public_bytes(serialization.Encoding.PEM).decode())
