"""The CloudStack-compatible API at /client/api (see app/api/registry.py to add commands)."""
from app.api.views import bp  # noqa: F401
