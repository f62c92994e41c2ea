"""Network command modules (CloudStack's network API, one module per family)."""
from app.api.commands.network import addresses, networks, routers, rules  # noqa: F401
from app.api.commands.network import nics, secgroups  # noqa: F401
from app.api.commands.network import offerings, physical, ranges  # noqa: F401
