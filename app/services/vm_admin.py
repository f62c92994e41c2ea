"""VM commands beyond the life cycle: updateVirtualMachine, restoreVirtualMachine,
resetSSHKeyForVirtualMachine, resetPasswordForVirtualMachine, getVMPassword and
assignVirtualMachine, with CloudStack's rules (UserVmManagerImpl).

Each takes the VM's lock (vms._lock) for its change, so it never interleaves with a
running action; the asynchronous ones run as `vm.<action>` jobs like the others.

Passwords: a VM from a password-enabled template gets a random password at deploy, at
restore and at resetPasswordForVirtualMachine. It is kept encrypted with the credentials key
(for the router's password server, which hands it to the guest once at boot, as CloudStack's
virtual router does) and, when the VM has an RSA SSH key, encrypted with that key
(PKCS#1 v1.5, base64: CloudStack's encrypted.password, which getVMPassword answers).
"""
from __future__ import annotations

import base64
import secrets
import string
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlalchemy import select, update

from app.extensions import db
from app.hypervisors.base import DriverError
from app.jobs import service as jobs
from app.models import (Account, FirewallRule, Host, OsType, PublicIpAddress, SSHKeyPair, Template, VirtualMachine,
                        VMState, Volume, VolumeState, VolumeType, new_uuid, utcnow)
from app.services import crypto, events, instance_groups, quotas, resource_details, settings, userdata, vms
from app.services.errors import InvalidParameter, PermissionDenied, ResourceUnavailable, ServiceError, Unsupported
from app.services.settings import Definition, define

define(Definition("vm.password.length", "6", "Length of the passwords generated for VMs of password-enabled "
                  "templates (CloudStack's default: 6).", category="VM", type="integer", min=6, max=64))

UPDATABLE = vms.ACTIONS_BY_STATE["update"]
_RESERVED_DETAILS = ("extraconfig",)


# --- Passwords ---------------------------------------------------------------------------

def new_password() -> str:
    """CloudStack's PasswordGenerator shape: letters and digits, at least one of each."""
    n = settings.get("vm.password.length")
    alphabet = string.ascii_letters + string.digits
    while True:
        pw = "".join(secrets.choice(alphabet) for _ in range(n))
        if any(c.isdigit() for c in pw) and any(c.isalpha() for c in pw):
            return pw


def encrypt_for_key(public_key: str | None, password: str) -> str | None:
    """The password encrypted with an OpenSSH RSA public key (RSA/PKCS1 v1.5, base64), as
    CloudStack's RSAHelper.encryptWithSSHPublicKey; None for other key types (CloudStack
    warns "Only RSA public keys can be used to encrypt a vm password" and stores nothing)."""
    if not public_key or not public_key.startswith("ssh-rsa"):
        return None
    key = serialization.load_ssh_public_key(public_key.strip().encode())
    if not isinstance(key, rsa.RSAPublicKey):
        return None
    return base64.b64encode(key.encrypt(password.encode(), padding.PKCS1v15())).decode()


def set_password(vm: VirtualMachine, password: str) -> None:
    """Store a new password on the VM (uncommitted)."""
    key = db.session.scalar(select(SSHKeyPair.public_key).where(SSHKeyPair.id == vm.keypair_id)) \
        if vm.keypair_id else None
    vm.password_secret = crypto.encrypt(password)
    vm.encrypted_password = encrypt_for_key(key, password)


def password_of(vm) -> str | None:
    """The password the router's password server hands to the guest (None: none)."""
    secret = getattr(vm, "password_secret", None)
    if not secret:
        return None
    try:
        return crypto.decrypt(secret)
    except Exception:  # noqa: BLE001 - a key that changed: no password rather than a crash
        return None


def get_password(caller, uuid: str) -> dict:
    """getVMPassword: the password encrypted with the VM's RSA key."""
    vm = vms.get_vm(caller, uuid)
    if not vm.encrypted_password:
        raise InvalidParameter("No password for VM with specified id found. If VM is created from password enabled "
                               "template and SSH keypair is assigned to VM then only password can be retrieved.",
                               field="id")
    return {"encryptedpassword": vm.encrypted_password}


def _apply_routers(vm: VirtualMachine) -> None:
    """The VM's routers learn its new metadata, user data or password now (when they run)."""
    from app.services.network import networks, routers
    for net in {n.network for n in vm.nics if n.removed is None}:
        if networks.managed(net):
            routers.apply(net)


