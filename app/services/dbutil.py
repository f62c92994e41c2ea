"""Database helpers shared by services."""
from __future__ import annotations

from sqlalchemy.exc import DBAPIError

# A lost race the database resolved by aborting one transaction: retry it.
# MariaDB/MySQL: 1213 deadlock, 1205 lock wait timeout; PostgreSQL: 40P01 deadlock, 40001 serialization.
_RETRYABLE_MYSQL = {1213, 1205}
_RETRYABLE_PG = {"40P01", "40001"}


def is_retryable(e: Exception) -> bool:
    if not isinstance(e, DBAPIError) or e.orig is None:
        return False
    orig = e.orig
    code = getattr(orig, "args", [None])[0] if orig.args else None
    if isinstance(code, int) and code in _RETRYABLE_MYSQL:
        return True
    return getattr(orig, "sqlstate", None) in _RETRYABLE_PG or getattr(orig, "pgcode", None) in _RETRYABLE_PG
