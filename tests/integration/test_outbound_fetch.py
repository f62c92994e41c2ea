"""Every outbound download through app.net.outbound, tested on loopback only:
the parser split (a backslash URL checked for one address and fetched from
another), DNS rebinding, redirects into internal addresses, the allow-list
(`secstorage.allowed.internal.sites`: 127.0.0.2 allowed, 127.0.0.3 not), direct
download (address check, size limit, backing-file check before any byte reaches
the pool), a checksum mismatch that no longer tells the real digest, and the
deadline and minimum rate against servers that trickle. Jobs run inline, so a
template's state is final when register() returns."""
from __future__ import annotations

import hashlib
import http.server
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.hypervisors.base import OperationFailed, TemplateSource
from app.hypervisors.sources import open_source
from app.models import AsyncJob, DownloadState, JobStatus, Template
from app.services import accounts, settings, storage, templates, zones
from app.services.errors import InvalidParameter
from tests.helpers.dns import fake_dns


TRICKLE_CAP = 20.0  # seconds a trickling server keeps going (bounds the old code's hang)


class _Quiet(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client that hung up on a trickle is expected


class Server:
    """A loopback HTTP server on a chosen 127.x address: files from a folder, redirects,
    trickles; it records each request's path and Host header."""

    def __init__(self, address: str, root: Path, routes: dict | None = None):
        self.root, self.routes, self.hits = root, routes or {}, []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.hits.append((self.path, self.headers.get("Host")))
                route = outer.routes.get(self.path)
                if route is None:
                    return super().do_GET()
                route(self)

        self.httpd = _Quiet((address, 0), lambda *a, **kw: Handler(
            *a, directory=str(root), **kw))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://{address}:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def redirect(location: str):
    def route(h):
        h.send_response(302)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()
    return route


def trickle(length: int, piece: int, every: float):
    """Announce `length` bytes, then send `piece` bytes every `every` seconds (at most TRICKLE_CAP s)."""
    def route(h):
        h.send_response(200)
        h.send_header("Content-Length", str(length))
        h.end_headers()
        end = time.monotonic() + TRICKLE_CAP
        try:
            while time.monotonic() < end:
                h.wfile.write(b"\0" * piece)
                h.wfile.flush()
                time.sleep(every)
        except OSError:
            pass  # the client gave up: that is the point
        h.close_connection = True
    return route


@pytest.fixture
def www(tmp_path):
    """Two servers: 127.0.0.2 (the allowed internal image server) and 127.0.0.3 (an internal
    service nobody allowed, holding a secret), each with a real 1 MiB RAW image."""
    servers = {}
    for last in (2, 3):
        root = tmp_path / f"www{last}"
        root.mkdir()
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(root / "disk.raw"), "1M"], check=True)
        (root / "secret").write_bytes(b"SECRET FROM 127.0.0.3\n")
        servers[last] = Server(f"127.0.0.{last}", root)
    qdir = tmp_path / "www2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qdir / "base.qcow2"), "4M"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/hostname", "-F", "raw",
                    str(qdir / "backed.qcow2")], check=True)
    yield servers
    for s in servers.values():
        s.close()


@pytest.fixture
def zone(app, users, tmp_path):
    with app.app_context():
        z = zones.create_zone(None, name="Z1", dns1="8.8.8.8", internal_dns1="10.0.0.2")
        storage.add_image_store(None, provider="Local", url=f"file://{tmp_path}/sec", zone_uuid=z.uuid)
        return z.uuid


@pytest.fixture
def allow2(app, zone):
    """127.0.0.2 is the admin's internal image server: listed in secstorage.allowed.internal.sites."""
    with app.app_context():
        settings.update("secstorage.allowed.internal.sites", "127.0.0.2/32")


def policy(**kw):
    from app.net.outbound import FetchPolicy, parse_networks
    return FetchPolicy(allowed_sites=parse_networks(["127.0.0.2/32"]), **kw)


@pytest.fixture(autouse=True)
def _no_dns(monkeypatch):
    fake_dns(monkeypatch, {})


def register(app, username, url, name="t1", **kw):
    with app.app_context():
        t = templates.register(accounts.get_user(username), url=url, name=name, hypervisor="KVM",
                               format=kw.pop("format", "RAW"), **kw)
        ref = templates.refs_of(t)[0]
        return ref.state, ref.error


