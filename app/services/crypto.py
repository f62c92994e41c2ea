"""Secrets at rest: Fernet with the key from NUBO_CREDENTIALS_KEY or the instance dir."""
from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app


def _fernet() -> Fernet:
    return Fernet(current_app.config["CREDENTIALS_KEY"].encode())


def encrypt(text: str) -> str:
    return _fernet().encrypt(text.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as e:  # wrong NUBO_CREDENTIALS_KEY for this database
        raise RuntimeError("cannot decrypt stored credentials: wrong credentials key") from e


def encrypt_json(data: dict) -> str | None:
    return encrypt(json.dumps(data)) if data else None


def decrypt_json(token: str | None) -> dict:
    return json.loads(decrypt(token)) if token else {}
