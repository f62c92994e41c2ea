"""Secrets at rest: Fernet with the key from NUBO_CREDENTIALS_KEY or the instance dir."""
from __future__ import annotations

import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app


def _fernet() -> Fernet:
    return _fernet_of(current_app.config["CREDENTIALS_KEY"])


@lru_cache(maxsize=8)
def _fernet_of(key: str) -> Fernet:
    return Fernet(key.encode())


def encrypt(text: str) -> str:
    return _fernet().encrypt(text.encode()).decode()


def decrypt(token: str) -> str:
    return _decrypt(current_app.config["CREDENTIALS_KEY"], token)


def _decrypt(key: str, token: str) -> str:
    try:
        return _fernet_of(key).decrypt(token.encode()).decode()
    except InvalidToken as e:  # wrong NUBO_CREDENTIALS_KEY for this database
        raise RuntimeError("cannot decrypt stored credentials: wrong credentials key") from e


_decrypted = lru_cache(maxsize=4096)(_decrypt)


def decrypt_cached(token: str) -> str:
    """decrypt() remembered per token (and key): an API user's secret is needed in clear at every
    signed call. A new secret is a new token; the cache holds what the database holds anyway."""
    return _decrypted(current_app.config["CREDENTIALS_KEY"], token)


def encrypt_json(data: dict) -> str | None:
    return encrypt(json.dumps(data)) if data else None


def decrypt_json(token: str | None) -> dict:
    return json.loads(decrypt(token)) if token else {}
