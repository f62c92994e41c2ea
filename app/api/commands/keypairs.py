"""SSH key pairs: createSSHKeyPair, registerSSHKeyPair, listSSHKeyPairs, deleteSSHKeyPair."""
from __future__ import annotations

from app.api.commands.accounts import root_domain
from app.api.registry import Param, command
from app.api.serializers import serialize
from app.services import keypairs

OWNER = [Param("account", "string", "the account (administrators; default: the caller's)"),
         Param("domainid", "uuid", "the account's domain (only ROOT)"),
         Param("projectid", "uuid", "not supported: Nubo has no projects")]


def _owner(p) -> str | None:
    root_domain(p)
    if p.get("projectid"):
        from app.services.errors import InvalidParameter
        raise InvalidParameter("Nubo has no projects", field="projectid")
    return p.get("account")


@command("createSSHKeyPair", "Creates an SSH key pair; the private key is answered once and never stored",
         response="keypair", params=[Param("name", "string", "the key pair's name", required=True), *OWNER])
def create(ctx, p):
    kp, private = keypairs.create(ctx.user, p["name"], account=_owner(p))
    return {**serialize("sshkeypair", kp), "privatekey": private}


@command("registerSSHKeyPair", "Registers an existing OpenSSH public key", response="keypair", params=[
    Param("name", "string", "the key pair's name", required=True),
    Param("publickey", "string", "the public key (ssh-ed25519, ssh-rsa, ecdsa-sha2-...)", required=True,
          length=16384), *OWNER])
def register(ctx, p):
    return keypairs.register(ctx.user, p["name"], p["publickey"], account=_owner(p))


@command("listSSHKeyPairs", "Lists the caller's SSH key pairs (administrators: any with account or listall)",
         response="sshkeypair", list=True, params=[Param("name", "string", "the key pair's name"),
                                                   Param("fingerprint", "string", "its MD5 fingerprint")])
def list_keypairs(ctx, p):
    root_domain(p)
    return keypairs.list_keypairs(ctx.user, id=p.get("id"), name=p.get("name"), fingerprint=p.get("fingerprint"),
                                  keyword=p.get("keyword"), listall=p.get("listall", False),
                                  account=p.get("account"), page=ctx.page)


@command("deleteSSHKeyPair", "Deletes an SSH key pair (VMs made with it keep their key)",
         params=[Param("name", "string", "the key pair's name", required=True), *OWNER])
def delete(ctx, p):
    keypairs.delete(ctx.user, p["name"], account=_owner(p))
    return {"success": True}
