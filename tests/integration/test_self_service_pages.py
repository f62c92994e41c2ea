"""Self-service and account pages through the test client on a Simulator zone (jobs run
inline): My VMs with usage against the limits, the deploy wizard step by step (choices,
refusals, Back, a deploy landing on the VM page), SSH key pages (the private key shown
once, never stored), the user's account page (password, API keys), volumes and disk
offerings, events, and the admin's account pages (create, limits, users)."""
from __future__ import annotations

import base64
import re

import pytest
from cryptography.hazmat.primitives import serialization

from app.extensions import db
from app.models import AsyncJob, DiskOffering, JobStatus, ResourceLimit, SSHKeyPair, VirtualMachine, Volume, new_uuid
from app.services import accounts, keypairs, volumes
from tests.integration.test_vm_pages import _engines, deploy, post, world  # noqa: F401  (fixtures)

# On SQLite only, but for the tests marked `db` below (their queries list, filter, sort or count):
# the rest is forms, pages and access rules, the same on every database.


def html_of(resp) -> str:
    return resp.get_data(as_text=True)


def limit(app, account: str, resource: str, value: int) -> None:
    with app.app_context():
        from app.services import limits
        limits.set_limit(accounts.get_user("admin"), accounts.get_account(account), resource, value)


def wizard(client, auth, data: dict, go: str = "next", hx=None):
    """One POST of the deploy wizard (a plain form POST, or HTMX with hx)."""
    body = {"csrf_token": auth.csrf(), "go": go, **data}
    if hx is not None:
        return hx.post("/portal/deploy", data=body)
    return client.post("/portal/deploy", data=body)


def hidden(html: str) -> dict:
    """The wizard's state as the page carries it (hidden fields and checked radios)."""
    out = dict(re.findall(r'<input type="hidden" name="([a-z]+)" value="([^"]*)"', html))
    out["step"] = re.search(r'name="step" type="hidden" value="([a-z]+)"', html).group(1)
    out.update(re.findall(r'<input type="radio" name="([a-z]+)" value="([^"]*)" checked', html))
    out.pop("csrf_token", None)
    return out


# --- My VMs -------------------------------------------------------------------------

@pytest.mark.db
def test_my_vms_shows_own_vms_and_usage(app, world, auth, client):
    mine = deploy(app, world, name="web1")
    bobs = deploy(app, world, user="bob", name="bob1")
    limit(app, "alice", "user_vm", 4)
    auth.login("alice")
    html = html_of(client.get("/portal/"))
    assert mine in html and bobs not in html
    assert 'id="vm-messages"' in html and 'id="vms-list"' in html  # the VM list partial, its quick actions
    assert re.search(r"<dt>Instances</dt>\s*<dd>.*1 of 4", html, re.S)
    assert re.search(r"<dt>vCPUs</dt>\s*<dd><span class=\"usage-free\">1 used · no limit", html)
    assert "Stop</button>" in html  # a quick action of a running VM
    # An admin's My VMs is the admin's own account, also when the list reloads itself.
    admins = deploy(app, world, user="admin", name="adm1")
    auth.logout()
    auth.login("admin")
    html = html_of(client.get("/portal/"))
    assert admins in html and mine not in html and 'hx-get="/vms/?account=admin"' in html



# --- The deploy wizard ----------------------------------------------------------------

