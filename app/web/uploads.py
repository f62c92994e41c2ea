"""The upload endpoint behind getUploadParamsForTemplate/Iso (CloudStack's SSVM
upload URL): POST the file with the X-signature, X-metadata and X-expires
headers, as a raw body or as the `file` field of a multipart form. The body is
streamed into secondary storage chunk by chunk, never held in memory.
Authorised by the signature alone (no session, no CSRF token: API clients use it)."""
from __future__ import annotations

from flask import Blueprint, jsonify, request
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from app.extensions import csrf
from app.services import templates
from app.services.errors import ServiceError

bp = Blueprint("uploads", __name__)
CHUNK = 1 << 20


def _raw_chunks(stream):
    while chunk := stream.read(CHUNK):
        yield chunk


def _multipart_file_chunks(stream, boundary: bytes):
    """The bytes of the form's `file` field, as they arrive."""
    decoder = MultipartDecoder(boundary)
    in_file = False
    while True:
        chunk = stream.read(CHUNK)
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


@bp.route("/upload/template", methods=["POST"])
@csrf.exempt
def upload():
    h = request.headers
    try:
        t, ref = templates.check_upload(h.get("X-metadata", ""), h.get("X-expires", ""), h.get("X-signature", ""))
        mimetype, options = parse_options_header(request.content_type or "")
        if mimetype == "multipart/form-data" and options.get("boundary"):
            chunks, total = _multipart_file_chunks(request.stream, options["boundary"].encode()), None
        else:
            chunks, total = _raw_chunks(request.stream), request.content_length
        templates.receive_upload(t, ref, chunks, total)
    except ServiceError as e:
        return jsonify({"errorcode": e.code, "errortext": e.message}), e.code if e.code < 600 else 400
    return jsonify({"id": t.uuid, "status": "Download Complete", "size": t.size})
