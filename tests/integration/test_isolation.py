"""Isolation, generated from the registries: bob, a user, calls EVERY API command that
takes an id-like parameter (type uuid) and EVERY web route with a uuid segment with the
ids of objects that are not his (alice's VM, volumes, template, ISO, key pair, network,
jobs, events, user, account; the admins' VM, template, users and the whole
infrastructure: hosts, pods, clusters, pools, image stores, wizard drafts...). Each answer
must be exactly the answer to a random id that exists nowhere ("not found" is the same
whether the object is someone else's or missing: API 431/531/432/401, web 404/403), and no
row that is not bob's may change. New commands and routes are covered with no change
here; only ids that every account may legitimately use are left out (SHARED, each with
its reason). Required resource types and key/value maps are filled so that the id is looked
up (FILLER_BY_NAME, MAP_FILLER); alice's VM carries a resource detail.

The ids are taken from every table with a `uuid` column. A parameter or route that names a
table (virtualmachineid, /vms/<uuid>) is tried with all of that table's foreign ids (every
owner: same domain, other domain, project) and the first id of each other table (a lookup in
the wrong table); one whose table is not known (resourceid, tags) with every id. The values of a route's other
segments (<action>, <step>, ...) from the links and forms of the pages admin and alice
see (a crawl), so new actions are covered too. Bob is held at his resource limits, so
a command that ignores the foreign id cannot make something of his and mask the check.
"""
from __future__ import annotations

import html as htmllib
import json
import re
from collections import Counter
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from app.api.registry import ADMIN, all_commands
from app.extensions import db
from app.models import Account, AsyncJob, DownloadState, Network, SSHKeyPair, Template, TemplateStoreRef, new_uuid
from app.services import accounts, keypairs, limits, resource_details, vms, volumes
from app.services.network import networks
from app.services.snapshots import vm_snapshots
from tests.integration.test_quotas import api
from tests.integration.test_vm_pages import _engines, deploy, world  # noqa: F401  (fixtures)

# The two sweeps (every command and every route × every foreign id, thousands of calls) run on
# SQLite; the tests whose point is the access layer's SQL (lists with account/listall, names,
# a domain admin's subtree) run on all three databases.
GIB = 1 << 30
RANDOM = "5e1f0000-0000-4000-8000-00000000abcd"  # exists nowhere
ROOT_DOMAIN = "00000000-0000-0000-0000-000000000001"

# Ids every account may use: (table, predicate on the row, reason). Everything else that is
# not bob's is foreign to him.
SHARED = [
    ("zones", lambda r: True, "zones are listed and used by every account (listZones, deploy)"),
    ("service_offerings", lambda r: True, "service offerings are public in CloudStack"),
    ("disk_offerings", lambda r: True, "disk offerings are public in CloudStack"),
    ("network_offerings", lambda r: True, "network offerings are public in CloudStack (listNetworkOfferings)"),
    ("os_types", lambda r: True, "guest OS types are reference data"),
    ("os_categories", lambda r: True, "guest OS categories are reference data"),
    ("templates", lambda r: r.is_public, "public templates and ISOs are usable by every account"),
    ("networks", lambda r: r.account_id is None, "shared guest networks are usable by every account"),
    ("hypervisor_capabilities", lambda r: True, "what each hypervisor type can do: reference data that "
                                               "listHypervisorCapabilities shows everyone"),
    ("domains", lambda r: r.uuid == ROOT_DOMAIN, "ROOT is bob's own domain (listDomains shows it to him)"),
]
# Known differences, each reported, not yet fixed: (command, parameter) -> why.
KNOWN: dict = {}  # (command, parameter) -> why a foreign id may be answered; empty: none may
# Ids of others that a list may show bob: (command or "*", table) -> why.
OWNER = "the owner (accountid) of a public template or ISO, as CloudStack shows it"
SHOWN = {
    ("listTemplates", "accounts"): OWNER, ("listIsos", "accounts"): OWNER,
    ("listRoles", "roles"): "roles belong to no account: domain admins list the non-Admin ones (CloudStack's listRoles)",
}
# Bob's own objects for the parameters a call needs besides the one under test.
NOUNS = [("VirtualMachine", "vm"), ("Volume", "volume"), ("Iso", "iso"), ("Template", "template"),
         ("SSHKeyPair", "keypair"), ("User", "user"), ("Account", "account"), ("Network", "network"),
         ("DiskOffering", "diskoffering"), ("ServiceOffering", "offering"), ("Zone", "zone")]