def test_wizard_walks_every_step_and_lands_on_the_vm_page(app, world, auth, client):
    auth.login("alice")
    html = html_of(client.get("/portal/deploy"))
    assert 'aria-current="step">Zone' in html and "Z1" in html
    state = hidden(html)
    assert state["zoneid"] == world.zone  # the only zone: chosen for the user
    html = html_of(wizard(client, auth, state))
    assert 'aria-current="step">Image' in html
    assert "tiny" in html and "rescue-iso" in html and "Simulator · RAW" in html
    state = {**hidden(html), "templateid": world.template}
    html = html_of(wizard(client, auth, state))
    assert 'aria-current="step">Size' in html and "small" in html and "big" in html
    state = {**hidden(html), "serviceofferingid": world.small}
    html = html_of(wizard(client, auth, state))
    assert 'aria-current="step">Network' in html and "default network" in html
    html = html_of(wizard(client, auth, hidden(html)))
    assert 'aria-current="step">Access' in html and 'name="userdata"' in html
    state = {**hidden(html), "keypair": "", "userdata": "#cloud-config\r\nhostname: web7\r\n"}
    html = html_of(wizard(client, auth, state))
    assert 'aria-current="step">Name' in html
    state = {**hidden(html), "name": "web7", "displayname": ""}
    html = html_of(wizard(client, auth, state))
    assert 'aria-current="step">Review' in html
    assert "tiny (template)" in html and "small: 1 vCPU · 512 MiB" in html and "web7" in html
    assert "29 bytes of user data" in html
    resp = wizard(client, auth, hidden(html), go="deploy")
    assert resp.status_code == 302
    with app.app_context():
        vm = db.session.scalar(db.select(VirtualMachine).where(VirtualMachine.name == "web7"))
        assert vm.state == "Running" and vm.account.name == "alice"
        assert base64.b64decode(vm.userdata).decode() == "#cloud-config\nhostname: web7\n"  # line ends as Unix
        job = db.session.scalar(db.select(AsyncJob).where(AsyncJob.instance_id == vm.uuid))
    assert resp.headers["Location"] == f"/vms/{vm.uuid}?job={job.uuid}"
    page = html_of(client.get(resp.headers["Location"]))
    # The job is done (jobs run inline here): the job panel says so, and no banner still
    # says the VM "is being deployed".
    assert "being deployed" not in page and 'id="vm-job"' in page and "Deploy" in page
    assert "✓ Done at" in page and "the VM is Running" in page
    with app.app_context():  # while the job runs, the panel says it runs (and polls)
        db.session.get(AsyncJob, job.id).status = JobStatus.PENDING
        db.session.commit()
    page = html_of(client.get(resp.headers["Location"]))
    assert "being deployed" not in page and "vm-job-pending" in page and "every 1s" in page


def test_wizard_refusals_and_back(app, world, auth, client, hx):
    auth.login("alice")
    state = hidden(html_of(client.get("/portal/deploy")))
    # A choice that is not offered stays on its step with the reason beside it (422 for HTMX too).
    resp = wizard(client, auth, {**state, "step": "image", "templateid": new_uuid()}, hx=hx)
    html = html_of(resp)
    assert resp.status_code == 422 and "<html" not in html and 'aria-current="step">Image' in html
    assert "Choose one of the templates or ISOs offered" in html
    # Back keeps what was chosen.
    resp = wizard(client, auth, {**state, "step": "image", "templateid": world.template}, go="back")
    assert 'aria-current="step">Zone' in html_of(resp) and hidden(html_of(resp))["templateid"] == world.template
    # An offering that passes a limit is shown, not offered, and refused if sent anyway.
    limit(app, "alice", "cpu", 1)
    state = {**state, "templateid": world.template, "step": "image"}
    html = html_of(wizard(client, auth, state))
    assert re.search(r'value="%s"\s+disabled' % world.big, html)
    assert "limit of 1 vCPUs would be passed (it uses 0, this needs 2 more)" in html
    resp = wizard(client, auth, {**hidden(html), "serviceofferingid": world.big})
    assert resp.status_code == 422 and 'aria-current="step">Size' in html_of(resp)
    # An ISO needs a root disk size.
    resp = wizard(client, auth, {**state, "templateid": world.iso, "step": "offering",
                                 "serviceofferingid": world.small})
    assert "needs a root disk size" in html_of(resp)
    # The deploy's own refusal goes back to the step of its field: a name taken.
    limit(app, "alice", "cpu", -1)
    deploy(app, world, name="taken")
    full = {**state, "serviceofferingid": world.small, "networkid": "", "keypair": "", "userdata": "",
            "name": "taken", "displayname": "", "step": "review"}
    resp = wizard(client, auth, full, go="deploy")
    assert resp.status_code == 422 and 'aria-current="step">Name' in html_of(resp)
    assert "You already have a VM named taken" in html_of(resp)
    # Without a CSRF token nothing happens.
    assert client.post("/portal/deploy", data={**full, "name": "x", "go": "deploy"}).status_code == 400
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(VirtualMachine)) == 1


