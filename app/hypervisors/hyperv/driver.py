"""The Hyper-V driver: a dumb executor of PowerShell Hyper-V cmdlets over WinRM.

Every call opens a WinRM shell (pywinrm's run_ps), runs one script from
powershell.build() and parses the one JSON document it prints. Errors (a
non-zero exit, CLIXML error records on stderr, WinRM faults, HTTP failures)
become app/hypervisors/base.py exceptions with the message Hyper-V gave.

Reboot is `Restart-VM -Force` (a hard reset, as the cmdlet does); a graceful
guest reboot needs the guest's integration services and is not used.
"""
from __future__ import annotations

import json
import ntpath
import re
import time
import unicodedata
import xml.etree.ElementTree as ET

from app.hypervisors.base import (
    AuthenticationFailed, ConsoleKind, ConsoleTarget, DiskSpec, Driver, DriverError, HostConnection,
    HostFacts, HostStats, HostUnreachable, MigrationSpec, OperationFailed, OperationNotSupported, PoolInfo,
    PowerState, StoragePoolSpec, TemplateSource, UntrustedCertificate, VMInfo, VMNotFound, VMSpec, VMStats,
    VolumeInfo, VolumeSpec, WrongHypervisor,
)
from app.hypervisors.hyperv import powershell as ps
from app.hypervisors.hyperv import trust

MIB = 1024 * 1024
RDP_PORT = 2179
# Get-VM's State names → what services understand.
STATES = {"Running": PowerState.RUNNING, "Off": PowerState.STOPPED, "Saved": PowerState.STOPPED,
          "Paused": PowerState.PAUSED, "Starting": PowerState.STARTING, "Stopping": PowerState.STOPPING,
          "Saving": PowerState.STOPPING, "Resuming": PowerState.STARTING}
NOT_FOUND = re.compile(r"unable to find a virtual machine|ObjectNotFound|was not found", re.I)

# Fields every VM answer carries.
VM_SELECT = ("Select-Object Name, @{n='State';e={$_.State.ToString()}}, @{n='Id';e={$_.Id.ToString()}}, "
             "@{n='Cpus';e={$_.ProcessorCount}}, @{n='MemoryMiB';e={[int]($_.MemoryStartup/1MB)}}")

