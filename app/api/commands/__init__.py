"""Command modules: importing this package declares every command."""
from app.api.commands import accounts, base, configurations, hypervisors, infra, jobs, storage, templates, vms, volumes  # noqa: F401
from app.api.commands import keypairs, limits  # noqa: F401
from app.api.commands import consoles, infra_catalog  # noqa: F401
from app.api.commands import roles  # noqa: F401
from app.api.commands import snapshots  # noqa: F401
from app.api.commands import affinity  # noqa: F401
from app.api.commands import network  # noqa: F401
from app.api.commands import resource_details, tags  # noqa: F401
from app.api.commands import instance_groups, metrics, userdata, vm_admin  # noqa: F401
from app.api.commands import vm_snapshots  # noqa: F401
from app.api.commands import domains, project_invitations, projects  # noqa: F401
from app.api.commands import transfers  # noqa: F401
from app.api.commands import alerts  # noqa: F401
from app.api.commands import extensions  # noqa: F401

# The role checks (app/services/roles.py) get the command list from here: services never import the API.
from app.api.registry import COMMANDS as _COMMANDS  # noqa: E402
from app.services import roles as _roles  # noqa: E402

_roles.set_commands(_COMMANDS)
