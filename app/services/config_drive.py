"""Config drive: SSH key and user data reach the guest on a NoCloud `cidata` ISO
(cloud-init's NoCloud datasource), built with xorriso on the management server
and imported into the VM's primary pool next to its root volume."""
from __future__ import annotations

import base64
import ipaddress
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from app.extensions import db
from app.hypervisors.base import DriverError, TemplateSource
from app.models import Host, SSHKeyPair, StoragePool, VirtualMachine, VolumeType
from app.services import storage
from app.services import hypervisors as hv
from app.services.errors import ResourceUnavailable


def volume_name(vm: VirtualMachine) -> str:
    return f"{vm.instance_name}-cidata.iso"


@dataclass(frozen=True)
class NicConfig:
    """What network-config says of one NIC."""
    mac: str
    ip: str | None
    netmask: str | None
    gateway: str | None
    default: bool
    nameservers: tuple[str, ...] = ()
    device_id: int = 0
    domain: str | None = None


def render_network_config(nics: list[NicConfig]) -> str | None:
    """cloud-init's network-config, version 2: one ethernet per NIC with an address, matched by
    its MAC, a static address/prefix; the default route (gateway4) on the default NIC only;
    the DNS servers (the network's router, else the zone's). None when no NIC has an address
    (L2 networks: addressing is the guest's business). JSON, which is valid YAML."""
    ethernets = {}
    for n in sorted(nics, key=lambda n: n.device_id):
        if not n.ip or not n.netmask:
            continue
        prefix = ipaddress.IPv4Network(f"0.0.0.0/{n.netmask}").prefixlen
        eth: dict = {"match": {"macaddress": n.mac.lower()}, "addresses": [f"{n.ip}/{prefix}"]}
        if n.default and n.gateway:
            eth["gateway4"] = n.gateway
        if n.nameservers:
            eth["nameservers"] = {"addresses": list(n.nameservers)}
            if n.domain:
                eth["nameservers"]["search"] = [n.domain]
        ethernets[f"eth{n.device_id}"] = eth
    if not ethernets:
        return None
    return json.dumps({"version": 2, "ethernets": ethernets}, indent=1) + "\n"


def nic_configs(vm: VirtualMachine) -> list[NicConfig]:
    """The VM's NICs as network-config describes them (the router's address as DNS where the
    network has a router, else the zone's DNS servers)."""
    from app.models import Network, Nic, Router, Zone
    rows = db.session.execute(
        select(Nic.mac_address, Nic.ip_address, Nic.is_default, Nic.device_id, Network.id, Network.netmask,
               Network.gateway, Network.network_domain, Network.dns1, Network.dns2)
        .join(Network, Network.id == Nic.network_id)
        .where(Nic.vm_id == vm.id, Nic.removed.is_(None)).order_by(Nic.device_id)).all()
    if not rows:
        return []
    routers = dict(db.session.execute(select(Router.network_id, Router.guest_ip).where(
        Router.network_id.in_([r[4] for r in rows]), Router.removed.is_(None), Router.guest_ip.is_not(None))).all())
    zone = db.session.get(Zone, vm.zone_id)
    zone_dns = tuple(d for d in (zone.dns1, zone.dns2) if d) if zone else ()
    out = []
    for mac, ip, default, device, net_id, netmask, gateway, domain, dns1, dns2 in rows:
        dns = (routers[net_id],) if net_id in routers else tuple(d for d in (dns1, dns2) if d) or zone_dns
        out.append(NicConfig(mac=mac, ip=ip, netmask=netmask, gateway=gateway, default=bool(default),
                             nameservers=dns, device_id=device or 0, domain=domain))
    return out


