"""SSH key pairs (CloudStack's createSSHKeyPair, registerSSHKeyPair, ...).

A created pair is generated here with `cryptography`: its private key is handed
back once and never stored. A registered key is parsed by `cryptography` (a
private key or garbage is refused). Fingerprints are CloudStack's: the MD5 of the
key blob as colon-separated hex. Names are unique per account; users see and
delete their account's pairs only, admins any account's.
"""
from __future__ import annotations

import base64
import hashlib

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Account, SSHKeyPair, new_uuid
from app.services import access, events
from app.services.errors import InvalidParameter, NotFound
from app.services.pagination import page_of

KEY_TYPES = {"rsa": "RSA 2048 (as CloudStack makes them)", "ed25519": "Ed25519"}
MIN_RSA_BITS = 1024  # what OpenSSH still accepts


def _visible(caller):
    return select(SSHKeyPair).where(access.owned(caller, SSHKeyPair.account_id)).order_by(SSHKeyPair.id)


def get_keypair(caller, uuid: str) -> SSHKeyPair:
    """Another account's pair is "not found", like a missing one."""
    kp = db.session.scalar(_visible(caller).where(SSHKeyPair.uuid == uuid))
    if kp is None:
        raise NotFound("Unable to find SSH key pair with the specified id", field="id")
    return kp


def _name(name: str | None) -> str:
    name = (name or "").strip()
    if not name or len(name) > 255 or any(ord(c) < 32 for c in name):
        raise InvalidParameter("name is required: 1-255 printable characters", field="name")
    return name


def fingerprint(public_key: str) -> str:
    """CloudStack's fingerprint of an OpenSSH public key line: MD5 of the blob, aa:bb:..."""
    blob = base64.b64decode(public_key.split()[1])
    return ":".join(f"{b:02x}" for b in hashlib.md5(blob).digest())  # noqa: S324 - a fingerprint, not security


