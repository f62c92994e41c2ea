"""gunicorn's access log without secrets (gunicorn.conf.py: logger_class).

gunicorn's default line has the whole request line ("%(r)s") and the Referer, so every
secret a client puts in a query string reached the log: API passwords (login, addHost),
extension and host details, signatures, console tokens, signed upload URLs. Here the
request line, the query and the Referer keep every parameter's name but not the values
of those that may hold a secret."""
from __future__ import annotations

import re
from urllib.parse import quote_plus, unquote_plus, urlsplit, urlunsplit

from gunicorn.glogging import Logger

# Parameter names (lower case) whose values are never logged. Map parameters
# (details[0].password, externaldetails[1].token) are matched on their whole name.
SECRET = re.compile(r"pass|secret|key|sig|token|credential|details|userdata|cert|expires", re.I)
NOT_SECRET = {"apikey", "keyword", "keypair", "keypairs"}  # names, not secrets: kept for diagnosis
MASK = "***"


def redact_query(query: str) -> str:
    """The query string with the values of secret-looking parameters replaced. Split by hand,
    not parsed and encoded again (parse_qsl + urlencode cost 0.06 ms a request, twice): only a
    masked parameter is rewritten (its name decoded, as a client may encode any letter of it);
    every other one stays as the client sent it."""
    if not query:
        return query
    parts = query.split("&")
    for i, part in enumerate(parts):
        name, eq, _ = part.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name)
        if SECRET.search(name) and name.lower() not in NOT_SECRET:
            parts[i] = f"{quote_plus(name, safe='[]*')}={MASK}"
    return "&".join(parts)


def redact_uri(uri: str) -> str:
    """A request URI or a full URL (the Referer) with its query redacted."""
    if "?" not in uri:
        return uri
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(query=redact_query(parts.query)))


class RedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        query = redact_query(environ.get("QUERY_STRING") or "")  # once: the request line has it too
        path, mark, _ = environ["RAW_URI"].partition("?")
        atoms["r"] = "%s %s %s" % (environ["REQUEST_METHOD"], f"{path}?{query}" if mark else path,
                                   environ["SERVER_PROTOCOL"])
        atoms["q"] = query
        atoms["f"] = redact_uri(environ.get("HTTP_REFERER", "-"))
        # Headers and the environment are atoms too ({cookie}i, {query_string}e): a
        # custom access_log_format must not bring the secrets back.
        for name in list(atoms):
            if name.startswith("{") and name[-2:] in ("}i", "}e"):
                low = name.lower()
                if low in ("{cookie}i", "{authorization}i", "{x-auth-token}i", "{http_cookie}e",
                           "{http_authorization}e"):
                    atoms[name] = MASK
                elif low in ("{query_string}e",):
                    atoms[name] = atoms["q"]
                elif low in ("{raw_uri}e", "{referer}i", "{http_referer}e"):
                    atoms[name] = redact_uri(str(atoms[name]))
        return atoms