def counts(app, tmp_path) -> tuple[int, int, list[str]]:
    """(templates, pending jobs, files on secondary storage)."""
    with app.app_context():
        n = db.session.scalar(select(func.count()).select_from(Template).where(Template.removed.is_(None)))
        pending = db.session.scalar(select(func.count()).select_from(AsyncJob)
                                    .where(AsyncJob.status == JobStatus.PENDING))
    files = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "sec").rglob("*") if p.is_file()) \
        if (tmp_path / "sec").exists() else []
    return n, pending, files


# --- Addresses -----------------------------------------------------------------

def test_backslash_url_is_refused_even_for_admins(app, zone, www, tmp_path):
    """The audit's URL: urlsplit reads host 127.0.0.2, requests connected to 127.0.0.3 and fetched
    /secret (dot segment removed). Admins may use internal addresses, but not ambiguous URLs."""
    s3 = www[3]
    before = counts(app, tmp_path)
    with app.app_context(), pytest.raises(InvalidParameter, match="backslash") as e:
        templates.register(accounts.get_user("admin"), url=f"http://127.0.0.3:{s3.port}\\@127.0.0.2/../secret",
                           name="x", hypervisor="KVM", format="RAW")
    assert e.value.field == "url" and s3.hits == []
    assert counts(app, tmp_path) == before


def test_backslash_url_is_refused_and_the_other_address_never_asked(app, allow2, www, tmp_path):
    """Same for a user: the checked address (127.0.0.2) is allowed, the fetched one (.3) is not."""
    s2, s3 = www[2], www[3]
    before = counts(app, tmp_path)
    for url in (f"http://127.0.0.3:{s3.port}\\@127.0.0.2:{s3.port}/../secret",
                f"http://127.0.0.3:{s3.port}\\@127.0.0.2/secret",
                f"http://127.0.0.3:{s3.port}@127.0.0.2:{s2.port}/secret",
                f"http://127.0.0.2:{s2.port}/../secret"):
        with app.app_context(), pytest.raises(InvalidParameter) as e:
            templates.register(accounts.get_user("alice"), url=url, name="x", hypervisor="KVM", format="RAW")
        assert e.value.field == "url"
    assert s3.hits == [] and s2.hits == []
    assert counts(app, tmp_path) == before


def test_allow_list_opens_one_internal_server_only(app, allow2, www, tmp_path):
    s2, s3 = www[2], www[3]
    assert register(app, "alice", f"{s2.base}/disk.raw", "ok") == (DownloadState.DOWNLOADED, None)
    with app.app_context(), pytest.raises(InvalidParameter, match="internal address"):
        templates.register(accounts.get_user("alice"), url=f"{s3.base}/disk.raw", name="no", hypervisor="KVM",
                           format="RAW")
    assert s3.hits == []
    # The allow-list is read again at download time: taken back, the retry is refused.
    with app.app_context():
        settings.update("secstorage.allowed.internal.sites", "")
        with pytest.raises(InvalidParameter, match="internal address"):
            templates.check_url(f"{s2.base}/disk.raw", accounts.get_user("alice"))
        with pytest.raises(InvalidParameter, match="must be a CIDR|is not a CIDR"):
            settings.update("secstorage.allowed.internal.sites", "10.0.0.0/8,nope")
    # Backward compatible: admins, and users when template.url.allow.internal is on, may use any address.
    assert register(app, "admin", f"{s3.base}/disk.raw", "admin-ok")[0] == DownloadState.DOWNLOADED
    with app.app_context():
        settings.update("template.url.allow.internal", "true")
    assert register(app, "alice", f"{s3.base}/disk.raw", "legacy-ok")[0] == DownloadState.DOWNLOADED


def test_dns_rebinding_connects_to_the_address_that_was_checked(app, allow2, www, monkeypatch, tmp_path):
    """The name answers 127.0.0.2 (allowed) to the checks, then 127.0.0.3 to anyone asking again:
    the download connects to the checked address and keeps the name in the Host header."""
    s2, s3 = www[2], www[3]
    s3.root.joinpath("disk.raw").write_bytes(b"\1" * (1 << 20))  # would show if fetched from .3
    honest = ["127.0.0.2", "127.0.0.2"]  # the next answers; 127.0.0.3 once they are used up
    asked = fake_dns(monkeypatch, {"images.rebind.test": lambda: [honest.pop(0) if honest else "127.0.0.3"]})
    state, error = register(app, "alice", f"http://images.rebind.test:{s2.port}/disk.raw")
    assert (state, error) == (DownloadState.DOWNLOADED, None)
    assert asked.count("images.rebind.test") == 2  # once at registration, once for the download
    assert s2.hits == [("/disk.raw", f"images.rebind.test:{s2.port}")] and s3.hits == []
    stored = next((tmp_path / "sec").rglob("*.raw")).read_bytes()
    assert stored == (s2.root / "disk.raw").read_bytes()

    # Rebound between registration and download: the download is refused, nothing fetched from .3.
    honest[:] = ["127.0.0.2"]
    state, error = register(app, "alice", f"http://images.rebind.test:{s3.port}/disk.raw", "t2")
    assert state == DownloadState.ERROR and "internal address" in error and s3.hits == []