def test_wizard_iso_and_key_and_htmx_deploy(app, world, auth, client, hx):
    auth.login("alice")
    with app.app_context():
        keypairs.register(accounts.get_user("alice"), "laptop", _public_key())
    state = hidden(html_of(client.get("/portal/deploy")))
    html = html_of(wizard(client, auth, {**state, "step": "image", "templateid": world.iso}))
    assert 'name="rootdisksize"' in html and 'name="hypervisor"' in html
    html = html_of(wizard(client, auth, {**hidden(html), "rootdisksize": "5", "serviceofferingid": world.small}))
    html = html_of(wizard(client, auth, hidden(html)))  # network: the default
    assert "laptop" in html
    html = html_of(wizard(client, auth, {**hidden(html), "keypair": "laptop", "userdata": ""}))
    html = html_of(wizard(client, auth, {**hidden(html), "name": "rescue", "displayname": "Rescue box"}))
    assert "rescue-iso (ISO, 5 GiB disk)" in html and "key laptop" in html
    resp = wizard(client, auth, hidden(html), go="deploy", hx=hx)
    assert resp.status_code == 204 and resp.headers["HX-Redirect"].startswith("/vms/")
    with app.app_context():
        vm = db.session.scalar(db.select(VirtualMachine).where(VirtualMachine.iso_id.is_not(None)))
        assert vm.iso_id is not None and vm.keypair_id is not None and vm.state == "Running"
        assert next(v for v in vm.volumes if v.volume_type == "ROOT").size == 5 << 30


def _public_key() -> str:
    from cryptography.hazmat.primitives.asymmetric import ed25519
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " me@laptop"


# --- SSH keys ------------------------------------------------------------------------

def test_create_key_shows_the_private_key_once(app, users, auth, client, hx):
    auth.login("alice")
    resp = post(client, auth, "/portal/keys/new", {"name": "laptop", "keytype": "ed25519"})
    html = html_of(resp)
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    pem = re.search(r"(-----BEGIN OPENSSH PRIVATE KEY-----.*?-----END OPENSSH PRIVATE KEY-----)", html, re.S).group(1)
    private = serialization.load_ssh_private_key(pem.encode(), None)
    href = re.search(r'download="laptop.pem"\s+href="data:application/x-pem-file;base64,([^"]+)"', html).group(1)
    assert base64.b64decode(href).decode().strip() == pem.strip()
    with app.app_context():
        kp = db.session.scalar(db.select(SSHKeyPair).where(SSHKeyPair.name == "laptop"))
        public = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                   serialization.PublicFormat.OpenSSH).decode()
        assert kp.public_key == public and kp.fingerprint == keypairs.fingerprint(public)
        # Never stored: no column of any row holds it.
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(table.select()):
                assert not any(isinstance(v, str) and "PRIVATE KEY" in v for v in row)
    listing = html_of(client.get("/portal/keys/"))
    assert "laptop" in listing and kp.fingerprint in listing and "PRIVATE" not in listing
    # The same name again: the reason beside the field (HTMX: the form alone, 422).
    resp = hx.post("/portal/keys/new", data={"name": "laptop", "keytype": "rsa"})
    assert resp.status_code == 422 and "A key pair named laptop already exists" in html_of(resp)
    assert "<html" not in html_of(resp)
    # RSA, as CloudStack makes them; HTMX gets the secret card in place of the form.
    resp = hx.post("/portal/keys/new", data={"name": "old-school", "keytype": "rsa"})
    assert "-----BEGIN RSA PRIVATE KEY-----" in html_of(resp) and 'id="secret"' in html_of(resp)