SCRIPTS = {
    "check_host": r"""
$feature = Get-Command Get-VMHost -ErrorAction SilentlyContinue
if (-not $feature) { @{hyperv=$false} | ConvertTo-Json -Compress; exit 0 }
$h = Get-VMHost
$cs = Get-CimInstance Win32_ComputerSystem
$cpu = @(Get-CimInstance Win32_Processor)
$os = Get-CimInstance Win32_OperatingSystem
$drive = Get-PSDrive -Name ($h.VirtualHardDiskPath.Substring(0,1))
@{hyperv=$true; version=$os.Version; arch=$env:PROCESSOR_ARCHITECTURE; sockets=$cpu.Count;
  cores=$cs.NumberOfLogicalProcessors; mhz=$cpu[0].MaxClockSpeed; memory=$cs.TotalPhysicalMemory;
  hostname=$env:COMPUTERNAME; vhdpath=$h.VirtualHardDiskPath; vhdtotal=($drive.Used + $drive.Free);
  vhdfree=$drive.Free} | ConvertTo-Json -Compress
""",
    "switches": r"""
@{names=@(Get-VMSwitch | ForEach-Object { $_.Name })} | ConvertTo-Json -Compress
""",
    "host_stats": r"""
$os = Get-CimInstance Win32_OperatingSystem
$load = (Get-CimInstance Win32_Processor | Measure-Object -Property LoadPercentage -Average).Average
@{cpu=$load; total=$os.TotalVisibleMemorySize*1024; free=$os.FreePhysicalMemory*1024} | ConvertTo-Json -Compress
""",
    "pool_info": r"""
New-Item -ItemType Directory -Force -Path $a.path | Out-Null
$root = [IO.Path]::GetPathRoot($a.path)
$fs = New-Object IO.DriveInfo($root)
@{capacity=$fs.TotalSize; free=$fs.AvailableFreeSpace} | ConvertTo-Json -Compress
""",
    "create_volume": r"""
if (Test-Path $a.path) { throw "A volume already exists at $($a.path)" }
if ($a.parent -and $a.thin) { $v = New-VHD -Path $a.path -ParentPath $a.parent -Differencing }
elseif ($a.parent) { Copy-Item -Path $a.parent -Destination $a.path; $v = Get-VHD -Path $a.path
  if ($v.Size -lt $a.size) { Resize-VHD -Path $a.path -SizeBytes $a.size; $v = Get-VHD -Path $a.path } }
else { $v = New-VHD -Path $a.path -SizeBytes $a.size -Dynamic }
@{path=$v.Path; size=$v.Size; physical=$v.FileSize} | ConvertTo-Json -Compress
""",
    "import_template": r"""
if (-not (Test-Path $a.path)) {
  $tmp = "$($a.path).part"
  if ($a.url) { Invoke-WebRequest -Uri $a.url -OutFile $tmp -UseBasicParsing }
  else { Copy-Item -Path $a.source -Destination $tmp }
  if ($a.algo) {
    $h = (Get-FileHash -Path $tmp -Algorithm $a.algo).Hash.ToLower()
    if ($h -ne $a.hash) { Remove-Item -Path $tmp -Force; throw "Checksum mismatch: expected $($a.algo) $($a.hash), got $h" }
  }
  Move-Item -Path $tmp -Destination $a.path
}
$v = Get-VHD -Path $a.path
@{path=$v.Path; size=$v.Size; physical=$v.FileSize; format=[string]$v.VhdFormat} | ConvertTo-Json -Compress
""",
    "delete_volume": r"""
if (Test-Path $a.path) { Remove-Item -Path $a.path -Force }
@{ok=$true} | ConvertTo-Json -Compress
""",
    "resize_volume": r"""
Resize-VHD -Path $a.path -SizeBytes $a.size
$v = Get-VHD -Path $a.path
@{path=$v.Path; size=$v.Size; physical=$v.FileSize} | ConvertTo-Json -Compress
""",
    "start_vm": r"""
$vm = Get-VM -Name $a.name -ErrorAction SilentlyContinue
if (-not $vm) {
  $vm = New-VM -Name $a.name -MemoryStartupBytes $a.memory -Generation $a.generation -VHDPath $a.vhds[0] -SwitchName $a.switch
  Set-VMProcessor -VMName $a.name -Count $a.cpus
  foreach ($d in ($a.vhds | Select-Object -Skip 1)) { Add-VMHardDiskDrive -VMName $a.name -Path $d }
  Set-VMNetworkAdapter -VMName $a.name -StaticMacAddress $a.mac
  if ($a.vlan) { Set-VMNetworkAdapterVlan -VMName $a.name -Access -VlanId $a.vlan }
  if ($a.iso) { Add-VMDvdDrive -VMName $a.name -Path $a.iso }
}
if ($vm.State -ne 'Running') { Start-VM -Name $a.name }
Get-VM -Name $a.name | """ + VM_SELECT + """ | ConvertTo-Json -Compress
""",
    "stop_vm": r"""
$vm = Get-VM -Name $a.name
if ($vm.State -eq 'Off') { @{stopped=$true} | ConvertTo-Json -Compress; exit 0 }
$job = Start-Job -ScriptBlock { param($n) Stop-VM -Name $n -Force } -ArgumentList $a.name
$null = Wait-Job $job -Timeout $a.timeout
@{stopped=((Get-VM -Name $a.name).State -eq 'Off')} | ConvertTo-Json -Compress
""",
    "force_stop_vm": r"""
$vm = Get-VM -Name $a.name
if ($vm.State -ne 'Off') { Stop-VM -Name $a.name -TurnOff -Force }
@{ok=$true} | ConvertTo-Json -Compress
""",
    "reboot_vm": r"""
Restart-VM -Name $a.name -Force
@{ok=$true} | ConvertTo-Json -Compress
""",
    "destroy_vm": r"""
$vm = Get-VM -Name $a.name -ErrorAction SilentlyContinue
if ($vm) { if ($vm.State -ne 'Off') { Stop-VM -Name $a.name -TurnOff -Force }; Remove-VM -Name $a.name -Force }
@{ok=$true} | ConvertTo-Json -Compress
""",
    "vm_info": "Get-VM -Name $a.name | " + VM_SELECT + " | ConvertTo-Json -Compress",
    "list_vms": "@(Get-VM | " + VM_SELECT + ") | ConvertTo-Json -Compress",
    "vm_stats": r"""
@(Get-VM | Select-Object Name, @{n='Uptime';e={$_.Uptime.TotalSeconds}}, CPUUsage,
  @{n='MemoryKiB';e={[long]($_.MemoryAssigned/1KB)}}) | ConvertTo-Json -Compress
""",
    "console_target": r"""
$vm = Get-VM -Name $a.name
$port = (Get-CimInstance -Namespace root\virtualization\v2 -ClassName Msvm_TerminalServiceSettingData).ListenerPort
@{id=$vm.Id.ToString(); port=$port} | ConvertTo-Json -Compress
""",
    "migrate_vm": r"""
if ($a.storage) { Move-VM -Name $a.name -DestinationHost $a.dest -IncludeStorage -DestinationStoragePath $a.storage }
else { Move-VM -Name $a.name -DestinationHost $a.dest }
@{ok=$true} | ConvertTo-Json -Compress
""",
    "scale_vm": r"""
$vm = Get-VM -Name $a.name
if ($vm.State -ne 'Off') { throw "The VM $($a.name) must be stopped to change its CPU or memory" }
Set-VMProcessor -VMName $a.name -Count $a.cpus
Set-VMMemory -VMName $a.name -StartupBytes $a.memory
@{ok=$true} | ConvertTo-Json -Compress
""",
    "attach_iso": r"""
$null = Get-VM -Name $a.name
$dvd = Get-VMDvdDrive -VMName $a.name
if ($dvd) { Set-VMDvdDrive -VMName $a.name -Path $a.iso } else { Add-VMDvdDrive -VMName $a.name -Path $a.iso }
@{ok=$true} | ConvertTo-Json -Compress
""",
    "detach_iso": r"""
Set-VMDvdDrive -VMName $a.name -Path $null
@{ok=$true} | ConvertTo-Json -Compress
""",
    "attach_volume": r"""
Add-VMHardDiskDrive -VMName $a.name -Path $a.path
@{ok=$true} | ConvertTo-Json -Compress
""",
    "detach_volume": r"""
Get-VMHardDiskDrive -VMName $a.name | Where-Object { $_.Path -eq $a.path } | Remove-VMHardDiskDrive
@{ok=$true} | ConvertTo-Json -Compress
""",
    "grant_console_access": r"""
Grant-VMConnectAccess -VMName $a.name -UserName $a.user
@{ok=$true} | ConvertTo-Json -Compress
""",
}


