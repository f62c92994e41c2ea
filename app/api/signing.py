"""CloudStack's request signature (ApiServer.verifyRequest), exactly.

1. every parameter but `signature`, names as sent;
2. sorted case-sensitively;
3. `name=ENC(value)` joined with `&`, ENC = Java's URLEncoder with `+` as `%20`;
4. the whole string lower-cased, HMAC-SHA1 with the secret, Base64, compared in
   constant time.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote


def java_encode(value: str) -> str:
    return quote(value, safe="*").replace("~", "%7E")


def go_encode(value: str) -> str:
    """Go's url.QueryEscape with '+' as %20 (CloudMonkey): differs from Java on * and ~."""
    return quote(value, safe="~")


def canonical(params: dict[str, str], encode=java_encode) -> str:
    return "&".join(f"{k}={encode(params[k])}" for k in sorted(params) if k != "signature").lower()


def sign(params: dict[str, str], secret: str, encode=java_encode) -> str:
    digest = hmac.new(secret.encode(), canonical(params, encode).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify(params: dict[str, str], secret: str, signature: str) -> bool:
    """Java-style encoding as CloudStack; Go-style (CloudMonkey) accepted too."""
    given = (signature or "").encode()
    return any(hmac.compare_digest(sign(params, secret, enc).encode(), given)
               for enc in (java_encode, go_encode))
