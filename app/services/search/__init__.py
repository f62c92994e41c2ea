"""The portal's global search: one keyword across the kinds of things a caller may see.

Admins: zones, hosts, VMs, templates, accounts; users: their VMs and the templates they
may use. Each kind is its service's own list (its visibility rules, its name index), one
page of `limit` rows and the total, so a search costs a fixed number of queries
whatever the size of the cloud."""
from __future__ import annotations

from dataclasses import dataclass, field

from app.services import accounts, hosts, templates, vms, zones

LIMIT = 10  # rows of each kind on the results page (the total links to the full list)
MIN_LENGTH = 2  # a shorter keyword matches too much to be useful


@dataclass
class Hits:
    kind: str  # "vms", "zones", "hosts", "templates", "accounts"
    label: str
    rows: list = field(default_factory=list)
    total: int = 0


def search(caller, keyword: str, limit: int = LIMIT) -> list[Hits]:
    """The kinds with their first `limit` matches (by name), kinds with none included (their
    total is 0), in the order the results page shows them."""
    keyword = (keyword or "").strip()
    if len(keyword) < MIN_LENGTH:
        return []
    page = (1, limit)
    found = [Hits("vms", "Virtual machines", *vms.list_vms(caller, keyword=keyword, page=page))]
    found.append(Hits("templates", "Templates", *templates.list_templates(
        caller, template_filter="all" if caller.is_admin else "executable", keyword=keyword, page=page)))
    if caller.is_admin:
        found += [Hits("zones", "Zones", *zones.list_zones(keyword=keyword, page=page, sort="name")),
                  Hits("hosts", "Hosts", *hosts.list_hosts(keyword=keyword, page=page, sort="name")),
                  Hits("accounts", "Accounts", *accounts.list_accounts(caller, keyword=keyword, listall=True,
                                                                      page=page))]
    return found
