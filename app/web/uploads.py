"""Nubo's secondary-storage-VM endpoints. Downloads: an extract's URL
(/download/<token>/<name>, see app.services.transfers.extracts). Uploads: the endpoints
behind getUploadParamsForTemplate/Iso (/upload/template) and getUploadParamsForVolume
(/upload/volume), CloudStack's SSVM upload URL: POST the file with the X-signature, X-metadata and X-expires
headers, as a raw body or as the `file` field of a multipart form. The body is
streamed into secondary storage chunk by chunk, never held in memory.
Authorised by the signature alone (no session, no CSRF token: API clients use it).

Under the Procfile this runs in its own `upload` process (NUBO_PROCESS=upload), as
CloudStack posts uploads to its SSVM rather than to the management server: slow
uploads hold that process's threads, never the web's. Each process takes at most
UPLOAD_SLOTS uploads at once (more get 503 + Retry-After at once, nothing read), and
an upload that sends nothing for UPLOAD_IDLE_TIMEOUT seconds is ended (408, the
partial file removed, the template left in Error so the URL can be used again)."""
from __future__ import annotations

import threading

from flask import Blueprint, current_app, jsonify, request, send_file
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from app.extensions import csrf
from app.services import templates
from app.services.transfers import volume_uploads
from app.services.errors import ServiceError

bp = Blueprint("uploads", __name__)
CHUNK = 1 << 20
# The browser's upload page posts here from the portal's origin (another port under the
# Procfile): the signature authorises, never a cookie, so any origin may (as the SSVM's).
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type, X-signature, X-metadata, X-expires",
        "Access-Control-Max-Age": "600"}
# The endpoints the upload process serves; everything else is the web process's.
UPLOAD_PROCESS_ENDPOINTS = {"uploads.upload", "uploads.upload_volume", "uploads.download", "ops.healthz",
                            "ops.readyz", "static"}

_slots_lock = threading.Lock()
_slots: dict[int, threading.BoundedSemaphore] = {}


def _slot() -> threading.BoundedSemaphore:
    n = current_app.config.get("UPLOAD_SLOTS", 8)
    with _slots_lock:
        return _slots.setdefault(n, threading.BoundedSemaphore(n))


class Stalled(Exception):
    """The client sent nothing for UPLOAD_IDLE_TIMEOUT seconds."""


def _reads(stream):
    """stream.read, with a socket timeout turned into Stalled."""
    def read(n):
        try:
            return stream.read(n)
        except TimeoutError:
            raise Stalled() from None
    return read


def _raw_chunks(read):
    while chunk := read(CHUNK):
        yield chunk


def _multipart_file_chunks(read, boundary: bytes):
    """The bytes of the form's `file` field, as they arrive."""
    decoder = MultipartDecoder(boundary)
    in_file = False
    while True:
        chunk = read(CHUNK)
        decoder.receive_data(chunk or None)
        event = decoder.next_event()
        while not isinstance(event, (NeedData, Epilogue)):
            if isinstance(event, File):
                in_file = event.name == "file"
            elif isinstance(event, Field):
                in_file = False
            elif isinstance(event, Data) and in_file and event.data:
                yield event.data
            event = decoder.next_event()
        if isinstance(event, Epilogue) or not chunk:
            return


def _client_socket():
    """The connection's socket (gunicorn's or werkzeug's server), for a read timeout."""
    return request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")


def _answer(body: dict, status: int = 200, **headers):
    resp = jsonify(body)
    resp.status_code = status
    resp.headers.update({**CORS, **headers})
    return resp


@bp.before_app_request
def _upload_process_serves_uploads_only():
    if current_app.config.get("PROCESS") == "upload" and request.endpoint not in UPLOAD_PROCESS_ENDPOINTS:
        return _answer({"errorcode": 404, "errortext": "This is the upload server"}, 404)
    return None


@bp.route("/upload/template", methods=["POST", "OPTIONS"])
@csrf.exempt
def upload():
    def done(t, ref, chunks, total):
        templates.receive_upload(t, ref, chunks, total)
        return {"id": t.uuid, "status": "Download Complete", "size": t.size}
    return _upload("template", templates.check_upload, done)


@bp.route("/upload/volume", methods=["POST", "OPTIONS"])
@csrf.exempt
def upload_volume():
    """getUploadParamsForVolume's postURL: the same headers, the same streaming."""
    def done(v, ref, chunks, total):
        volume_uploads.receive_upload(v, ref, chunks, total)
        return {"id": v.uuid, "status": "Download Complete", "state": "Uploaded", "size": v.size}
    return _upload("volume", volume_uploads.check_upload, done)


def _upload(kind: str, check, receive):
    """check(metadata, expires, signature) → (object, its copy's row); receive(object, row,
    chunks, total) streams the body in and answers the JSON body of a success."""
    if request.method == "OPTIONS":  # CORS preflight
        return _answer({}, 204)
    if current_app.config.get("PROCESS") == "web":
        # Never here under the Procfile: the signed URL names the upload process.
        return _answer({"errorcode": 421, "errortext": f"Uploads go to {templates.upload_url(kind)}"}, 421)
    h = request.headers
    try:
        t, ref = check(h.get("X-metadata", ""), h.get("X-expires", ""), h.get("X-signature", ""))
    except ServiceError as e:
        return _answer({"errorcode": e.code, "errortext": e.message}, e.code if e.code < 600 else 400)
    slot = _slot()
    if not slot.acquire(blocking=False):
        return _answer({"errorcode": 503, "errortext": "The upload server is busy with other uploads; "
                        "try again shortly"}, 503, **{"Retry-After": "30"})
    idle = current_app.config.get("UPLOAD_IDLE_TIMEOUT", 60)
    sock = _client_socket()
    stalled = False
    try:
        if sock is not None and idle:
            sock.settimeout(idle)  # per read: a trickling client keeps it; a silent one is ended
        read = _reads(request.stream)
        mimetype, options = parse_options_header(request.content_type or "")
        if mimetype == "multipart/form-data" and options.get("boundary"):
            chunks, total = _multipart_file_chunks(read, options["boundary"].encode()), None
        else:
            chunks, total = _raw_chunks(read), request.content_length

        def watched():
            nonlocal stalled
            try:
                yield from chunks
            except Stalled:
                stalled = True
                raise
        body = receive(t, ref, watched(), total)
    except ServiceError as e:
        if stalled:
            return _answer({"errorcode": 408, "errortext": f"The upload sent nothing for {idle:g} s and was "
                            "ended; post the file again"}, 408)
        return _answer({"errorcode": e.code, "errortext": e.message}, e.code if e.code < 600 else 400)
    finally:
        slot.release()
    return _answer(body)


@bp.route("/download/<token>/<path:name>", methods=["GET", "HEAD"])
def download(token: str, name: str):
    """An extract's URL (extractTemplate / extractIso / extractVolume): the token is the only
    credential; a wrong, expired or ended one gets 404. Served with Range support."""
    from app.services.transfers import extracts
    try:
        x, path = extracts.for_download(token)
    except ServiceError as e:
        return _answer({"errorcode": 404, "errortext": e.message}, 404)
    resp = send_file(path, mimetype="application/octet-stream", as_attachment=True, download_name=x.file_name,
                     conditional=True, max_age=0)
    resp.headers["Cache-Control"] = "private, no-store"
    return resp