FILLER = {"integer": "1", "long": "1", "boolean": "false", "date": "2024-01-01", "string": "x1"}
# Required parameters whose filler must be valid for the id under test to be looked up at all:
# a resource type (createTags, deleteTags, addResourceDetail, removeResourceDetail,
# listResourceDetails) and the key/value maps.
FILLER_BY_NAME = {("resourcetype", "string"): "UserVm"}
MAP_FILLER = {"details": {"details[0].key": "k1", "details[0].value": "v1"},
              "tags": {"tags[0].key": "k1", "tags[0].value": "v1"}}


@pytest.fixture
def scene(app, world, users, tmp_path):
    """Alice's and the admins' objects, bob's own, and bob held at his limits."""
    alice_vm = deploy(app, world, name="web1")
    admin_vm = deploy(app, world, user="admin", name="adm1")
    bob_vm = deploy(app, world, user="bob", name="bob1")
    deploy(app, world, name="stopped1", start=False)  # every state's actions are on some page
    gone = deploy(app, world, name="gone1")
    with app.app_context():
        alice, admin, bob = (accounts.get_user(n) for n in ("alice", "admin", "bob"))
        vms.destroy(alice, gone)
        tiny = db.session.scalar(select(Template.id).where(Template.uuid == world.template))
        ref = db.session.scalar(select(TemplateStoreRef).where(TemplateStoreRef.template_id == tiny))
        zone_id, store_id = ref.zone_id, ref.image_store_id
        offering = volumes.create_disk_offering(admin, name="d5", disk_size=5)
        own = {}
        for who in (alice, admin, bob):
            v = volumes.create_volume(who, name=f"data-{who.username}", zone_uuid=world.zone,
                                      disk_offering_uuid=offering.uuid)
            own[who.username] = {"volume": v.uuid}
        volumes.attach_volume(alice, own["alice"]["volume"], alice_vm)
        vm_snapshots.create(alice, alice_vm, name="alice-snap", memory=True)  # after the attach: it refuses them
        resource_details.add(alice, alice_vm, "UserVm", [{"key": "alice-detail", "value": "hers"}])
        for who, is_iso in ((alice, False), (alice, True), (admin, False)):  # private, ready in the zone
            t = Template(uuid=new_uuid(), name=f"{who.username}-{'iso' if is_iso else 'tpl'}",
                         format="ISO" if is_iso else "RAW", is_iso=is_iso,
                         hypervisor_type=None if is_iso else "Simulator",
                         account_id=who.account_id, size=GIB, physical_size=GIB, is_public=False)
            db.session.add(t)
            db.session.flush()
            db.session.add(TemplateStoreRef(template_id=t.id, zone_id=zone_id, image_store_id=store_id,
                                            state=DownloadState.DOWNLOADED, download_pct=100, size=GIB,
                                            install_path=f"template/tmpl/{t.id}/{t.uuid}.raw"))
        db.session.commit()
        # Alice's volume waiting for its browser upload (NotUploaded, a copy row on the image store),
        # and a download URL of her template (an extract): bob may use neither.
        from app.services.transfers import extracts, volume_uploads
        with app.test_request_context():  # its postURL is this server's
            volume_uploads.upload_params(alice, name="upload-alice", format="RAW", zone_uuid=world.zone)
        tpl = db.session.scalar(select(Template).where(Template.name == "alice-tpl"))
        tpl.extractable = True
        db.session.commit()
        extracts.extract_template(alice, tpl.uuid, zone_uuid=None, mode="HTTP_DOWNLOAD", is_iso=False,
                                  base="http://localhost")
        for who in (alice, bob):
            keypairs.create(who, f"key-{who.username}", key_type="ed25519")
        networks.create_network(admin, zone_uuid=world.zone, name="alice-net", cidr="10.77.0.0/24",
                                account_id=alice.account_id)
        other_domain(app, world, admin, alice)
        bob_key = db.session.scalar(select(SSHKeyPair.uuid).where(SSHKeyPair.account_id == bob.account_id))
        shared_net = db.session.scalar(select(Network.uuid).where(Network.account_id.is_(None)))
        for lim in limits.of_account(bob.account):  # at his limits: nothing new of his can be made
            limits.set_limit(admin, bob.account, lim.resource, lim.used)
        bob_job = db.session.scalar(select(AsyncJob.uuid).where(AsyncJob.account_id == bob.account_id))
        bob_ids = {"vm": bob_vm, "volume": own["bob"]["volume"], "keypair": bob_key, "user": bob.uuid,
                   "account": bob.account.uuid, "network": shared_net, "iso": world.iso, "template": world.template,
                   "zone": world.zone, "offering": world.small, "diskoffering": offering.uuid, "job": bob_job}
        return dict(bob_account=bob.account_id, bob=bob_ids)


