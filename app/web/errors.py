"""Error pages: HTML for the browser, a JSON body for API and fragment callers."""
from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

log = logging.getLogger("nubo.web")

MESSAGES = {
    400: "The request could not be understood.",
    403: "You do not have permission to open this page.",
    404: "There is nothing here.",
    405: "That method is not allowed here.",
    500: "Something went wrong on our side. The error has been logged.",
}


def _wants_json() -> bool:
    return request.path.startswith("/client/api") or (
        request.accept_mimetypes.best == "application/json")


def _render(status: int, message: str):
    if _wants_json():
        return jsonify({"errorcode": status, "errortext": message}), status
    template = "errors/error.html"
    return render_template(template, status=status, message=message), status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(e: CSRFError):
        log.warning("CSRF refusal on %s %s from %s: %s", request.method, request.path,
                    request.remote_addr, e.description)
        return _render(400, "The form expired or was not sent from Nubo (missing or invalid "
                            "CSRF token). Reload the page and try again.")

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        return _render(e.code or 500, MESSAGES.get(e.code or 500, e.description or ""))

    @app.errorhandler(Exception)
    def unhandled(e: Exception):
        log.exception("Unhandled error on %s %s", request.method, request.path)
        return _render(500, MESSAGES[500])