def clixml_message(stderr: bytes) -> str:
    """The error text of a PowerShell CLIXML error stream (or the raw text)."""
    text = stderr.decode("utf-8", "replace")
    if "#< CLIXML" not in text:
        return text.strip()
    body = text.split("#< CLIXML", 1)[1].strip()
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return body
    parts = [(el.text or "") for el in root.iter() if el.tag.endswith("S") and el.get("S") == "Error"]
    msg = "".join(parts).replace("_x000D__x000A_", "\n").strip()
    return msg or body


class HypervDriver(Driver):
    def __init__(self, conn: HostConnection, context=None):
        super().__init__(conn, context)
        f = conn.fields
        self.transport = f.get("transport") or "ntlm"
        if self.transport == "plaintext" and not self.context.testing:
            raise AuthenticationFailed("The plaintext WinRM transport sends credentials in clear; "
                                       "use ntlm, kerberos, credssp or ssl")
        self.port = int(f.get("port") or (5986 if self.transport == "ssl" else 5985))
        scheme = "https" if self.transport == "ssl" else "http"
        self.endpoint = f"{scheme}://{conn.address}:{self.port}/wsman"
        self.cert_validation = f.get("cert_validation") or "validate"
        self._session = None

    def _winrm(self):
        if self._session is None:
            import winrm
            kw = {"transport": "plaintext" if self.transport == "plaintext" else self.transport,
                  "server_cert_validation": self.cert_validation,
                  "read_timeout_sec": 60, "operation_timeout_sec": 50}
            if self.transport in ("ntlm", "credssp"):
                kw["message_encryption"] = "auto"
            session = winrm.Session(self.endpoint, auth=(self.conn.fields.get("username", ""),
                                                          self.conn.fields.get("password", "")), **kw)
            if self.transport == "ssl" and self.cert_validation == "validate":
                trust.follow(session.protocol.transport, self.conn.fields)
            self._session = session
        return self._session

    def _run(self, op: str, args: dict | None = None, *, vm: str | None = None):
        script = ps.build(op, SCRIPTS[op], args)
        try:
            rs = self._winrm().run_ps(script)
        except Exception as e:  # translate pywinrm / requests at the boundary
            name = type(e).__name__
            text = str(e)
            if "CERTIFICATE_VERIFY_FAILED" in text or "Fingerprints did not match" in text:
                field, message = trust.untrusted_message(f"{self.conn.address}:{self.port}",
                                                         self.conn.fields, e)
                raise UntrustedCertificate(message, field=field) from None
            if "401" in text or "InvalidCredentials" in name or "Unauthorized" in text:
                raise AuthenticationFailed(f"Hyper-V host {self.conn.address} refused the credentials") from None
            if name in ("ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "WinRMTransportError",
                        "SSLError") \
                    or "Connection refused" in text or "timed out" in text.lower():
                raise HostUnreachable(f"Hyper-V host {self.conn.address} did not answer: {text[:200]}") from None
            raise OperationFailed(f"WinRM error from {self.conn.address}: {text[:300]}") from None
        if rs.status_code != 0:
            # pywinrm already turned CLIXML into text in std_err; parse again if not.
            msg = clixml_message(rs.std_err) or f"{op} failed with exit code {rs.status_code}"
            if vm and NOT_FOUND.search(msg):
                raise VMNotFound(f"No VM named {vm} on Hyper-V host {self.conn.address}")
            raise OperationFailed(f"Hyper-V: {msg}")
        out = rs.std_out.decode("utf-8", "replace").strip()
        if not out:
            return None
        try:
            return json.loads(out)
        except ValueError:
            raise OperationFailed(f"Hyper-V answered {op} with something that is not JSON") from None

    # Host
    def check_host(self) -> HostFacts:
        d = self._run("check_host")
        if not d or not d.get("hyperv"):
            raise WrongHypervisor(f"{self.conn.address} answers WinRM but has no Hyper-V role")
        return HostFacts(hypervisor="Hyperv", version=str(d["version"]), arch=str(d["arch"]),
                         cpu_sockets=int(d["sockets"]), cpu_cores=int(d["cores"]), cpu_mhz=int(d["mhz"]),
                         memory_bytes=int(d["memory"]), hostname=d.get("hostname", ""),
                         local_storage_path=d.get("vhdpath"), local_storage_bytes=int(d.get("vhdtotal", 0)),
                         local_storage_free=int(d.get("vhdfree", 0)))

    # Guest networks: a Hyper-V host's segment is its virtual switch (the traffic label) with the
    # VLAN id set on each VM's adapter (NicSpec.vlan, Set-VMNetworkAdapterVlan -Access in
    # start_vm); nothing is made or removed on the host. No VXLAN, router or security groups.
    def check_labels(self, labels: list[str]) -> list[str]:
        names = set((self._run("switches") or {}).get("names") or [])
        return [label for label in labels if label not in names]

    def ensure_segment(self, segment) -> str:
        if segment.isolation not in ("VLAN", "untagged"):
            raise OperationNotSupported(f"Hyper-V hosts cannot make {segment.isolation} segments")
        if self.check_labels([segment.label]):
            raise OperationFailed(f"Hyper-V host {self.conn.address} has no virtual switch {segment.label}")
        return segment.label

    def release_segment(self, segment) -> None:
        return None  # the switch is the admin's; the VLAN goes with the VM's adapter

    def host_stats(self) -> HostStats:
        d = self._run("host_stats")
        return HostStats(cpu_pct=float(d["cpu"] or 0), memory_total_bytes=int(d["total"]),
                         memory_free_bytes=int(d["free"]))

    # Storage
    @staticmethod
    def _pool_path(pool: StoragePoolSpec) -> str:
        if pool.kind == "SMB":
            return f"\\\\{pool.server}\\{pool.path.strip('/').replace('/', chr(92))}"
        return pool.path

    def _vhd_path(self, pool: StoragePoolSpec, name: str, fmt: str = "VHDX") -> str:
        ext = ".vhd" if fmt == "VHD" else ".vhdx"
        base = self._pool_path(pool).rstrip("\\/")
        return name if name.lower().endswith((".vhd", ".vhdx")) and ("\\" in name or "/" in name) \
            else f"{base}\\{name}{'' if name.lower().endswith(ext) else ext}"

    def prepare_storage_pool(self, pool: StoragePoolSpec) -> PoolInfo:
        return self.pool_info(pool)

    def delete_storage_pool(self, pool: StoragePoolSpec) -> None:
        """Nubo never deletes the directory or share itself."""

    def pool_info(self, pool: StoragePoolSpec) -> PoolInfo:
        d = self._run("pool_info", {"path": self._pool_path(pool)})
        return PoolInfo(capacity_bytes=int(d["capacity"]), available_bytes=int(d["free"]))

    def create_volume(self, vol: VolumeSpec) -> VolumeInfo:
        if vol.format not in ("VHD", "VHDX"):
            raise OperationNotSupported(f"Hyper-V volumes are VHD or VHDX, not {vol.format}")
        d = self._run("create_volume", {"path": self._vhd_path(vol.pool, vol.name, vol.format),
                                         "parent": vol.base_path, "thin": vol.thin, "size": vol.size_bytes})
        return VolumeInfo(path=d["path"], size_bytes=int(d["size"]), format=vol.format,
                          physical_bytes=int(d["physical"]))

    def import_template(self, pool: StoragePoolSpec, name: str, source: TemplateSource) -> VolumeInfo:
        """The host fetches the image itself (direct download) or copies it from the SMB image
        store, checks its hash with Get-FileHash, and keeps it as <pool>\\<name>.vhd(x)."""
        fmt = source.format.upper()
        if fmt not in ("VHD", "VHDX"):
            raise OperationNotSupported(f"Hyper-V templates are VHD or VHDX, not {source.format}")
        if not (source.url or source.share_path):
            raise OperationFailed("Hyper-V hosts read templates from an SMB image store or a URL")
        from app.hypervisors.sources import Verifier
        check = Verifier(source.checksum)
        algo = {"md5": "MD5", "sha1": "SHA1", "sha256": "SHA256", "sha384": "SHA384", "sha512": "SHA512"}
        d = self._run("import_template", {"path": self._vhd_path(pool, name, fmt), "url": source.url,
                                           "source": source.share_path, "algo": algo.get(check.algo or ""),
                                           "hash": check.expected})
        return VolumeInfo(path=d["path"], size_bytes=int(d["size"]), format=fmt, physical_bytes=int(d["physical"]))

    def delete_volume(self, pool: StoragePoolSpec, name: str) -> None:
        for fmt in ("VHDX", "VHD"):
            self._run("delete_volume", {"path": self._vhd_path(pool, name, fmt)})

    def resize_volume(self, pool: StoragePoolSpec, name: str, size_bytes: int) -> VolumeInfo:
        d = self._run("resize_volume", {"path": self._vhd_path(pool, name), "size": size_bytes})
        return VolumeInfo(path=d["path"], size_bytes=int(d["size"]), format="VHDX", physical_bytes=int(d["physical"]))

    # VMs
    def _info(self, d: dict) -> VMInfo:
        return VMInfo(name=d["Name"], state=STATES.get(d["State"], PowerState.UNKNOWN), uuid=d.get("Id"),
                      cpus=int(d["Cpus"]), memory_mib=int(d["MemoryMiB"]))

    def start_vm(self, spec: VMSpec) -> VMInfo:
        disks = [d.path for d in spec.disks if d.device == "disk"]
        if not disks:
            raise OperationFailed("A Hyper-V VM needs a root disk")
        nic = spec.nics[0] if spec.nics else None
        iso = spec.iso_path or spec.config_drive_path
        d = self._run("start_vm", {
            "name": spec.name, "memory": spec.memory_mib * MIB, "cpus": spec.cpus,
            "generation": 2 if disks[0].lower().endswith(".vhdx") else 1, "vhds": disks,
            "switch": nic.bridge if nic else self.conn.fields.get("switch", "nubo-switch"),
            "mac": (nic.mac if nic else "").replace(":", "").upper() or None,
            "vlan": nic.vlan if nic else None, "iso": iso}, vm=spec.name)
        info = self._info(d)
        info.console = self.console_target(spec.name)
        return info

    def stop_vm(self, name: str, timeout: float) -> bool:
        return bool(self._run("stop_vm", {"name": name, "timeout": max(1, int(round(timeout)))}, vm=name)["stopped"])

    def force_stop_vm(self, name: str) -> None:
        self._run("force_stop_vm", {"name": name}, vm=name)

    def reboot_vm(self, name: str) -> None:
        self._run("reboot_vm", {"name": name}, vm=name)

    def destroy_vm(self, name: str) -> None:
        self._run("destroy_vm", {"name": name})

    def vm_info(self, name: str) -> VMInfo:
        return self._info(self._run("vm_info", {"name": name}, vm=name))

    def list_vms(self) -> list[VMInfo]:
        d = self._run("list_vms") or []
        return [self._info(x) for x in (d if isinstance(d, list) else [d])]

    def vm_stats(self) -> dict[str, VMStats]:
        d = self._run("vm_stats") or []
        now = time.time()
        return {x["Name"]: VMStats(timestamp=now,
                                   cpu_time_ns=int(float(x.get("Uptime") or 0) * (x.get("CPUUsage") or 0) * 1e7),
                                   memory_kib=int(x.get("MemoryKiB") or 0))
                for x in (d if isinstance(d, list) else [d])}

    def console_target(self, name: str) -> ConsoleTarget:
        d = self._run("console_target", {"name": name}, vm=name)
        return ConsoleTarget(kind=ConsoleKind.RDP, host=self.conn.address, port=int(d.get("port") or RDP_PORT),
                             vm_guid=d["id"])

    def migrate_vm(self, name: str, dest: HostConnection, live: bool = True, *,
                   spec: MigrationSpec | None = None, progress=None) -> None:
        storage = dest.fields.get("storage_path")
        if spec is not None and spec.disks:
            # Move-VM copies every disk into one folder of the destination.
            folders = {ntpath.dirname(p) for p in spec.disks.values()}
            if len(folders) != 1:
                raise OperationNotSupported("Hyper-V moves a VM's disks into one folder of the destination")
            storage = folders.pop()
        self._run("migrate_vm", {"name": name, "dest": dest.address, "storage": storage}, vm=name)

    def scale_vm(self, name: str, cpus: int, memory_mib: int) -> None:
        self._run("scale_vm", {"name": name, "cpus": cpus, "memory": memory_mib * MIB}, vm=name)

    def attach_iso(self, name: str, iso_path: str) -> None:
        self._run("attach_iso", {"name": name, "iso": iso_path}, vm=name)

    def detach_iso(self, name: str) -> None:
        self._run("detach_iso", {"name": name}, vm=name)

    def attach_volume(self, name: str, disk: DiskSpec) -> None:
        self._run("attach_volume", {"name": name, "path": disk.path}, vm=name)

    def detach_volume(self, name: str, disk: DiskSpec) -> None:
        self._run("detach_volume", {"name": name, "path": disk.path}, vm=name)

    def grant_console_access(self, name: str, user: str) -> None:
        self._run("grant_console_access", {"name": name, "user": user}, vm=name)


def rdp_file(target: ConsoleTarget, username: str) -> str:
    """A VMConnect .rdp file: RDP to the host on 2179 with the VM's GUID as the
    pre-connection blob. Never a password. Each value must stay on its own line:
    one holding a line break or another control character is refused (ValueError),
    so no value can add a field (e.g. a second "full address")."""
    values = {"full address": str(target.host), "server port": str(int(target.port)),
              "pcb": f"{target.vm_guid};EnhancedMode=0", "username": str(username)}
    for key, value in values.items():
        if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value):
            raise ValueError(f"The .rdp field {key!r} may not contain control characters or line breaks")
    lines = [f"full address:s:{values['full address']}", f"server port:i:{values['server port']}",
             f"pcb:s:{values['pcb']}", "negotiate security layer:i:0", f"username:s:{values['username']}"]
    return "\r\n".join(lines) + "\r\n"
