"""The command registry: every API command is declared once, here-shaped.

How to add a command (in a module of app/api/commands/, imported by
app/api/commands/__init__.py):

    @command("listZones", "Lists zones", response="zone", list=True, params=[
        Param("name", "string", "the zone's name"),
        Param("available", "boolean", "only zones with capacity"),
    ])
    def list_zones(ctx, p):
        return zones.list_zones(ctx.user, name=p.get("name"), page=ctx.page)   # -> (rows, total)

- `params` are validated before the handler runs (types: uuid, string, integer,
  long, boolean, date, list, map; `required=True`); a bad one is a 431 naming it.
- `role="admin"` commands are open to Admin-type roles only, `role="domainadmin"` ones to
  Admin and DomainAdmin role types (as if declared `authorized=(Admin, DomainAdmin)`), the
  others to every role type; the caller's role rules come first (app/services/roles.py): a
  command the role may not call gets CloudStack's 432 "The API [x] does not exist or is not
  available...". So the default Domain Admin role's rules decide what domain admins may call;
  which accounts and objects they reach is app/services/access.py's subtree rule.
- `list=True` commands also get id, keyword, page, pagesize, listall, account,
  domainid declared automatically; the handler returns (rows, total) and `ctx.page`
  holds the paging. Rows are serialized with the serializer registered for
  `response` (see app/api/serializers.py: `@serializer("zone")`).
- A single-object command returns a model (serialized by `response`) or a dict.
- `is_async=True`: the handler returns the AsyncJob from `jobs.submit(...)`; the
  answer is {"jobid"} (plus {"id"} when the handler sets job.instance_id and
  `async_returns_id=True`), and queryAsyncJobResult reads the job row.
- Handlers call ONE service function; business rules never live here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

ADMIN, USER = "admin", "user"
DOMAIN_ADMIN = "domainadmin"  # root admins and domain admins (CloudStack's RoleType.Admin, DomainAdmin)


@dataclass(frozen=True)
class Param:
    name: str
    type: str = "string"  # uuid string integer long boolean date list map
    description: str = ""
    required: bool = False
    # for list params: type of each element (e.g. "uuid")
    item_type: str = "string"
    length: int = 4096
    # A list param whose empty value means "none" (an empty list reaches the command, as
    # CloudStack's ParamProcessWorker makes one): updateVMAffinityGroup's affinitygroupids=
    # clears the VM's groups. Elsewhere an empty value is left out, as if not given.
    empty_means_none: bool = False


@dataclass
class Command:
    name: str
    description: str
    handler: Callable[..., Any]
    params: list[Param] = field(default_factory=list)
    role: str = USER
    is_async: bool = False
    response: str | None = None  # object name in the response ("zone", "user", ...)
    list: bool = False
    async_returns_id: bool = False
    since: str = "4.19.0"
    # Commands that change state; refused on GET when enforce.post.requests.and.timestamps is on.
    changes_state: bool = True
    # Some CloudStack create commands answer with a list of one (addHost, registerTemplate).
    returns_list_of_one: bool = False
    anonymous: bool = False  # login
    # Role types (Admin, ResourceAdmin, DomainAdmin, User) the command is open to when no rule of
    # the caller's role names it (CloudStack's @APICommand(authorized=...)); empty: from `role`.
    authorized: tuple[str, ...] = ()

    @property
    def lower(self) -> str:
        return self.name.lower()

    @property
    def reads_only(self) -> bool:
        """list* and query* commands write nothing: on PostgreSQL they run without a transaction
        (app/engine.py read_only; a write there fails the tests). By name, not by `list`: some
        commands that change state answer with a list (updateResourceCount)."""
        return self.lower.startswith(("list", "query"))


LIST_PARAMS = [
    Param("id", "uuid", "the ID of the object"),
    Param("keyword", "string", "List by keyword"),
    Param("page", "integer", "the page to return (1-based)"),
    Param("pagesize", "integer", "the number of items per page"),
    Param("listall", "boolean", "true to list everything the caller may see, not only its own"),
    Param("account", "string", "list resources of this account (admins)"),
    Param("domainid", "uuid", "list resources of this domain (admins)"),
    Param("isrecursive", "boolean", "with domainid: also the domains below it"),
    Param("projectid", "uuid", "list objects of this project (-1: of every project of the caller)"),
]
# List commands that are not about objects an account owns: no projectid.
NO_PROJECT = {"listusers", "listaccounts", "listdomains", "listdomainchildren", "listprojects",
              "listprojectaccounts", "listprojectinvitations", "listzones", "listhosts", "listpods", "listclusters",
              "liststoragepools", "listimagestores", "listserviceofferings", "listdiskofferings",
              "listnetworkofferings", "listostypes", "listoscategories", "listconfigurations", "listcapabilities",
              "listhypervisors", "listhypervisorcapabilities", "listapis", "listphysicalnetworks",
              "listtraffictypes", "listnetworkserviceproviders", "listsupportednetworkservices", "listregions"}

# Commands with an `account` parameter that is not the owner of something made.
NO_PROJECT_CREATE = {"createaccount", "createuser", "addaccounttoproject", "deleteaccountfromproject",
                     "createproject", "updateproject"}

# Commands whose projectid names the project they are about, not the request's scope: an
# invitee answers (or lists) the invitations of a project it is not a member of yet.
NOT_SCOPE = {"updateprojectinvitation", "listprojectinvitations"}

COMMANDS: dict[str, Command] = {}  # by lower-case name


def command(name: str, description: str, *, params: list[Param] | None = None, role: str = USER,
            is_async: bool = False, response: str | None = None, list: bool = False,
            async_returns_id: bool = False, returns_list_of_one: bool = False,
            anonymous: bool = False, changes_state: bool | None = None, authorized: tuple[str, ...] = ()):
    def decorate(fn):
        declared = [*(params or [])]
        if list:
            names = {p.name for p in declared}
            declared += [p for p in LIST_PARAMS if p.name not in names
                         and not (p.name == "projectid" and name.lower() in NO_PROJECT)]
        elif any(p.name == "account" for p in declared) and not any(p.name == "projectid" for p in declared) \
                and name.lower() not in NO_PROJECT_CREATE:
            # CloudStack takes projectid wherever a command takes the owner's account.
            declared.append(Param("projectid", "uuid", "the project that owns the object"))
        state = changes_state if changes_state is not None else not (
            list or name.startswith(("list", "get", "query")))
        if role == DOMAIN_ADMIN and not authorized:  # the roles' rules decide (app/services/roles.py)
            auth = ("Admin", "DomainAdmin")
        else:
            auth = authorized
        COMMANDS[name.lower()] = Command(name, description, fn, declared, role, is_async, response, list,
                                         async_returns_id, changes_state=state,
                                         returns_list_of_one=returns_list_of_one, anonymous=anonymous,
                                         authorized=tuple(auth))
        return fn
    return decorate


def lookup(name: str) -> Command | None:
    return COMMANDS.get((name or "").lower())


def all_commands() -> list[Command]:
    return sorted(COMMANDS.values(), key=lambda c: c.name)
