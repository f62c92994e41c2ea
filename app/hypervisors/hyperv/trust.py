"""Per-host certificate trust for the WinRM `ssl` transport.

A host's settings trust its HTTPS certificate in one of three ways:
- nothing given: the certificate must chain to a CA the management server trusts
  and name the host (requests' default);
- `cacertificates` (PEM): it must chain to one of these CAs, and only these, and
  name the host;
- `fingerprint` (SHA-256 of the DER certificate): it must be exactly that
  certificate (urllib3's assert_fingerprint, checked on every connection), the way
  an SSH host key is pinned; no CA or name check, which is what a self-signed
  WinRM listener needs.

Both are requests transport adapters mounted on pywinrm's own HTTP session, so the
trust lives in memory with the driver: no CA file is written anywhere.
"""
from __future__ import annotations

import re

from requests.adapters import HTTPAdapter

_HEX = re.compile(r"^[0-9a-f]{64}$")


def normalize_fingerprint(value: str) -> str:
    """'AB:CD:…' / 'abcd…' / 'SHA256 Fingerprint=AB:…' → 64 lower-case hex digits ('' if not that)."""
    v = (value or "").strip().lower()
    for prefix in ("sha256 fingerprint=", "sha256:", "sha-256:"):
        v = v.removeprefix(prefix)
    v = re.sub(r"[\s:]", "", v)
    return v if _HEX.match(v) else ""


def fingerprint_error(value: str) -> str | None:
    if not value or normalize_fingerprint(value):
        return None
    return "Give the SHA-256 fingerprint of the host's certificate: 64 hex digits, colons allowed"


def spaced(fingerprint: str) -> str:
    """AB:CD:… as openssl and Windows' certificate dialogs show it."""
    f = normalize_fingerprint(fingerprint) or fingerprint
    return ":".join(f[i:i + 2] for i in range(0, len(f), 2)).upper()


def load_cas(pem: str) -> list:
    from cryptography import x509
    return x509.load_pem_x509_certificates(pem.strip().encode())


def ca_error(value: str) -> str | None:
    if not (value or "").strip():
        return None
    try:
        certs = load_cas(value)
    except ValueError:
        certs = []
    if not certs:
        return "Give the CA certificates in PEM form (-----BEGIN CERTIFICATE----- …)"
    return None


class PinnedAdapter(HTTPAdapter):
    """HTTPS that accepts only the certificate with this SHA-256 fingerprint. The session's
    `verify` must be False (no CA chain is asked for); urllib3 still marks such a connection
    verified, as the pin was checked."""

    def __init__(self, fingerprint: str):
        self.fingerprint = normalize_fingerprint(fingerprint)
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["assert_fingerprint"] = self.fingerprint
        super().init_poolmanager(*args, **kwargs)


class CAAdapter(HTTPAdapter):
    """HTTPS whose certificate must chain to these CAs only (not the system's) and name the host."""

    def __init__(self, pem: str):
        self.pem = pem.strip() + "\n"
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["ca_cert_data"] = self.pem
        super().init_poolmanager(*args, **kwargs)

    def cert_verify(self, conn, url, verify, cert):
        # requests would add its default CA bundle file (ca_certs) to the connection;
        # the pool's ca_cert_data is the whole trust here.
        super().cert_verify(conn, url, False, cert)
        conn.cert_reqs = "CERT_REQUIRED"


def follow(transport, fields: dict[str, str]) -> None:
    """Keep a host's trust on every HTTP session pywinrm's transport builds: it drops its
    session when a shell closes (close_session) and builds a fresh one, from requests'
    defaults, for the next command."""
    build = transport.build_session

    def build_with_trust():
        fresh = transport.session is None
        http_session = build()
        if fresh:
            mount(http_session, fields)
        return http_session
    transport.build_session = build_with_trust


def mount(http_session, fields: dict[str, str]) -> None:
    """Put a host's trust setting on pywinrm's requests session (ssl transport only)."""
    pinned = normalize_fingerprint(fields.get("fingerprint") or "")
    cas = (fields.get("cacertificates") or "").strip()
    if pinned:
        http_session.verify = False
        http_session.mount("https://", PinnedAdapter(pinned))
    elif cas:
        http_session.verify = True
        http_session.mount("https://", CAAdapter(cas))


_GOT = re.compile(r'got "?([0-9a-fA-F:]{64,})"?')


def untrusted_message(address: str, fields: dict[str, str], error: Exception) -> tuple[str, str]:
    """(host field, message) for a TLS failure: what was expected and what the host presented."""
    text = str(error)
    if normalize_fingerprint(fields.get("fingerprint") or "") and "Fingerprints did not match" in text:
        got = _GOT.search(text)
        presented = f": it presents {spaced(got.group(1))}" if got else ""
        return "fingerprint", (f"The certificate of Hyper-V host {address} does not match the pinned SHA-256 "
                               f"fingerprint {spaced(fields['fingerprint'])}{presented}")
    reason = re.search(r"certificate verify failed: ([^(\]]+)", text) or re.search(r"(hostname|IP address) mismatch[^'\"]*", text)
    why = (reason.group(1) if reason and reason.lastindex else reason.group(0) if reason else text[:200]).strip()
    if normalize_fingerprint(fields.get("fingerprint") or ""):  # not reached with a pin (no CA check)
        return "fingerprint", f"The certificate of Hyper-V host {address} was refused ({why})"
    field = "cacertificates" if (fields.get("cacertificates") or "").strip() else "url"
    trusted = "its CA certificates" if field == "cacertificates" else "the management server's CAs"
    return field, (f"The certificate of Hyper-V host {address} is not trusted by {trusted} ({why}); give the host's "
                   "CA certificates or the SHA-256 fingerprint of its certificate")