def reset_password(caller, uuid: str):
    """resetPasswordForVirtualMachine (async): a new password for a Running or Stopped VM of a
    password-enabled template; a running VM's router serves it at once, a stopped one's at
    its next start."""
    vm = vms.get_vm(caller, uuid)
    template = vm.template
    if template is None or not template.password_enabled:
        raise InvalidParameter("Fail to reset password for the virtual machine, the template is not password enabled",
                               field="id")
    if vm.state not in (VMState.RUNNING, VMState.STOPPED):
        raise InvalidParameter(f"Vm {vm.name} is not in the right state: it must be Running or Stopped", field="id")
    return vms._submit(caller, vm, "resetpassword", "resetPasswordForVirtualMachine",
                       allowed=(VMState.RUNNING, VMState.STOPPED))


@vms._vm_job("resetpassword")
def _run_reset_password(job, vm, params):
    password = new_password()
    set_password(vm, password)
    events.record("VM.RESETPASSWORD", f"VM {vm.name}: password reset", user=events.actor(), account_id=vm.account_id,
                  resource_type="VirtualMachine", resource_id=vm.uuid)
    db.session.commit()
    if vm.state == VMState.RUNNING:
        _apply_routers(vm)
    return {"virtualmachine": jobs.ObjectResult("virtualmachinepassword", (vm, password))}


def user_data_of(caller, uuid: str) -> dict:
    """getVirtualMachineUserData: the VM's effective user data (base64)."""
    vm = vms.get_vm(caller, uuid, "virtualmachineid")
    return {"virtualmachineid": vm.uuid, "userdata": vm.userdata or ""}


# --- updateVirtualMachine ----------------------------------------------------------------

def _check_name(vm: VirtualMachine, name: str) -> str:
    name = name.strip()
    if (len(name) > 63 or not name or not all((c.isascii() and c.isalnum()) or c == "-" for c in name)
            or name.startswith("-") or name.endswith("-") or name[0].isdigit()):
        raise InvalidParameter("Invalid name. Vm name can contain ASCII letters 'a' through 'z', the digits '0' "
                               "through '9', and the hyphen ('-'), must be between 1 and 63 characters long, and "
                               "can't start or end with \"-\" and can't start with digit", field="name")
    if name != vm.name and db.session.scalar(select(VirtualMachine.id).where(
            VirtualMachine.account_id == vm.account_id, VirtualMachine.name == name,
            VirtualMachine.removed.is_(None))):
        raise InvalidParameter(f"The VM name {name} is already in use in the VM's network domain", field="name")
    return name


def update_vm(caller, uuid: str, *, display_name: str | None = None, name: str | None = None,
              group: str | None = None, ha_enable: bool | None = None, userdata_b64: str | None = None,
              userdata_uuid: str | None = None, userdata_details=None, details=None, cleanup_details: bool = False,
              os_type_uuid: str | None = None, dynamically_scalable: bool | None = None,
              http_method: str = "POST") -> VirtualMachine:
    """updateVirtualMachine (synchronous, as in CloudStack). Every check first; then one commit."""
    vm = vms.get_vm(caller, uuid)
    if vm.state in (VMState.ERROR, VMState.EXPUNGING):
        raise InvalidParameter(f"Vm {vm.name} is not in the right state", field="id")
    if ha_enable and not vm.service_offering.offer_ha:
        raise InvalidParameter("Can't enable ha for the vm as it's created from the Service offering having HA "
                               "disabled", field="haenable")
    if dynamically_scalable:
        # Nubo scales no running VM (scaleVirtualMachine needs it stopped), so this is CloudStack's
        # answer with enable.dynamic.scale.vm off.
        raise InvalidParameter("Dynamic Scaling cannot be enabled for the VM since corresponding global setting is "
                               "set to false", field="isdynamicallyscalable")
    os_type = None
    if os_type_uuid:
        os_type = db.session.scalar(select(OsType).where(OsType.uuid == os_type_uuid))
        if os_type is None:
            raise InvalidParameter("Please specify a valid guest OS type", field="ostypeid")
    new_details = None
    if cleanup_details:
        new_details = {}
    elif details:
        new_details = userdata.merge_details(details)
        if any(k in _RESERVED_DETAILS for k in new_details):
            raise InvalidParameter("'extraconfig' should not be included in details as key", field="details")
    new_name = _check_name(vm, name) if name else None
    data = None
    if userdata_b64 is not None or userdata_uuid is not None or userdata_details:
        data = userdata.for_vm(caller, vm.account_id, userdata=userdata_b64, userdata_uuid=userdata_uuid,
                               details=userdata_details, http_method=http_method)
    token = vms._lock(vm, "update", UPDATABLE)
    try:
        vm = db.session.get(VirtualMachine, vm.id)
        if display_name is not None:
            vm.display_name = display_name
        if ha_enable is not None:
            vm.ha_enable = ha_enable
        if dynamically_scalable is not None:
            vm.dynamically_scalable = dynamically_scalable
        if os_type is not None:
            vm.os_type_id = os_type.id
        if new_details is not None:  # the VM's displayed details (resource_details rows)
            resource_details.replace_displayed("UserVm", vm.id, new_details)
        if group is not None:
            vm.group_id = instance_groups.for_vm(vm.account_id, group).id
        renamed = new_name is not None and new_name != vm.name
        if renamed:
            vm.name = new_name
        if data is not None:
            vm.userdata, obj, vm.userdata_details = data[0], data[1], data[2]
            vm.userdata_id = obj.id if obj else None
        events.record("VM.UPDATE", f"VM {vm.name} updated", user=caller, resource_type="VirtualMachine",
                      resource_id=vm.uuid)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    finally:
        vms._unlock(vm.id, token)
    db.session.refresh(vm)
    if vm.state == VMState.RUNNING and (data is not None or renamed):
        try:  # the router's metadata server (and DNS name) follow; the config drive at the next start
            _apply_routers(vm)
        except ServiceError as e:
            events.record("VM.UPDATE", f"VM {vm.name} updated, but its router did not take the change: {e.message}",
                          level="WARN", user=caller, resource_type="VirtualMachine", resource_id=vm.uuid,
                          commit=True)
    return vm