def test_redirects_pass_the_same_checks(app, allow2, www, tmp_path):
    s2, s3 = www[2], www[3]
    s2.routes["/to-3"] = redirect(f"{s3.base}/secret")
    s2.routes["/to-backslash"] = redirect(f"http://127.0.0.3:{s3.port}\\@127.0.0.2:{s2.port}/secret")
    s2.routes["/to-ok"] = redirect("/disk.raw")
    s2.routes["/loop"] = redirect("/loop")
    state, error = register(app, "alice", f"{s2.base}/to-3", "a")
    assert state == DownloadState.ERROR and "Refused a redirect" in error and "internal address" in error
    state, error = register(app, "alice", f"{s2.base}/to-backslash", "b")
    assert state == DownloadState.ERROR and "backslash" in error
    assert register(app, "alice", f"{s2.base}/to-ok", "c") == (DownloadState.DOWNLOADED, None)
    assert register(app, "alice", f"{s2.base}/loop", "d") == (DownloadState.ERROR, "Too many redirects")
    assert s3.hits == []
    assert [p for p in counts(app, tmp_path)[2] if p.endswith(".part")] == []


def test_checksum_mismatch_does_not_tell_the_real_digest(app, zone, www, caplog):
    from app.hypervisors.sources import Verifier
    real = hashlib.sha256((www[2].root / "disk.raw").read_bytes()).hexdigest()
    state, error = register(app, "admin", f"{www[2].base}/disk.raw", checksum="{SHA-256}" + "0" * 64)
    assert state == DownloadState.ERROR and "Checksum mismatch" in error and real not in error
    assert real in caplog.text  # admins find it in the log
    v = Verifier("{SHA-256}" + "0" * 64)
    v.update(b"abc")
    with pytest.raises(OperationFailed) as e:
        v.check()
    assert "Checksum mismatch" in str(e.value) and hashlib.sha256(b"abc").hexdigest() not in str(e.value)


# --- Direct download (the driver layer's open_source) ---------------------------

def _drain(source: TemplateSource) -> bytes:
    chunks, _ = open_source(source)
    return b"".join(chunks)


def test_direct_download_checks_addresses_redirects_and_size(www):
    s2, s3 = www[2], www[3]
    s2.routes["/to-3"] = redirect(f"{s3.base}/disk.raw")
    with pytest.raises(OperationFailed, match="internal address"):  # no policy: the strict default
        open_source(TemplateSource(format="RAW", url=f"{s2.base}/to-3"))
    assert s2.hits == [] and s3.hits == []
    ok = policy(max_bytes=2 << 20)
    assert len(_drain(TemplateSource(format="RAW", url=f"{s2.base}/disk.raw", fetch=ok))) == 1 << 20
    with pytest.raises(OperationFailed, match="internal address"):
        open_source(TemplateSource(format="RAW", url=f"{s3.base}/disk.raw", fetch=ok))
    with pytest.raises(OperationFailed, match="Refused a redirect"):
        open_source(TemplateSource(format="RAW", url=f"{s2.base}/to-3", fetch=ok))
    with pytest.raises(OperationFailed, match="over the size limit"):
        open_source(TemplateSource(format="RAW", url=f"{s2.base}/disk.raw", fetch=policy(max_bytes=4096)))
    assert s3.hits == []


def test_direct_download_refuses_a_backing_file_before_any_byte_is_handed_on(www):
    base = www[2].base
    assert _drain(TemplateSource(format="QCOW2", url=f"{base}/base.qcow2", fetch=policy()))
    chunks, _ = open_source(TemplateSource(format="QCOW2", url=f"{base}/backed.qcow2", fetch=policy()))
    with pytest.raises(OperationFailed, match="backing or data file"):
        next(iter(chunks))
    chunks, _ = open_source(TemplateSource(format="RAW", url=f"{base}/backed.qcow2", fetch=policy()))
    with pytest.raises(OperationFailed, match="The file is QCOW2, not RAW"):
        next(iter(chunks))