def test_register_and_delete_keys(app, users, auth, client):
    auth.login("alice")
    pub = _public_key()
    resp = post(client, auth, "/portal/keys/register", {"name": "laptop", "publickey": pub[:40] + "\n" + pub[40:]})
    assert resp.status_code == 302  # a wrapped paste is fine
    for bad, why in (("not a key", "Not an OpenSSH public key"),
                     ("-----BEGIN OPENSSH PRIVATE KEY-----\nabc", "That is a private key"),
                     (pub, "already registered as laptop")):
        resp = post(client, auth, "/portal/keys/register", {"name": "other", "publickey": bad})
        assert resp.status_code == 422 and why in html_of(resp)
    with app.app_context():
        kp = db.session.scalar(db.select(SSHKeyPair).where(SSHKeyPair.name == "laptop"))
        uuid = kp.uuid
    auth.logout()
    auth.login("bob")
    assert post(client, auth, f"/portal/keys/{uuid}/delete").status_code == 404  # alice's: not found
    assert "laptop" not in html_of(client.get("/portal/keys/"))
    auth.logout()
    auth.login("alice")
    assert client.post(f"/portal/keys/{uuid}/delete").status_code == 400  # no CSRF token
    resp = post(client, auth, f"/portal/keys/{uuid}/delete", follow_redirects=True)
    assert "SSH key pair laptop deleted" in html_of(resp)
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(SSHKeyPair)) == 0


# --- The user's account ------------------------------------------------------------------

def test_account_page_password_and_api_keys(app, users, auth, client, hx):
    auth.login("alice")
    html = html_of(client.get("/portal/account"))
    assert "Generate keys" in html and 'id="password-form"' in html
    resp = post(client, auth, "/portal/account/password",
                {"current": "wrong", "new": "new-orchard-pass-41", "confirm": "new-orchard-pass-41"})
    assert resp.status_code == 422 and "The current password is wrong" in html_of(resp)
    resp = post(client, auth, "/portal/account/password", {"current": "alicepass", "new": "new-orchard-pass-41", "confirm": "x"})
    assert resp.status_code == 422 and "The two passwords differ" in html_of(resp)
    resp = post(client, auth, "/portal/account/password",
                {"current": "alicepass", "new": "new-orchard-pass-41", "confirm": "new-orchard-pass-41"})
    assert resp.status_code == 302
    with app.app_context():
        assert accounts.authenticate("alice", "new-orchard-pass-41") is not None
    # Keys: the secret once, then never again on the page; HTMX swaps the card.
    resp = hx.post("/portal/account/keys")
    html = html_of(resp)
    assert resp.headers["Cache-Control"] == "no-store" and 'id="secret"' in html and "<html" not in html
    with app.app_context():
        key, secret = accounts.get_keys(accounts.get_user("alice"))
    assert key in html and secret in html
    page = html_of(client.get("/portal/account"))
    assert key in page and secret not in page and "Regenerate keys" in page
    # The profile.
    assert post(client, auth, "/portal/account/profile", {"firstname": "Alice", "lastname": "A",
                                                          "email": "a@example.org"}).status_code == 302
    assert 'value="a@example.org"' in html_of(client.get("/portal/account"))


# --- Volumes -----------------------------------------------------------------------------