# --- resetSSHKeyForVirtualMachine ------------------------------------------------------------

def reset_ssh_key(caller, uuid: str, *, keypair: str | None = None, keypairs: list[str] | None = None):
    """A stopped VM's SSH key pair changes (the owner's pair by name); the guest gets it from the
    config drive at its next start and from its router's metadata. A password-enabled template's
    VM also gets a new password, encrypted with the new key (as CloudStack)."""
    vm = vms.get_vm(caller, uuid)
    names = [n for n in (keypairs or []) if n] or ([keypair] if keypair else [])
    if not names:
        raise InvalidParameter("Unable to execute API command resetsshkeyforvirtualmachine due to missing parameter "
                               "keypair", field="keypair")
    if len(set(names)) > 1:
        raise InvalidParameter("Nubo VMs take one SSH key pair", field="keypairs")
    if vm.state != VMState.STOPPED:
        raise InvalidParameter(f"Vm {vm.name} should be stopped to do SSH Key reset", field="id")
    key = db.session.scalar(select(SSHKeyPair).where(SSHKeyPair.account_id == vm.account_id,
                                                     SSHKeyPair.name == names[0]))
    if key is None:
        owner = db.session.get(Account, vm.account_id)
        raise InvalidParameter(f"A key pair with name '{names[0]}' does not exist for account {owner.name}",
                               field="keypair")
    return vms._submit(caller, vm, "resetsshkey", "resetSSHKeyForVirtualMachine", {"key": key.id},
                       allowed=(VMState.STOPPED,))


@vms._vm_job("resetsshkey")
def _run_reset_ssh_key(job, vm, params):
    vm.keypair_id = params["key"]
    password = None
    if vm.template is not None and vm.template.password_enabled:
        password = new_password()
        set_password(vm, password)
    events.record("VM.RESETSSHKEY", f"VM {vm.name}: SSH key pair reset", user=events.actor(), account_id=vm.account_id,
                  resource_type="VirtualMachine", resource_id=vm.uuid)
    db.session.commit()
    _apply_routers(vm)  # the metadata's public-keys now (a stopped VM's router may still run)
    if password:
        return {"virtualmachine": jobs.ObjectResult("virtualmachinepassword", (vm, password))}
    return {"virtualmachine": vms._result(vm)}


# --- restoreVirtualMachine ----------------------------------------------------------------