def test_upload_of_a_backed_qcow2_is_refused(app, allow2, zone, www, tmp_path):
    with app.test_request_context():
        p = templates.upload_params(accounts.get_user("alice"), name="up", hypervisor="KVM", format="QCOW2",
                                    zone_uuid=zone)
        t, ref = templates.check_upload(p["metadata"], p["expires"], p["signature"])
        data = (www[2].root / "backed.qcow2").read_bytes()
        with pytest.raises(templates.DownloadFailed, match="backing or data file"):
            templates.receive_upload(t, ref, iter([data]), len(data))
        assert db.session.get(type(ref), ref.id).state == DownloadState.ERROR
    assert counts(app, tmp_path)[2] == []


# --- Deadline and minimum rate ---------------------------------------------------

def test_a_trickling_server_fails_the_download_at_the_minimum_rate(app, zone, www, tmp_path):
    s2 = www[2]
    s2.routes["/slow.raw"] = trickle(1 << 20, 1, 0.05)  # ~20 bytes/s
    with app.app_context():
        settings.update("template.download.min.rate", "1")  # KiB/s
        settings.update("template.download.rate.window", "1")
    before = counts(app, tmp_path)
    t0 = time.monotonic()
    state, error = register(app, "admin", f"{s2.base}/slow.raw")
    took = time.monotonic() - t0
    assert state == DownloadState.ERROR and "under the minimum of 1024 bytes/s" in error, error
    assert took < TRICKLE_CAP  # ended by the rate check, not by the server giving up
    after = counts(app, tmp_path)
    assert (after[0], after[1], after[2]) == (before[0] + 1, before[1], before[2])  # the row, no job, no file


def test_a_slow_but_steady_server_fails_at_the_overall_deadline(app, zone, www, tmp_path):
    s2 = www[2]
    s2.routes["/long.raw"] = trickle(64 << 20, 4096, 0.05)  # ~80 KiB/s: above the minimum
    with app.app_context():
        settings.update("template.download.min.rate", "1")
        settings.update("template.download.rate.window", "1")
        settings.update("template.download.timeout", "2")
    t0 = time.monotonic()
    state, error = register(app, "admin", f"{s2.base}/long.raw")
    assert state == DownloadState.ERROR and "did not finish within 2 s" in error, error
    assert time.monotonic() - t0 < TRICKLE_CAP
    assert counts(app, tmp_path)[2] == []


def test_a_silent_server_fails_after_the_window(app, zone, www):
    s2 = www[2]
    s2.routes["/silent.raw"] = trickle(1 << 20, 0, TRICKLE_CAP)  # headers, then nothing
    with app.app_context():
        settings.update("template.download.rate.window", "1")
    state, error = register(app, "admin", f"{s2.base}/silent.raw")
    assert state == DownloadState.ERROR and "sent nothing for 1 s" in error, error


# --- https: pinned to the checked address, the name kept for SNI and the certificate ---

def _tls_files(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for `name`, made for this test."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nubo test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_https_connects_to_the_checked_address_with_the_name_for_sni_and_certificate(www, tmp_path,
                                                                                      monkeypatch):
    import ssl
    s2 = www[2]
    ca, cert, key = _tls_files(tmp_path, "images.tls.test")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    sni: list[str | None] = []
    ctx.sni_callback = lambda sock, name, c: sni.append(name)
    s2.httpd.socket = ctx.wrap_socket(s2.httpd.socket, server_side=True)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    fake_dns(monkeypatch, {"images.tls.test": ["127.0.0.2"], "other.tls.test": ["127.0.0.2"]})
    url = f"https://images.tls.test:{s2.port}/disk.raw"
    assert len(_drain(TemplateSource(format="RAW", url=url, fetch=policy()))) == 1 << 20
    assert sni == ["images.tls.test"] and s2.hits == [("/disk.raw", f"images.tls.test:{s2.port}")]
    # Same address, a name the certificate does not cover: refused by the certificate check.
    with pytest.raises(OperationFailed, match="hostname 'other.tls.test' doesn't match"):
        open_source(TemplateSource(format="RAW", url=f"https://other.tls.test:{s2.port}/disk.raw",
                                   fetch=policy()))
    assert len(s2.hits) == 1
