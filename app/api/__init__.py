"""The CloudStack-compatible API at /client/api (see app/api/registry.py to add commands)."""
from app.api.views import bp  # noqa: F401


def _register_job_formatter() -> None:
    """Jobs answer with model objects; the API puts them in CloudStack's shape."""
    from app.api.serializers import serialize
    from app.jobs import service
    service.set_formatter(serialize)


_register_job_formatter()
