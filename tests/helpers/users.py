"""Users for tests whose passwords predate the password policy."""
from __future__ import annotations

import secrets

from app.extensions import db
from app.services import accounts


def existing_user(username: str, password: str, **kw):
    """A user with a password shorter or weaker than the policy allows, as an installation
    made before the policy has them (they keep working until changed): created with a
    strong throwaway password, then given `password`'s hash. Call in an app context."""
    user = accounts.create_user(username, "T3st-" + secrets.token_urlsafe(16), **kw)
    user.password_hash = accounts.hash_password(password)
    db.session.commit()
    return user
