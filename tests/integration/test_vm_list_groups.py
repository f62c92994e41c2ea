"""The VM list's instance group filter on SQLite (its query, not the database, is the point)."""
from __future__ import annotations

import re

from app.services import accounts
from tests.integration.test_vm_pages import _engines, world  # noqa: F401  (fixtures)


def test_admin_list_offers_one_page_of_instance_groups(app, world, auth, client, monkeypatch):
    """The admin's VM list does not read every account's instance groups: one page of them
    (GROUP_CHOICES), the chosen account's when one is picked, the URL's group kept."""
    from app.services import instance_groups
    from app.web import vms as vm_pages
    monkeypatch.setattr(vm_pages, "GROUP_CHOICES", 2)
    with app.app_context():
        admin = accounts.get_user("admin")
        made = {n: instance_groups.create(admin, n, account=a).uuid
                for n, a in (("a1", "alice"), ("a2", "alice"), ("a3", "alice"), ("b1", "bob"))}
    auth.login("admin")

    def group_options(url):
        html = client.get(url).get_data(as_text=True)
        m = re.search(r'<select name="group" aria-label="([^"]+)".*?</select>', html, re.S)
        return (m.group(1), re.findall(r'<option value="([^"]+)"', m.group(0))) if m else (None, [])

    label, options = group_options("/vms/")
    assert len(options) == 2 and label == "Instance group (first 2 of 4; choose an account)"
    assert group_options("/vms/?account=bob") == ("Instance group", [made["b1"]])
    label, options = group_options(f"/vms/?group={made['b1']}")
    assert made["b1"] in options and len(options) == 3