def restore(caller, uuid: str, template_uuid: str | None = None, root_disk_size_gib: int | None = None):
    """restoreVirtualMachine (async): a new root disk from the VM's template (or `templateid`);
    the old root disk goes. A running VM is stopped first and started again after."""
    vm = vms.get_vm(caller, uuid, "virtualmachineid")
    from app.services.extensions import calls as extension_calls
    if extension_calls.serves(vm.host or (db.session.get(Host, vm.last_host_id) if vm.last_host_id else None)):
        raise Unsupported(f"VM {vm.name} is run by an extension: its disks are the orchestrator's, not Nubo's")
    if vm.state not in (VMState.RUNNING, VMState.STOPPED):
        raise InvalidParameter(f"Cannot restore the vm as it is not in the Running or Stopped state: VM {vm.name} "
                               f"is {vm.state}", field="virtualmachineid")
    if template_uuid:
        template, is_iso = vms._template_for(caller, vm.zone, template_uuid, None)
        if is_iso:
            raise InvalidParameter("Restore to an ISO is not supported: give a template", field="templateid")
        if template.hypervisor_type != vm.hypervisor_type:
            raise InvalidParameter(f"Template {template.name} is not for {vm.hypervisor_type}", field="templateid")
    else:
        template = vm.template
        if template is None or template.removed is not None:
            raise InvalidParameter(f"VM {vm.name} has no template to restore from: give templateid",
                                   field="templateid")
    if root_disk_size_gib is not None and root_disk_size_gib < 1:
        raise InvalidParameter("rootdisksize must be at least 1 GiB", field="rootdisksize")
    return vms._submit(caller, vm, "restore", "restoreVirtualMachine",
                       {"template": template.id, "size_gib": root_disk_size_gib},
                       allowed=(VMState.RUNNING, VMState.STOPPED))


def _stop_for_restore(job, vm: VirtualMachine) -> None:
    host = vm.host
    if host is None:
        return
    jobs.progress(job, 10, f"Stopping {vm.name}")
    driver = vms._driver(host, vm)
    try:
        if not driver.stop_vm(vm.instance_name, timeout=settings.get("vm.stop.timeout")):
            driver.force_stop_vm(vm.instance_name)
    except DriverError as e:
        raise ResourceUnavailable(f"VM {vm.name} could not be stopped for its restore: {e}") from None
    finally:
        driver.close()
    from app.services.network import networks
    networks.left_host(vm, host)
    vms._stopped_on_host(vm)
    db.session.commit()


@vms._vm_job("restore")
def _run_restore(job, vm, params):
    template = db.session.get(Template, params["template"])
    was_running = vm.state == VMState.RUNNING
    _stop_for_restore(job, vm)
    old = next((v for v in vm.volumes if v.volume_type == VolumeType.ROOT and v.removed is None), None)
    size = max(template.size or 0, (params.get("size_gib") or 0) * vms.GIB)
    if size == 0 and old is not None:
        size = old.size
    jobs.progress(job, 40, f"Replacing the root disk from {template.name}")
    # The new root row and the old one's end in one transaction with the account's counts
    # (the difference only); its disk is made from the template at the next start.
    old_gib = old.counted_gib if old is not None and old.quota_counted else 0
    new = Volume(uuid=new_uuid(), name=f"ROOT-{vm.id}", account_id=vm.account_id, zone_id=vm.zone_id, vm_id=vm.id,
                 template_id=template.id, volume_type=VolumeType.ROOT, device_id=0, size=size,
                 state=VolumeState.ALLOCATED)
    also = []
    if old is not None and old.quota_counted:
        also.append((update(Volume).where(Volume.id == old.id, Volume.quota_counted.is_(True),
                                          Volume.counted_gib == old.counted_gib)
                     .values(quota_counted=False, counted_gib=0),
                     f"Volume {old.name} is being changed by another request"))
    quotas.take(vm.account_id, {"primary_storage": quotas.gib(size) - old_gib,
                                "volume": 0 if old is not None and old.quota_counted else 1},
                also=also, commit=False)
    quotas.count_new_volume(new)
    db.session.add(new)
    vm.template_id = template.id
    if template.password_enabled:
        password = new_password()
        set_password(vm, password)
    else:
        password = None
        vm.password_secret = vm.encrypted_password = None
    db.session.commit()
    if old is not None:
        vms._delete_volume_file(old)  # the disk goes from its pool (its allocation given back)
        old = db.session.get(Volume, old.id)
        old.removed, old.state, old.vm_id = utcnow(), VolumeState.EXPUNGED, None
        db.session.commit()
    events.record("VM.RESTORE", f"VM {vm.name} restored from {template.name}", user=events.actor(), account_id=vm.account_id,
                  resource_type="VirtualMachine", resource_id=vm.uuid)
    db.session.commit()
    if was_running:
        jobs.progress(job, 60, f"Starting {vm.name}")
        vm = db.session.get(VirtualMachine, vm.id)
        vms._start(job, vm, preferred_host_id=vm.last_host_id, first=False)
    vm = db.session.get(VirtualMachine, vm.id)
    if password:
        return {"virtualmachine": jobs.ObjectResult("virtualmachinepassword", (vm, password))}
    return {"virtualmachine": vms._result(vm)}