def other_domain(app, world, admin, alice):
    """Beside bob: a domain "ops" with an account olga; a domain "sales" (and "emea" below it) with a user account carol and her VM,
    a domain admin sam of sales; a project of alice's (bob is no member) with its own VM,
    volume and key pair, and its pending invitation to the admin account."""
    from app.services import access, domains, project_invitations, projects
    sales = domains.create_domain(admin, "sales")
    emea = domains.create_domain(admin, "emea", sales.uuid)
    ops = domains.create_domain(admin, "ops")  # beside sales
    accounts.create_account_with_user(admin, "olga", "isolation-pass-1234", domainid=ops.uuid)
    accounts.create_account_with_user(admin, "sam", "isolation-pass-1234", accounttype=2, domainid=sales.uuid)
    accounts.create_account_with_user(admin, "carol", "isolation-pass-1234", domainid=emea.uuid)
    carol = accounts.get_user("carol")
    vms.deploy(carol, zone_uuid=world.zone, service_offering_uuid=world.small, template_uuid=world.template,
               name="carol1")
    project = projects.create_project(alice, "alice-proj")
    project_invitations.invite(alice, project, admin.account, None, "Regular")
    access.enter_scope(alice, project.uuid, listing=False)  # what the API's projectid does
    try:
        vms.deploy(alice, zone_uuid=world.zone, service_offering_uuid=world.small, template_uuid=world.template,
                   name="proj1")
        keypairs.create(alice, "key-proj", key_type="ed25519")
    finally:
        access.leave_scope()


# --- What may not change, and which ids are foreign ---------------------------------

def bob_rows(account_id) -> dict[str, set[int]]:
    """Primary keys of bob's rows in every table: his account, every row with his account_id,
    and every row pointing at one of those (his NICs, their addresses, his events, ...).
    (account_id may also be a set: the rows of several accounts.)"""
    ids_of = account_id if isinstance(account_id, set) else {account_id}
    owned: dict[str, set[int]] = {"accounts": set(ids_of)}
    for table in db.metadata.sorted_tables:  # parents first
        if "id" not in table.c:
            continue
        ids = set(owned.get(table.name, set()))
        if "account_id" in table.c:
            ids |= set(db.session.scalars(select(table.c.id).where(table.c.account_id.in_(ids_of))))
        for fk in table.foreign_keys:
            parent = owned.get(fk.column.table.name)
            if parent and fk.column.name == "id":
                ids |= set(db.session.scalars(select(table.c.id).where(fk.parent.in_(parent))))
        owned[table.name] = ids
    return owned


def snapshot(account_id: int) -> dict[str, set[tuple]]:
    """Every row that is not bob's, whole."""
    db.session.rollback()
    owned = bob_rows(account_id)
    out = {}
    for table in db.metadata.sorted_tables:
        rows = db.session.execute(select(table)).all()
        mine = owned.get(table.name, set())
        out[table.name] = {tuple(r) for r in rows if "id" not in table.c or r.id not in mine}
    return out


def diff(before: dict, after: dict) -> dict:
    return {t: {"gone": before[t] - after[t], "new": after[t] - before[t]} for t in before if before[t] != after[t]}


def foreign_ids(account_id: int) -> dict[str, tuple[str, str]]:
    """id -> (table, owner) for rows that are neither bob's nor SHARED: per table, up to two
    of each of the first two owners and one of each further owner."""
    owned = bob_rows(account_id)
    bob_uuids = {u for t in db.metadata.sorted_tables if "uuid" in t.c and "id" in t.c
                 for u in db.session.scalars(select(t.c.uuid).where(t.c.id.in_(owned.get(t.name, set()) or {-1})))}
    out: dict[str, tuple[str, str]] = {}
    for table in db.metadata.sorted_tables:
        if "uuid" not in table.c:
            continue
        taken: Counter = Counter()
        for r in db.session.execute(select(table)).all():
            if not r.uuid or r.uuid in bob_uuids or any(t == table.name and shared(r) for t, shared, _ in SHARED):
                continue
            owner = str(getattr(r, "account_id", None))
            # Two ids of each of the first two owners, one of each further owner (the other
            # domain's accounts, the project): every kind and owner, in bounded time.
            if taken[owner] < (2 if owner in list(taken)[:2] or len(taken) < 2 else 1):
                taken[owner] += 1
                out[r.uuid] = (table.name, owner)
    return out