def sha256_fingerprint(public_key: str) -> str:
    """What `ssh-keygen -l` prints today: SHA256:<base64 without padding>."""
    blob = base64.b64decode(public_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def parse_public_key(text: str | None) -> str:
    """One OpenSSH public key line, checked by cryptography; returned as `type blob [comment]`."""
    text = "".join((text or "").strip().splitlines())  # a pasted key often wraps mid-blob
    if not text:
        raise InvalidParameter("publickey is required", field="publickey")
    if "PRIVATE KEY" in text:
        raise InvalidParameter("That is a private key: paste the public one (the .pub file)", field="publickey")
    parts = text.split(None, 2)
    try:
        key = serialization.load_ssh_public_key(" ".join(parts[:2]).encode())
    except (ValueError, UnsupportedAlgorithm, IndexError):
        raise InvalidParameter("Not an OpenSSH public key (ssh-ed25519, ssh-rsa or ecdsa-sha2-… followed by "
                               "its base64 blob)", field="publickey") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise InvalidParameter(f"RSA keys need at least {MIN_RSA_BITS} bits (this one has {key.key_size})",
                               field="publickey")
    canonical = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return canonical + (f" {parts[2]}" if len(parts) > 2 else "")


def _generate(key_type: str) -> tuple[str, str]:
    """(public key line, private key PEM) of a new pair."""
    if key_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        fmt = serialization.PrivateFormat.TraditionalOpenSSL  # BEGIN RSA PRIVATE KEY, as CloudStack answers
    elif key_type == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
        fmt = serialization.PrivateFormat.OpenSSH
    else:
        raise InvalidParameter(f"keytype must be one of {', '.join(KEY_TYPES)}", field="keytype")
    private = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return public, private


def _add(caller, owner: Account, name: str, public_key: str, event: str) -> SSHKeyPair:
    fp = fingerprint(public_key)
    if db.session.scalar(select(SSHKeyPair.id).where(SSHKeyPair.account_id == owner.id, SSHKeyPair.name == name)):
        raise InvalidParameter(f"A key pair named {name} already exists", field="name")
    same = db.session.scalar(select(SSHKeyPair.name).where(SSHKeyPair.account_id == owner.id,
                                                           SSHKeyPair.fingerprint == fp))
    if same:
        raise InvalidParameter(f"This public key is already registered as {same}", field="publickey")
    kp = SSHKeyPair(uuid=new_uuid(), name=name, account_id=owner.id, public_key=public_key, fingerprint=fp)
    db.session.add(kp)
    events.record(event, f"SSH key pair {name} {'created' if event.endswith('CREATE') else 'registered'}"
                  f" ({fp})", user=caller, account_id=owner.id, resource_type="SSHKeyPair", resource_id=kp.uuid)
    try:
        db.session.commit()
    except IntegrityError:  # the same name, a moment ago
        db.session.rollback()
        raise InvalidParameter(f"A key pair named {name} already exists", field="name") from None
    return kp


def create(caller, name: str, *, account: str | None = None, domainid: str | None = None,
           key_type: str = "rsa") -> tuple[SSHKeyPair, str]:
    """A new pair; the private key is returned here and nowhere else, ever."""
    owner, name = access.owner_for(caller, account, domainid), _name(name)
    public, private = _generate(key_type)
    return _add(caller, owner, name, public, "SSH.KEYPAIR.CREATE"), private


def register(caller, name: str, public_key: str, *, account: str | None = None,
             domainid: str | None = None) -> SSHKeyPair:
    owner, name = access.owner_for(caller, account, domainid), _name(name)
    return _add(caller, owner, name, parse_public_key(public_key), "SSH.KEYPAIR.REGISTER")


def _delete(caller, kp: SSHKeyPair) -> None:
    events.record("SSH.KEYPAIR.DELETE", f"SSH key pair {kp.name} deleted", user=caller, account_id=kp.account_id,
                  resource_type="SSHKeyPair", resource_id=kp.uuid)
    db.session.delete(kp)  # VMs made with it keep their key; their keypair_id becomes NULL
    db.session.commit()


def delete(caller, name: str, *, account: str | None = None, domainid: str | None = None) -> None:
    """deleteSSHKeyPair: by name, in the caller's account (admins: the one named; or the project's)."""
    owner = access.owner_for(caller, account, domainid)
    kp = db.session.scalar(select(SSHKeyPair).where(SSHKeyPair.account_id == owner.id, SSHKeyPair.name == name))
    if kp is None:
        raise NotFound(f"A key pair with name '{name}' does not exist for account {owner.name}", field="name")
    _delete(caller, kp)


def delete_by_uuid(caller, uuid: str) -> None:
    _delete(caller, get_keypair(caller, uuid))


def list_keypairs(caller, *, id=None, name=None, fingerprint=None, keyword=None, listall: bool = False,
                  account: str | None = None, domainid: str | None = None, page=None):
    """Own pairs (or the project's named); admins also any account's (account=) or every one
    they may see (listall)."""
    q = _visible(caller)
    q = q.where(access.list_owner(caller, SSHKeyPair.account_id, account=account, domainid=domainid,
                                  listall=listall))
    if id:
        q = q.where(SSHKeyPair.uuid == id)
    if name:
        q = q.where(SSHKeyPair.name == name)
    if fingerprint:
        q = q.where(SSHKeyPair.fingerprint == fingerprint.lower())
    if keyword:
        q = q.where(SSHKeyPair.name.contains(keyword, autoescape=True))
    rows, total = page_of(q, page)
    owners(rows)
    return rows, total


def owners(rows: list[SSHKeyPair]) -> dict[int, Account]:
    """The accounts of these pairs, one query (then in the session: db.session.get finds them)."""
    ids = {kp.account_id for kp in rows}
    return {a.id: a for a in db.session.scalars(select(Account).where(Account.id.in_(ids)))} if ids else {}