# --- assignVirtualMachine -------------------------------------------------------------------

def assign(caller, uuid: str, *, account: str | None = None, domainid: str | None = None,
           projectid: str | None = None, network_uuids: list[str] | None = None,
           security_group_uuids: list[str] | None = None) -> VirtualMachine:
    """assignVirtualMachine (admins): a stopped VM with its volumes moves to another account; the
    target's limits are checked and taken atomically, the source's counts given back in the same
    transaction. Its NICs are made again for the new owner as CloudStack's moveVMToUser does
    (_assign_networks): a Basic zone's VM gets the zone's network and `securitygroupids` (plus
    the new owner's default group); in an Advanced zone it joins `networkids`, or keeps its
    default NIC's shared network (and address), else the new owner's default network."""
    if not caller.is_admin:
        raise PermissionDenied("Only administrators may assign VMs to another account")
    if not account and not projectid:
        raise InvalidParameter("Unable to execute API command assignvirtualmachine due to missing parameter account",
                               field="account")
    vm = vms.get_vm(caller, uuid, "virtualmachineid")
    from app.services import access
    target = access.owner_for(caller, account, domainid, projectid)
    if vm.state != VMState.STOPPED:
        raise InvalidParameter("VM is not Stopped, unable to migrate the vm having the specified id",
                               field="virtualmachineid")
    if target.id == vm.account_id:
        raise InvalidParameter(f"The new account is the same as the old account. Account id ={target.uuid}",
                               field="account")
    if target.state != "enabled":
        raise InvalidParameter(f"The new account owner {target.name} is disabled.", field="account")
    if db.session.scalar(select(FirewallRule.id).where(FirewallRule.vm_id == vm.id).limit(1)) or \
            db.session.scalar(select(PublicIpAddress.id).where(PublicIpAddress.vm_id == vm.id).limit(1)):
        raise InvalidParameter("Remove the port forwarding rules and static NAT for this VM before assigning it to "
                               "another user.", field="virtualmachineid")
    volumes = [v for v in vm.volumes if v.removed is None]
    from app.models import Snapshot, SnapshotState
    for v in volumes:
        if db.session.scalar(select(Snapshot.id).where(
                Snapshot.volume_id == v.id, Snapshot.removed.is_(None),
                Snapshot.state.not_in((SnapshotState.DESTROYED, SnapshotState.ERROR))).limit(1)):
            raise InvalidParameter(f"Snapshots exists for volume: {v.name}, Detach volume or remove snapshots for "
                                   "volume before assigning VM to another user.", field="virtualmachineid")
    plan = _assign_networks(caller, vm, target, network_uuids or [], security_group_uuids or [])
    counted = [v for v in volumes if v.quota_counted]
    source = vm.account_id
    from app.services.network import secgroups, vm_nics
    old_groups = secgroups.vm_group_ids(vm.id)
    token = vms._lock(vm, "assign", (VMState.STOPPED,))
    try:
        try:
            deltas = {"primary_storage": sum(v.counted_gib for v in counted), "volume": len(counted)}
            if vm.quota_counted:
                deltas.update(user_vm=1, cpu=vm.cpu_number, memory=vm.memory)
            quotas.take(target.id, deltas, commit=False)  # 532 naming the target's limit, nothing moved
            quotas.give(source, deltas, commit=False)
            vm = db.session.get(VirtualMachine, vm.id)
            vm.account_id = target.id
            vm.user_id = target.users[0].id if target.users else vm.user_id
            vm.group_id = None  # groups are the old account's
            vm.keypair_id = None if vm.keypair_id and db.session.scalar(select(SSHKeyPair.account_id).where(
                SSHKeyPair.id == vm.keypair_id)) != target.id else vm.keypair_id
            if vm.userdata_id is not None:
                vm.userdata_id = None  # the old account's object; the user data itself stays
            for v in volumes:
                db.session.get(Volume, v.id).account_id = target.id
            # Its old security groups are the old owner's; the new ones are checked to be the new owner's.
            secgroups.clear_vm(vm.id)
            new_groups = secgroups.groups_for_deploy(caller, target.id, plan.group_uuids, None) \
                if plan.security_groups else []
            if new_groups:
                default = secgroups.ensure_default(target.id)
                secgroups.add_vm(vm, list({g.id: g for g in [*new_groups, default]}.values()))
            events.record("VM.MOVE", f"VM {vm.name} moved from account {db.session.get(Account, source).name} to "
                          f"{target.name}", user=caller, resource_type="VirtualMachine", resource_id=vm.uuid)
            db.session.commit()
        except Exception:
            db.session.rollback()
            raise
        # Its NICs are made again on the new owner's networks (the VM is still locked).
        nets = [(net if net is not None else vms._default_network(caller, target, vm.zone), ip)
                for net, ip in plan.networks]
        vm_nics.replace_nics(vm, nets)
        try:
            secgroups.members_changed(sorted(set(old_groups) | set(secgroups.vm_group_ids(vm.id))))
        except ServiceError:
            pass  # the VM is stopped; other members' hosts follow at the next change
    finally:
        vms._unlock(vm.id, token)
    db.session.refresh(vm)
    return vm


