"""Command modules: importing this package declares every command."""
from app.api.commands import accounts, base, configurations, hypervisors, jobs  # noqa: F401