# --- The API ------------------------------------------------------------------------

def uuid_params(cmd):
    return [p for p in cmd.params if p.type == "uuid" or (p.type == "list" and p.item_type == "uuid")]


# The table a parameter names: its foreign ids are all tried, other tables' by one id each
# (which still catches a lookup in the wrong table). A parameter not listed gets every id.
PARAM_TABLES = {
    "domainid": "domains", "parentdomainid": "domains", "projectid": "projects", "projectids": "projects",
    "virtualmachineid": "vm_instances", "vmid": "vm_instances", "networkid": "networks",
    "networkids": "networks", "associatednetworkid": "networks", "podid": "pods", "clusterid": "clusters",
    "hostid": "hosts", "roleid": "roles", "volumeid": "volumes", "accountid": "accounts",
    "templateid": "templates", "isoid": "templates", "vmsnapshotid": "vm_snapshots",
    "vmsnapshotids": "vm_snapshots", "snapshotid": "snapshots", "storageid": "storage_pools", "nicid": "nics",
    "securitygroupid": "security_groups", "securitygroupids": "security_groups", "userid": "users",
    "jobid": "async_jobs", "zoneid": "zones", "destzoneid": "zones", "sourcezoneid": "zones",
    "destzoneids": "zones", "ostypeid": "guest_os", "diskofferingid": "disk_offerings",
    "serviceofferingid": "service_offerings", "networkofferingid": "network_offerings",
}
ID_NOUNS = [("VirtualMachineSnapshot", "vm_snapshots"), ("VMSnapshot", "vm_snapshots"),
            ("VirtualMachine", "vm_instances"), ("Volume", "volumes"), ("Iso", "templates"),
            ("Template", "templates"), ("SSHKeyPair", "ssh_keypairs"), ("User", "users"),
            ("Account", "accounts"), ("Network", "networks"), ("Event", "events"),
            ("SecurityGroup", "security_groups"), ("Host", "hosts"), ("Pod", "pods"), ("Cluster", "clusters"),
            ("StoragePool", "storage_pools"), ("ImageStore", "image_stores"), ("RolePermission", "role_permissions"),
            ("Role", "roles"), ("ProjectInvitation", "project_invitations"), ("Project", "projects"),
            ("Domain", "domains"), ("AsyncJob", "async_jobs"), ("Nic", "nics")]


def ids_to_try(cmd, p, foreign: dict) -> list[str]:
    """Every foreign id of the table `p` names, and the first of each other table's."""
    if cmd.role == ADMIN:
        return list(foreign)[:3]  # admin commands: 432, whatever the id
    table = PARAM_TABLES.get(p.name) if p.name not in ("id", "ids") else \
        next((t for noun, t in ID_NOUNS if noun in cmd.name), None)
    return spread(foreign, table)


def spread(foreign: dict, table: str | None) -> list[str]:
    """Every foreign id of `table` (each owner: same domain, other domain, project), and the
    first id of each other table; every id when the table is not known."""
    if table is None:
        return list(foreign)
    out, tables = [], set()
    for x, (t, _) in foreign.items():
        if t == table or t not in tables:
            out.append(x)
            tables.add(t)
    return out


def own_value(cmd, name: str, bob: dict) -> str:
    by_name = {"zoneid": "zone", "templateid": "template", "serviceofferingid": "offering",
               "diskofferingid": "diskoffering", "networkids": "network", "networkid": "network",
               "virtualmachineid": "vm", "jobid": "job", "userid": "user", "accountid": "account"}
    if name == "domainid":
        return ROOT_DOMAIN
    kind = by_name.get(name) or (next((k for noun, k in NOUNS if noun in cmd.name), None) if name == "id" else None)
    return bob.get(kind) or RANDOM.replace("abcd", "ffff")