@dataclass
class _AssignPlan:
    networks: list  # [(Network or None: the new owner's default network, address to keep or None)], NIC order
    security_groups: bool  # its default NIC's network applies security groups
    group_uuids: list[str]


def _assign_networks(caller, vm: VirtualMachine, target: Account, network_uuids: list[str],
                     group_uuids: list[str]) -> _AssignPlan:
    """What the VM's NICs become for the new owner (CloudStack's moveVMToUser, checked before
    anything changes): a Basic zone refuses networkids and gives the zone's network; an
    Advanced zone takes networkids, or keeps the default NIC's network when the new owner may
    use it (a shared one, with its address), else (no security groups in the zone) the new
    owner's default network, made when it has none. Security groups are refused in a zone
    without them."""
    from app.models import Network, NetworkType
    from app.services.network import networks as nets_service, vm_nics
    zone = vm.zone
    nics = sorted((n for n in vm.nics if n.removed is None), key=lambda n: (not n.is_default, n.device_id))
    old_ip = {n.network_id: n.ip_address for n in nics}
    if zone.network_type == NetworkType.BASIC:
        if network_uuids:
            raise InvalidParameter("Can't move vm with network Ids; this is a basic zone VM", field="networkids")
        net = nets_service.ensure_default_network(caller, zone)
        if net is None:
            raise InvalidParameter("Unable to find a default network to start a vm", field="virtualmachineid")
        plan = [(net, None)]
        sg_zone = bool(net.security_groups)
    else:
        sg_zone = bool(zone.security_groups_enabled) or db.session.scalar(select(Network.id).where(
            Network.zone_id == zone.id, Network.removed.is_(None), Network.security_groups.is_(True)).limit(1)) \
            is not None
        plan = []
        for u in network_uuids:
            net = vm_nics.usable_network(caller, target.id, u, vm.zone_id)
            vms._check_joinable(net, vm.hypervisor_type)
            if any(n.id == net.id for n, _ in plan):
                raise InvalidParameter(f"Network {net.name} is given twice", field="networkids")
            # A shared network the VM was on: it keeps its address there (CloudStack's requested IP).
            plan.append((net, old_ip.get(net.id) if net.account_id is None else None))
        if not plan and nics and nics[0].network.account_id in (None, target.id):
            plan.append((nics[0].network, nics[0].ip_address))
        if not plan:
            if sg_zone:
                raise InvalidParameter("No network is specified, please specify one when you move the vm. For now, "
                                       "please add a network to VM on NICs tab.", field="networkids")
            plan.append((None, None))
    if group_uuids and not sg_zone:
        raise InvalidParameter("Can't move vm with security groups; security group feature is not enabled in this "
                               "zone", field="securitygroupids")
    uses_groups = plan[0][0] is not None and bool(plan[0][0].security_groups)
    if group_uuids and not uses_groups:
        raise InvalidParameter("Can't move vm with security groups; security group feature is not enabled on the "
                               "vm's default network", field="securitygroupids")
    return _AssignPlan(plan, uses_groups, group_uuids)
