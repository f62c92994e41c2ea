"""SSH key pairs: createSSHKeyPair, registerSSHKeyPair, listSSHKeyPairs, deleteSSHKeyPair."""
from __future__ import annotations

from app.api.registry import Param, command
from app.api.serializers import serialize
from app.services import keypairs

OWNER = [Param("account", "string", "the account (administrators; default: the caller's)"),
         Param("domainid", "uuid", "the account's domain (default: the caller's)"),
         Param("projectid", "uuid", "the project that owns the key pair")]


def _owner(p) -> dict:
    return {"account": p.get("account"), "domainid": p.get("domainid")}


@command("createSSHKeyPair", "Creates an SSH key pair; the private key is answered once and never stored",
         response="keypair", params=[Param("name", "string", "the key pair's name", required=True), *OWNER])
def create(ctx, p):
    kp, private = keypairs.create(ctx.user, p["name"], **_owner(p))
    return {**serialize("sshkeypair", kp), "privatekey": private}


@command("registerSSHKeyPair", "Registers an existing OpenSSH public key", response="keypair", params=[
    Param("name", "string", "the key pair's name", required=True),
    Param("publickey", "string", "the public key (ssh-ed25519, ssh-rsa, ecdsa-sha2-...)", required=True,
          length=16384), *OWNER])
def register(ctx, p):
    return keypairs.register(ctx.user, p["name"], p["publickey"], **_owner(p))


@command("listSSHKeyPairs", "Lists the caller's SSH key pairs (administrators: any with account or listall)",
         response="sshkeypair", list=True, params=[Param("name", "string", "the key pair's name"),
                                                   Param("fingerprint", "string", "its MD5 fingerprint")])
def list_keypairs(ctx, p):
    return keypairs.list_keypairs(ctx.user, id=p.get("id"), name=p.get("name"), fingerprint=p.get("fingerprint"),
                                  keyword=p.get("keyword"), listall=p.get("listall", False),
                                  account=p.get("account"), domainid=p.get("domainid"), page=ctx.page)


@command("deleteSSHKeyPair", "Deletes an SSH key pair (VMs made with it keep their key)",
         params=[Param("name", "string", "the key pair's name", required=True), *OWNER])
def delete(ctx, p):
    keypairs.delete(ctx.user, p["name"], **_owner(p))
    return {"success": True}