def call_args(cmd, target, value: str, bob: dict) -> dict:
    """The parameter under test set to `value`; every other required one filled (bob's own
    object for an id)."""
    args = {"command": cmd.name, target.name: value}
    for p in cmd.params:
        if p.required and p.name != target.name and p.type == "map":
            args.update(MAP_FILLER.get(p.name, {}))
        elif p.required and p.name != target.name:
            args[p.name] = own_value(cmd, p.name, bob) if p in uuid_params(cmd) else \
                FILLER_BY_NAME.get((p.name, p.type)) or FILLER.get(p.type, "x1")
    return args


def outcome(app, client, args: dict, sent: str, who: str = "bob") -> tuple[tuple, str]:
    """What bob got — an async job followed to its end —, as (status, body text), and
    the body with the id sent replaced (an error that repeats it compares with another's)."""
    status, body = api(app, client, who, **args)
    if status == 200 and set(body) & {"jobid"} and args["command"] != "queryAsyncJobResult":
        _, job = api(app, client, who, command="queryAsyncJobResult", jobid=body["jobid"])
        result = job.get("jobresult", {})
        status, body = ("job", job["jobstatus"]), {"errorcode": result.get("errorcode"),
                                                   "errortext": result.get("errortext")}
    text = json.dumps(body, sort_keys=True)
    return status, text, text.replace(sent, "<id>")


def same(got: tuple, ref: tuple) -> bool:
    """The same answer: to the letter, or but for the id sent (the id may also be in the
    answer for another reason, e.g. a shared template's owner: then only the letter counts)."""
    return got[:2] == ref[:2] or (got[0] == ref[0] and got[2] == ref[2])


@pytest.mark.timeout(1200)  # every command × the foreign ids: ~2 min on SQLite with the machine shared
def test_every_api_command_refuses_others_ids(app, scene, client):
    with app.app_context():
        foreign = foreign_ids(scene["bob_account"])
    kinds = {table for table, _ in foreign.values()}
    assert {"vm_instances", "volumes", "templates", "ssh_keypairs", "networks", "async_jobs", "events", "users",
            "accounts", "hosts", "pods", "clusters", "storage_pools", "image_stores", "domains",
            "projects", "project_invitations"} <= kinds, kinds
    seen = Counter()
    failures = []
    with app.app_context():
        before = snapshot(scene["bob_account"])
    for cmd in all_commands():
        params = uuid_params(cmd)
        if not params or cmd.anonymous:
            continue
        for p in params:
            ids = ids_to_try(cmd, p, foreign)
            ref = outcome(app, client, call_args(cmd, p, RANDOM, scene["bob"]), RANDOM)
            for x in ids:
                got = outcome(app, client, call_args(cmd, p, x, scene["bob"]), x)
                seen[(cmd.name, got[0])] += 1
                if (cmd.name, p.name) in KNOWN:
                    continue
                if not same(got, ref) or got[0] == 200 and not cmd.list:
                    failures.append(f"{cmd.name} {p.name}={foreign[x]}: {got[:2]} (a missing id: {ref[:2]})")
        with app.app_context():  # nothing runs between two commands: one's after is the next one's before
            after = snapshot(scene["bob_account"])
        changed, before = diff(before, after), after
        if changed:
            failures.append(f"{cmd.name} changed rows that are not bob's: {changed}")
    assert not failures, "\n".join(failures[:40])
    assert any(name == "stopVirtualMachine" for name, _ in seen) and any(name == "listVolumes" for name, _ in seen)


@pytest.mark.db
def test_lists_show_nothing_of_others_with_account_and_listall(app, scene, client):
    """Every list command with account=alice, listall=true: no foreign id in bob's answer."""
    with app.app_context():
        foreign = foreign_ids(scene["bob_account"])
    leaks = []
    for cmd in all_commands():
        if not cmd.list or cmd.role == ADMIN:
            continue
        status, body = api(app, client, "bob", command=cmd.name, account="alice", listall="true")
        leaks += [f"{cmd.name}: {foreign[i]}" for i in foreign if i in json.dumps(body)
                  and not {("*", foreign[i][0]), (cmd.name, foreign[i][0])} & set(SHOWN)]
    assert not leaks, leaks