def test_volume_pages(app, world, auth, client, hx):
    vm = deploy(app, world, name="web1")
    with app.app_context():
        fixed = volumes.create_disk_offering(None, name="10G", disk_size=10)
        custom = volumes.create_disk_offering(None, name="any", customized=True)
        fixed, custom = fixed.uuid, custom.uuid
    auth.login("alice")
    html = html_of(client.get("/volumes/new"))
    assert "10G (10 GiB)" in html and "any (custom size)" in html
    resp = post(client, auth, "/volumes/new", {"name": "data1", "zone": world.zone, "diskoffering": custom})
    assert resp.status_code == 422 and "is custom: give size" in html_of(resp)
    resp = post(client, auth, "/volumes/new", {"name": "data1", "zone": world.zone, "diskoffering": custom,
                                               "size": "3"})
    assert resp.status_code == 302
    uuid = resp.headers["Location"].rsplit("/", 1)[1]
    html = html_of(client.get(f"/volumes/{uuid}"))
    assert "data1" in html and "3.0 GiB" in html and "web1 (Running)" in html and "Allocated" in html
    # Attach with HTMX: the page body comes back.
    resp = hx.post(f"/volumes/{uuid}/attach", data={"vm": vm})
    html = html_of(resp)
    assert resp.status_code == 200 and "Volume data1 attached." in html and "<html" not in html
    assert "Ready" in html and f'href="/vms/{vm}"' in html and ">Detach</button>" in html
    resp = hx.post(f"/volumes/{uuid}/resize", data={"size": "5"})
    assert resp.status_code == 422 and "Stop VM web1 first" in html_of(resp)
    resp = hx.post(f"/volumes/{uuid}/delete")
    assert resp.status_code == 422 and "Detach volume data1 first" in html_of(resp)
    with app.app_context():  # refused: the volume is still there and still attached
        kept = db.session.scalar(db.select(Volume).where(Volume.uuid == uuid))
        assert kept is not None and kept.vm_id is not None and kept.removed is None
    assert post(client, auth, f"/volumes/{uuid}/detach").status_code == 302
    resp = hx.post(f"/volumes/{uuid}/resize", data={"size": "2"})
    assert resp.status_code == 422 and "never shrink" in html_of(resp)
    resp = hx.post(f"/volumes/{uuid}/resize", data={"size": "6"})
    assert resp.status_code == 200 and "6.0 GiB" in html_of(resp)
    lst = html_of(client.get("/volumes/"))
    assert "data1" in lst and "ROOT-" in lst and "Primary storage" not in lst  # pools: admins only
    # Bob sees none of it.
    auth.logout()
    auth.login("bob")
    assert "data1" not in html_of(client.get("/volumes/"))
    assert client.get(f"/volumes/{uuid}").status_code == 404
    assert post(client, auth, f"/volumes/{uuid}/delete").status_code == 404
    auth.logout()
    auth.login("alice")
    resp = hx.post(f"/volumes/{uuid}/delete")
    assert resp.status_code == 204 and resp.headers["HX-Redirect"] == "/volumes/"
    with app.app_context():
        assert db.session.scalar(db.select(Volume.removed).where(Volume.uuid == uuid)) is not None
    assert client.get("/volumes/offerings").status_code == 403


def test_disk_offerings_page(app, users, auth, client):
    auth.login("admin")
    resp = post(client, auth, "/volumes/offerings", {"name": "", "storagetype": "shared"})
    assert resp.status_code == 422
    resp = post(client, auth, "/volumes/offerings", {"name": "small", "disksize": "5", "storagetype": "shared"})
    assert resp.status_code == 302
    html = html_of(client.get("/volumes/offerings"))
    assert "small" in html and "5 GiB" in html
    with app.app_context():
        uuid = db.session.scalar(db.select(DiskOffering.uuid).where(DiskOffering.name == "small"))
    assert post(client, auth, f"/volumes/offerings/{uuid}/delete").status_code == 302
    assert "small" not in html_of(client.get("/volumes/offerings")).split("<h1>")[1].split("Add a disk")[0]


# --- Events ------------------------------------------------------------------------------

@pytest.mark.db
def test_events_page(app, world, auth, client, hx):
    deploy(app, world, name="web1")
    deploy(app, world, user="bob", name="bob1")
    auth.login("alice")
    html = html_of(client.get("/events/"))
    assert "VM web1 created" in html and "bob1" not in html and "<th class=\"hide-sm\">Account</th>" not in html
    resp = hx.get("/events/?type=VM.START&level=&q=")
    assert "VM.START" in html_of(resp) and "VM.CREATE" not in html_of(resp)
    assert resp.headers["HX-Push-Url"] == "/events/?type=VM.START"
    auth.logout()
    auth.login("admin")
    html = html_of(client.get("/events/?level=WARN"))
    assert "bob1" not in html  # filtered: only warnings
    assert "bob1" in html_of(client.get("/events/?q=bob1"))


# --- Account administration -------------------------------------------------------------

