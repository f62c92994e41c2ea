"""Config drive: SSH key and user data reach the guest on a NoCloud `cidata` ISO
(cloud-init's NoCloud datasource), built with xorriso on the management server
and imported into the VM's primary pool next to its root volume."""
from __future__ import annotations

import base64
import json
import subprocess
import tempfile
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


def build(vm: VirtualMachine, dest: Path) -> Path:
    """The ISO for this VM: meta-data (instance id, host name, SSH key) and user-data."""
    src = dest / "cidata"
    src.mkdir()
    meta = {"instance-id": vm.uuid, "local-hostname": vm.name}
    key = db.session.scalar(select(SSHKeyPair.public_key).where(SSHKeyPair.id == vm.keypair_id)) \
        if vm.keypair_id else None
    if key:
        meta["public-keys"] = [key]
    (src / "meta-data").write_text(json.dumps(meta, indent=1))  # JSON is valid YAML
    user = base64.b64decode(vm.userdata).decode("utf-8", "replace") if vm.userdata else "#cloud-config\n{}\n"
    (src / "user-data").write_text(user)
    iso = dest / volume_name(vm)
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "cidata", "-J", "-r", "-o", str(iso), str(src)],
                   check=True, capture_output=True, timeout=60)
    return iso


def ensure(vm: VirtualMachine, host: Host, pool: StoragePool) -> str | None:
    """The config drive's path on the host, made when the VM has user data or a key."""
    if not (vm.userdata or vm.keypair_id):
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
    if not (vm.userdata or vm.keypair_id):
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