@pytest.mark.db
def test_key_pairs_by_name_stay_isolated(app, scene, client):
    status, body = api(app, client, "bob", command="deleteSSHKeyPair", name="key-alice")
    assert status == 431
    status, body = api(app, client, "bob", command="deleteSSHKeyPair", name="key-alice", account="alice")
    assert status == 531
    status, body = api(app, client, "bob", command="deployVirtualMachine", zoneid=scene["bob"]["zone"],
                       templateid=scene["bob"]["template"], serviceofferingid=scene["bob"]["offering"],
                       keypair="key-alice")
    assert status == 431 and "No SSH key pair named key-alice" in body["errortext"]
    with app.app_context():
        assert db.session.scalar(select(SSHKeyPair.id).where(SSHKeyPair.name == "key-alice")) is not None


# --- The web ------------------------------------------------------------------------

LINK = re.compile(r'(href|action|hx-get|hx-post)="(/[^"]*)"')
SKIP = ("/logout", "/static/", "/client/api", "/upload/")


def crawl(client) -> list[str]:
    """Every same-site URL in the pages reachable from the argument-less GET pages."""
    queue = [r.rule for r in client.application.url_map.iter_rules() if "GET" in r.methods and not r.arguments]
    seen, found = set(), []
    while queue and len(seen) < 400:
        path = queue.pop(0)
        if path in seen or path.startswith(SKIP):
            continue
        seen.add(path)
        resp = client.get(path)
        if resp.status_code != 200 or resp.mimetype != "text/html":
            continue
        for attr, url in LINK.findall(resp.get_data(as_text=True)):
            url = htmllib.unescape(url)
            found.append(url)
            if attr in ("href", "hx-get"):
                queue.append(urlsplit(url).path)
    return found


def id_args(rule) -> list[str]:
    return [a for a in rule.arguments if a.endswith("uuid")]


# The table a route's <uuid> names, by its path's start (longest first).
ROUTE_TABLES = [("/admin/accounts", "accounts"), ("/admin/hosts", "hosts"), ("/admin/pods", "pods"),
                ("/admin/clusters", "clusters"), ("/admin/storage", "storage_pools"), ("/admin/zones", "zones"),
                ("/admin/roles", "roles"), ("/downloads/template", "templates"), ("/downloads/volume", "volumes"),
                ("/vmsnapshots", "vm_snapshots"), ("/vms", "vm_instances"), ("/volumes", "volumes"),
                ("/templates", "templates"), ("/networks", "networks"), ("/projects", "projects"),
                ("/securitygroups", "security_groups"), ("/snapshots", "snapshots"), ("/jobs", "async_jobs"),
                ("/portal/keys", "ssh_keypairs")]


def route_ids(rule, foreign: dict) -> list[str]:
    """Every foreign id of the table the route names, and the first of each other table's;
    every id for a route whose table is not known (tags' resource_uuid, ...)."""
    table = next((t for start, t in ROUTE_TABLES if rule.rule.startswith(start + "/")), None)
    return spread(foreign, table if id_args(rule) == ["uuid"] else None)


def test_every_web_route_refuses_others_ids(app, scene, client, auth):
    urls = []
    for who in ("admin", "alice"):
        auth.login(who)
        urls += crawl(client)
        auth.logout()
    adapter = app.url_map.bind("localhost")
    values: dict[tuple[str, str], set[str]] = {}  # (endpoint, argument) -> values seen in the pages
    for url in urls:
        for method in ("GET", "POST"):
            try:
                endpoint, args = adapter.match(urlsplit(url).path, method)
            except Exception:  # noqa: BLE001 - not a route for this method
                continue
            for name, value in args.items():
                if not name.endswith("uuid"):
                    values.setdefault((endpoint, name), set()).add(str(value))
    with app.app_context():
        foreign = foreign_ids(scene["bob_account"])
        before = snapshot(scene["bob_account"])
    auth.login("bob")
    token = auth.csrf()
    failures, tried = [], Counter()
    for rule in app.url_map.iter_rules():
        if not id_args(rule):
            continue
        others = [a for a in rule.arguments if a not in id_args(rule)]
        combos = [{}]
        for name in others:
            combos = [{**c, name: v} for c in combos for v in sorted(values.get((rule.endpoint, name), {"x"}))]
        for method in sorted(rule.methods & {"GET", "POST"}):
            for combo in combos:
                def go(value):
                    path = rule.build({**combo, **{a: value for a in id_args(rule)}}, append_unknown=False)[1]
                    if method == "GET":
                        return client.get(path).status_code
                    return client.post(path, data={"csrf_token": token},
                                       headers={"X-CSRFToken": token}).status_code
                ref = go(RANDOM)
                for x in route_ids(rule, foreign):
                    got = go(x)
                    tried[rule.endpoint] += 1
                    if got != ref or got not in (403, 404):
                        failures.append(f"{method} {rule.rule} {combo} {foreign[x]}: {got} (a missing id: {ref})")
    with app.app_context():
        changed = diff(before, snapshot(scene["bob_account"]))
    assert not failures, "\n".join(failures[:40])
    assert not changed, changed
    # The crawl found the actions of the VM and volume pages, so they were tried.
    assert {"start", "stop", "destroy", "recover", "expunge"} <= values.get(("vms.act", "action"), set())
    assert {"attach", "resize"} <= values.get(("volumes.act", "action"), set())
    assert {"vms.detail", "vms.act", "volumes.detail", "volumes.act", "portal.delete_keypair",
            "images.detail"} <= set(tried)