def test_admin_account_pages(app, world, auth, client):
    deploy(app, world, name="web1")
    auth.login("admin")
    html = html_of(client.get("/admin/accounts/"))
    assert "alice" in html and "bob" in html
    resp = post(client, auth, "/admin/accounts/new", {"account": "", "role": "user", "username": "carol",
                                                      "password": "quiet-harbor-lamp-27", "email": "c@example.org"})
    assert resp.status_code == 302
    with app.app_context():  # an account named after its first user, who can log in
        carol = accounts.get_user("carol")
        assert (carol.account.name, carol.account.role, carol.role, carol.email) == \
            ("carol", "user", "user", "c@example.org")
        assert accounts.authenticate("carol", "quiet-harbor-lamp-27").uuid == carol.uuid
    resp = post(client, auth, "/admin/accounts/new", {"account": "carol", "role": "user", "username": "carol2",
                                                      "password": "quiet-harbor-lamp-27"})
    assert resp.status_code == 422 and "The specified account: carol already exists" in html_of(resp)
    with app.app_context():
        alice = accounts.get_account("alice")
        alice_uuid, alice_user = alice.uuid, accounts.get_user("alice").uuid
    page = html_of(client.get(f"/admin/accounts/{alice_uuid}"))
    assert "alice" in page and 'name="user_vm"' in page and "Reset password" in page
    # Limits: an override, -1 for none, empty for the default; bad values refused.
    resp = post(client, auth, f"/admin/accounts/{alice_uuid}/limits", {"user_vm": "3", "cpu": "-1", "memory": ""})
    assert resp.status_code == 302
    with app.app_context():
        rows = dict(db.session.execute(db.select(ResourceLimit.resource_type, ResourceLimit.max)).all())
        assert rows == {"user_vm": 3, "cpu": -1}
    resp = post(client, auth, f"/admin/accounts/{alice_uuid}/limits", {"user_vm": "-5"})
    assert resp.status_code == 422
    page = html_of(client.get(f"/admin/accounts/{alice_uuid}"))
    assert 'name="user_vm" type="number" value="3"' in page and re.search(r"Instances</dt>\s*<dd>.*1 of 3", page, re.S)
    # Users: disable (no login), enable, reset the password, new API keys shown once.
    assert post(client, auth, f"/admin/accounts/users/{alice_user}/disable").status_code == 302
    with app.app_context():
        assert accounts.authenticate("alice", "alicepass") is None
    assert post(client, auth, f"/admin/accounts/users/{alice_user}/enable").status_code == 302
    with app.app_context():
        assert accounts.authenticate("alice", "alicepass").uuid == alice_user
    resp = post(client, auth, f"/admin/accounts/users/{alice_user}/password", {"password": "reset-meadow-pass-8"})
    assert resp.status_code == 302
    with app.app_context():  # the new password works, the old one no longer
        assert accounts.authenticate("alice", "alicepass") is None
        assert accounts.authenticate("alice", "reset-meadow-pass-8").uuid == alice_user
        old_keys = accounts.get_keys(accounts.get_user("alice"))
    resp = post(client, auth, f"/admin/accounts/users/{alice_user}/keys")
    assert resp.status_code == 200 and "Secret key" in html_of(resp) and resp.headers["Cache-Control"] == "no-store"
    with app.app_context():  # new keys registered, and the page showed exactly those
        api_key, secret = accounts.get_keys(accounts.get_user("alice"))
    assert (api_key, secret) != old_keys and api_key in html_of(resp) and secret in html_of(resp)
    resp = post(client, auth, f"/admin/accounts/{alice_uuid}/users/new", {"username": "alice2", "password": "pass-willow-1234"})
    assert resp.status_code == 302
    with app.app_context():
        assert accounts.get_user("alice2").account.uuid == alice_uuid
    # The whole account disabled: nobody in it logs in.
    assert post(client, auth, f"/admin/accounts/{alice_uuid}/disable").status_code == 302
    with app.app_context():
        assert accounts.get_account("alice").state == "disabled"
    auth.logout()
    assert "Wrong username or password" in html_of(auth.login("alice2", "pass-willow-1234"))
    auth.login("bob")
    assert client.get("/admin/accounts/").status_code == 403
    assert client.get(f"/admin/accounts/{alice_uuid}").status_code == 403