def _without_dhcp(vm: VirtualMachine) -> bool:
    """A NIC with an address on a network whose offering gives no DHCP: only the config drive
    tells the guest its address. (Networks without an offering predate the network service
    and keep today's behaviour: no drive for them alone.)"""
    from app.models import Network, NetworkOffering, Nic
    for services in db.session.scalars(
            select(NetworkOffering.services).join(Network, Network.network_offering_id == NetworkOffering.id)
            .join(Nic, Nic.network_id == Network.id)
            .where(Nic.vm_id == vm.id, Nic.removed.is_(None), Nic.ip_address.is_not(None))):
        if "Dhcp" not in json.loads(services or "{}"):
            return True
    return False


def wanted(vm: VirtualMachine, offered: bool = True) -> bool:
    """Whether the VM gets a config drive: user data, an SSH key, or an address no DHCP gives.
    offered=False: the caller knows none of the VM's networks has an offering (nothing to read)."""
    if vm.userdata or vm.keypair_id:
        return True
    return hv.resolve(vm.hypervisor_type).capabilities.config_drive and offered and _without_dhcp(vm)


def build(vm: VirtualMachine, dest: Path) -> Path:
    """The ISO for this VM: meta-data (instance id, host name, SSH key), user-data and
    network-config (its NICs' addresses)."""
    src = dest / "cidata"
    src.mkdir()
    meta = {"instance-id": vm.uuid, "local-hostname": vm.name}
    key = db.session.scalar(select(SSHKeyPair.public_key).where(SSHKeyPair.id == vm.keypair_id)) \
        if vm.keypair_id else None
    if key:
        meta["public-keys"] = [key]
    from app.services import userdata as userdata_svc
    for k, v in userdata_svc.details_of(vm).items():  # a registered user data's variables
        meta.setdefault(k, v)
    (src / "meta-data").write_text(json.dumps(meta, indent=1))  # JSON is valid YAML
    user = base64.b64decode(vm.userdata).decode("utf-8", "replace") if vm.userdata else "#cloud-config\n{}\n"
    (src / "user-data").write_text(user)
    net = render_network_config(nic_configs(vm))
    if net:
        (src / "network-config").write_text(net)
    iso = dest / volume_name(vm)
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "cidata", "-J", "-r", "-o", str(iso), str(src)],
                   check=True, capture_output=True, timeout=60)
    return iso


def ensure(vm: VirtualMachine, host: Host, pool: StoragePool, offered: bool = True) -> str | None:
    """The config drive's path on the host, made when the VM has user data, a key, or an
    address that no DHCP gives (offered: see wanted)."""
    if not wanted(vm, offered):
        return None
    if not hv.resolve(vm.hypervisor_type).capabilities.config_drive:
        raise ResourceUnavailable(f"{hv.display_name(vm.hypervisor_type)} VMs take no user data or SSH key")
    from app.services.hosts import connection_for
    driver = hv.driver_for(host.hypervisor_type, connection_for(host))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                iso = build(vm, Path(tmp))
            except (OSError, subprocess.SubprocessError) as e:
                raise ResourceUnavailable(f"The config drive could not be built: {e}") from None
            driver.delete_volume(storage.spec_of(pool), volume_name(vm))  # rebuilt at every start
            info = driver.import_template(storage.spec_of(pool), volume_name(vm),
                                          TemplateSource(format="ISO", local_path=str(iso)))
    except DriverError as e:
        raise ResourceUnavailable(f"The config drive could not be put on {pool.name}: {e}") from None
    finally:
        driver.close()
    return info.path


def remove(vm: VirtualMachine) -> None:
    """Delete the config drive from the pool of the VM's root volume (best effort)."""
    if not wanted(vm):
        return
    root = next((v for v in vm.volumes if v.volume_type == VolumeType.ROOT and v.pool_id), None)
    if root is None:
        return
    pool = root.pool
    host = pool.host or next(iter(storage._hosts_in_scope(pool)), None)
    if host is None:
        return
    from app.services.hosts import connection_for
    driver = hv.driver_for(host.hypervisor_type, connection_for(host))
    try:
        driver.delete_volume(storage.spec_of(pool), volume_name(vm))
    except DriverError:
        pass
    finally:
        driver.close()