@pytest.mark.db
def test_a_domain_admin_sees_nothing_above_or_beside(app, scene, client):
    """sam, domain admin of ROOT/sales: every list (listall=true, and with account=alice) shows
    nothing outside his subtree, and the by-id commands on an object of ROOT's accounts or of
    alice's project answer "not found" like a missing id (the user commands: CloudStack's 531)
    and change nothing."""
    from app.models import Domain
    with app.app_context():
        sales = db.session.scalar(select(Domain).where(Domain.name == "sales"))
        mine = set(db.session.scalars(select(Account.id).where(Account.domain_id.in_(
            select(Domain.id).where(Domain.path.startswith(sales.path))))))
        foreign = {u: t for u, t in foreign_ids(mine).items() if not (t[0] == "domains" and u in (
            sales.uuid, *db.session.scalars(select(Domain.uuid).where(Domain.parent_id == sales.id))))}
        ops = db.session.scalar(select(Domain.uuid).where(Domain.name == "ops"))
        foreign[ops] = ("domains", "None")
        before = snapshot(mine)
    leaks = []
    for cmd in all_commands():
        if not cmd.list or cmd.role == ADMIN:
            continue
        for extra in ({"listall": "true"}, {"account": "alice", "listall": "true"}, {"projectid": "-1"}):
            status, body = api(app, client, "sam", command=cmd.name, **extra)
            leaks += [f"{cmd.name} {extra}: {foreign[i]}" for i in foreign if i in json.dumps(body)
                      and not {("*", foreign[i][0]), (cmd.name, foreign[i][0])} & set(SHOWN)]
    assert not leaks, leaks[:40]
    by_kind = {}
    for u, (table, _) in foreign.items():
        by_kind.setdefault(table, u)
    tries = [("stopVirtualMachine", "id", "vm_instances"), ("destroyVirtualMachine", "id", "vm_instances"),
             ("deleteVolume", "id", "volumes"),
             ("listAccounts", "domainid", "domains"), ("createDomain", "parentdomainid", "domains"),
             ("updateDomain", "id", "domains"), ("deleteDomain", "id", "domains"),
             ("listProjectAccounts", "projectid", "projects"), ("deleteProject", "id", "projects"),
             ("listVirtualMachines", "projectid", "projects"), ("updateProjectInvitation", "projectid", "projects"),
             ("listProjectInvitations", "projectid", "projects"), ("deleteProjectInvitation", "id", "project_invitations"),
             ("deleteSSHKeyPair", "name", None)]
    failures = []
    for name, param, table in tries:
        args = {"command": name, "name": "x1"}
        if table is None:
            continue
        ref = outcome(app, client, {**args, param: RANDOM}, RANDOM, "sam")
        got = outcome(app, client, {**args, param: by_kind[table]}, by_kind[table], "sam")
        if not same(got, ref):
            failures.append(f"{name} {param}={table}: {got[:2]} (a missing id: {ref[:2]})")
    status, body = api(app, client, "sam", command="deleteSSHKeyPair", name="key-proj", account="alice")
    assert status in (431, 531), body
    # The account commands answer as CloudStack's DomainChecker: 531, the domain named.
    for name in ("updateUser", "disableUser"):
        status, body = api(app, client, "sam", command=name, id=by_kind["users"], firstname="x")
        assert status == 531 and "does not have permission to operate within domain" in body["errortext"], body
    assert not failures, failures
    with app.app_context():
        assert not diff(before, snapshot(mine))
