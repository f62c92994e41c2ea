"""A WS-Management server that the real pywinrm talks to over HTTP or HTTPS,
standing in for a Hyper-V host (no Windows can run here).

It speaks the shell protocol pywinrm uses (Create, Command, Receive, Signal,
Delete SOAP actions, HTTP Basic auth: the plaintext transport over HTTP, the ssl
transport over HTTPS with a certificate from tests/hyperv/certs.py), decodes the
`powershell -encodedcommand` it receives (UTF-16LE base64), records every script
for assertions, and answers from a small fake Hyper-V state the way the real
cmdlets would: one UTF-8 JSON document on stdout, or a CLIXML error record on
stderr with exit code 1. Scripts are recognised by their `# nubo-op:` line and
their base64 JSON arguments (app/hypervisors/hyperv/powershell.py).

Templates: a host reads them from a URL or an SMB share (import_template). The
double answers from `images` ({url or UNC path: bytes}) or, for a UNC path under
one of `shares` ({"\\\\server\\share": local directory}), from that directory: the
lab's stand-in for the zone's SMB secondary storage.

Run alone (scripts/lab.sh does, as the lab's Hyper-V host):
    python -m tests.hyperv.wsman_double --dir DIR [--listen ADDR] [--port N] [--share UNC=DIR]
serves HTTPS with a self-signed certificate (DIR/cert.pem and DIR/key.pem: made at
the first start, kept for the next; its SHA-256 fingerprint in DIR/fingerprint) and
prints one line `READY <url> <fingerprint>` once it listens.
"""
from __future__ import annotations

import base64
import hashlib
import json
import ssl
import threading
import uuid
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from app.hypervisors.hyperv.powershell import parse_op

SOAP = "http://www.w3.org/2003/05/soap-envelope"
ADDR = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
RSP = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
WSMAN = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
GIB = 1 << 30
DOUBLES: dict[str, "WsmanDouble"] = {}  # host address -> double (for Move-VM)


def clixml_error(text: str) -> bytes:
    return ('#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
            f'<S S="Error">{text}_x000D__x000A_</S></Objs>').encode()


class FakeHyperV:
    """The state of one fake Hyper-V host and what each script does to it."""

    def __init__(self, hyperv_role: bool = True):
        self.hyperv_role = hyperv_role
        self.vms: dict[str, dict] = {}
        self.vhds: dict[str, dict] = {}
        self.images: dict[str, bytes] = {}  # files "on the network": {url or UNC path: bytes}
        self.switches: list[str] = ["nubo-switch"]  # Get-VMSwitch
        self.shares: dict[str, Path] = {}  # {"\\\\server\\share" (lower case): local directory}
        self.lock = threading.Lock()

    def _vm(self, name):
        vm = self.vms.get(name)
        if vm is None:
            raise LookupError(f'Hyper-V was unable to find a virtual machine with name "{name}".')
        return vm

    @staticmethod
    def _select(vm):
        return {"Name": vm["name"], "State": vm["state"], "Id": vm["id"], "Cpus": vm["cpus"],
                "MemoryMiB": vm["memory"] // (1 << 20)}

    def run(self, op: str, a: dict):
        with self.lock:
            return getattr(self, f"op_{op}")(a)

    def op_check_host(self, a):
        if not self.hyperv_role:
            return {"hyperv": False}
        return {"hyperv": True, "version": "10.0.20348", "arch": "AMD64", "sockets": 2, "cores": 32,
                "mhz": 2600, "memory": 256 * GIB, "hostname": "HV-DOUBLE", "vhdpath": "C:\\VMs",
                "vhdtotal": 2000 * GIB, "vhdfree": 1500 * GIB}

    def op_switches(self, a):
        return {"names": list(self.switches)}

    def op_host_stats(self, a):
        return {"cpu": 7, "total": 256 * GIB, "free": 200 * GIB}

    def op_pool_info(self, a):
        return {"capacity": 2000 * GIB, "free": 1500 * GIB}

    def op_create_volume(self, a):
        if a["path"] in self.vhds:
            raise RuntimeError(f"A volume already exists at {a['path']}")
        size = a["size"]
        if a.get("parent"):
            size = max(size, self.vhds.get(a["parent"], {}).get("size", 0))
        self.vhds[a["path"]] = {"size": size, "parent": a.get("parent") if a.get("thin") else None}
        physical = 4 << 20 if a.get("parent") and a.get("thin") else size
        return {"path": a["path"], "size": size, "physical": physical}

    def op_import_template(self, a):
        """Images "on the network" are self.images: {url or share path: (bytes)}."""
        if a["path"] not in self.vhds:
            data = self.images.get(a.get("url") or a.get("source")) or self._share_file(a.get("source"))
            if data is None:
                raise RuntimeError(f"Could not find file '{a.get('url') or a.get('source')}'")
            if a.get("algo"):
                got = hashlib.new(a["algo"].lower(), data).hexdigest()
                if got != a["hash"]:
                    raise RuntimeError(f"Checksum mismatch: expected {a['algo']} {a['hash']}, got {got}")
            self.vhds[a["path"]] = {"size": len(data), "parent": None}
        size = self.vhds[a["path"]]["size"]
        return {"path": a["path"], "size": size, "physical": size, "format": "VHDX"}

    def _share_file(self, unc: str | None) -> bytes | None:
        """A file of a share this host sees (Copy-Item \\\\server\\share\\path)."""
        for prefix, folder in self.shares.items():
            if unc and unc.lower().startswith(prefix + "\\"):
                path = folder.joinpath(*unc[len(prefix) + 1:].split("\\")).resolve()
                if path.is_relative_to(folder.resolve()) and path.is_file():
                    return path.read_bytes()
        return None

    def op_delete_volume(self, a):
        self.vhds.pop(a["path"], None)
        return {"ok": True}

    def op_resize_volume(self, a):
        v = self.vhds[a["path"]]
        v["size"] = a["size"]
        return {"path": a["path"], "size": a["size"], "physical": a["size"]}

    def op_start_vm(self, a):
        vm = self.vms.get(a["name"])
        if vm is None:
            vm = self.vms[a["name"]] = {"name": a["name"], "id": str(uuid.uuid4()).upper(), "state": "Off",
                                        "cpus": a["cpus"], "memory": a["memory"], "iso": a.get("iso"),
                                        "disks": list(a["vhds"]), "vlan": a.get("vlan"), "switch": a["switch"]}
        vm["state"] = "Running"
        return self._select(vm)

    def op_stop_vm(self, a):
        vm = self._vm(a["name"])
        vm["state"] = "Off"  # the fake guest honours shutdown at once
        return {"stopped": True}

    def op_force_stop_vm(self, a):
        self._vm(a["name"])["state"] = "Off"
        return {"ok": True}

    def op_reboot_vm(self, a):
        self._vm(a["name"])["state"] = "Running"
        return {"ok": True}

    def op_destroy_vm(self, a):
        self.vms.pop(a["name"], None)
        return {"ok": True}

    def op_vm_info(self, a):
        return self._select(self._vm(a["name"]))

    def op_list_vms(self, a):
        return [self._select(v) for v in self.vms.values()]

    def op_vm_stats(self, a):
        return [{"Name": v["name"], "Uptime": 100.0, "CPUUsage": 3,
                 "MemoryKiB": v["memory"] // 1024} for v in self.vms.values()]

    def op_console_target(self, a):
        return {"id": self._vm(a["name"])["id"], "port": 2179}

    def op_migrate_vm(self, a):
        vm = self._vm(a["name"])
        dest = DOUBLES.get(a["dest"])
        if dest is None:
            raise RuntimeError(f"The Virtual Machine Management Service failed to establish a connection "
                               f"for a Virtual Machine migration with host '{a['dest']}'")
        with dest.hyperv.lock:
            dest.hyperv.vms[vm["name"]] = dict(vm)
        del self.vms[vm["name"]]
        return {"ok": True}

    def op_scale_vm(self, a):
        vm = self._vm(a["name"])
        if vm["state"] != "Off":
            raise RuntimeError(f"The VM {a['name']} must be stopped to change its CPU or memory")
        vm["cpus"], vm["memory"] = a["cpus"], a["memory"]
        return {"ok": True}

    def op_attach_iso(self, a):
        self._vm(a["name"])["iso"] = a["iso"]
        return {"ok": True}

    def op_detach_iso(self, a):
        self._vm(a["name"])["iso"] = None
        return {"ok": True}

    def op_attach_volume(self, a):
        self._vm(a["name"])["disks"].append(a["path"])
        return {"ok": True}

    def op_detach_volume(self, a):
        vm = self._vm(a["name"])
        vm["disks"] = [d for d in vm["disks"] if d != a["path"]]
        return {"ok": True}

    def op_grant_console_access(self, a):
        self._vm(a["name"])
        return {"ok": True}


class WsmanDouble:
    def __init__(self, address: str = "127.0.0.1", username: str = "hvadmin", password: str = "hv-pass",
                 hyperv_role: bool = True, tls=None, port: int = 0, bind: str = "127.0.0.1"):
        """tls: a tests.hyperv.certs.Issued (HTTPS, the ssl transport); None: plain HTTP.
        bind: the local address it listens on (the lab's: its bridge address)."""
        self.address, self.username, self.password = address, username, password
        self.hyperv = FakeHyperV(hyperv_role)
        self.scripts: list[str] = []
        self.commands: dict[str, tuple[bytes, bytes, int]] = {}
        # Programmable answers: op -> (stdout bytes, stderr bytes, exit code), used once.
        self.canned: dict[str, tuple[bytes, bytes, int]] = {}
        self.http_status: int | None = None  # force an HTTP error (e.g. 500)
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                double._handle(self)

        self.bind = bind
        self.server = ThreadingHTTPServer((bind, port), Handler)
        self.port = self.server.server_address[1]
        self.tls = tls
        if tls is not None:
            import tempfile
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            with tempfile.TemporaryDirectory() as folder:  # load_cert_chain reads files only
                context.load_cert_chain(*tls.write(Path(folder)))
            # The handshake runs in accept(): one a client refuses is an OSError the server drops.
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        DOUBLES[self.address] = self
        return self

    def __exit__(self, *exc):
        DOUBLES.pop(self.address, None)
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.bind}:{self.port}/wsman"

    def fields(self, **extra) -> dict:
        """Host fields reaching this double: plaintext over HTTP, or ssl pinned to its certificate."""
        trust = {"transport": "ssl", "fingerprint": self.tls.fingerprint} if self.tls else {"transport": "plaintext"}
        return {"username": self.username, "password": self.password, **trust, "port": str(self.port), **extra}

    def ops(self) -> list[str]:
        return [parse_op(s)[0] for s in self.scripts]

    # --- protocol -----------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        expected = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if h.headers.get("Authorization") != expected:
            h.send_response(401)
            h.send_header("WWW-Authenticate", 'Basic realm="WSMAN"')
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if self.http_status:
            h.send_response(self.http_status)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        root = ET.fromstring(h.rfile.read(int(h.headers["Content-Length"])))
        action = root.find(f".//{{{ADDR}}}Action").text
        msg_id = root.find(f".//{{{ADDR}}}MessageID").text
        body = self._answer(action.rsplit("/", 1)[-1], root)
        xml = (f'<s:Envelope xmlns:s="{SOAP}" xmlns:a="{ADDR}" xmlns:w="{WSMAN}" xmlns:rsp="{RSP}">'
               f'<s:Header><a:RelatesTo>{msg_id}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>')
        data = xml.encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/soap+xml;charset=UTF-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _answer(self, action: str, root) -> str:
        if action == "Create":
            shell = str(uuid.uuid4()).upper()
            return (f'<x:ResourceCreated xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer"><a:ReferenceParameters>'
                    f'<w:SelectorSet><w:Selector Name="ShellId">{shell}</w:Selector></w:SelectorSet>'
                    f'</a:ReferenceParameters></x:ResourceCreated><rsp:Shell><rsp:ShellId>{shell}</rsp:ShellId></rsp:Shell>')
        if action == "Command":
            line = root.find(f".//{{{RSP}}}Command").text
            args = [a.text for a in root.findall(f".//{{{RSP}}}Arguments")]
            encoded = (line.split("-encodedcommand", 1)[1].strip() if "-encodedcommand" in line else args[-1])
            script = base64.b64decode(encoded).decode("utf-16-le")
            self.scripts.append(script)
            command_id = str(uuid.uuid4()).upper()
            self.commands[command_id] = self._execute(script)
            return f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"
        if action == "Receive":
            command_id = root.find(f".//{{{RSP}}}DesiredStream").get("CommandId")
            out, err, code = self.commands.pop(command_id, (b"", b"", 0))
            streams = "".join(
                f'<rsp:Stream Name="{n}" CommandId="{command_id}">{base64.b64encode(d).decode()}</rsp:Stream>'
                for n, d in (("stdout", out), ("stderr", err)) if d)
            return (f'<rsp:ReceiveResponse>{streams}<rsp:CommandState CommandId="{command_id}" '
                    f'State="{RSP}/CommandState/Done"><rsp:ExitCode>{code}</rsp:ExitCode>'
                    f'</rsp:CommandState></rsp:ReceiveResponse>')
        if action == "Signal":
            return "<rsp:SignalResponse/>"
        return ""  # Delete

    def _execute(self, script: str) -> tuple[bytes, bytes, int]:
        op, args = parse_op(script)
        if op in self.canned:
            return self.canned.pop(op)
        try:
            result = self.hyperv.run(op, args)
        except (LookupError, RuntimeError, KeyError) as e:
            return b"", clixml_error(str(e).strip("'\"")), 1
        return json.dumps(result).encode(), b"", 0


def main(argv: list[str] | None = None) -> None:
    """The double as a lab host: HTTPS with a new self-signed certificate, until SIGTERM."""
    import argparse
    import signal

    from tests.hyperv.certs import Issued, self_signed

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", required=True, type=Path, help="where cert.pem and key.pem are written")
    p.add_argument("--listen", default="127.0.0.1", help="a local address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--username", default="hvadmin")
    p.add_argument("--password", default="hv-pass")
    p.add_argument("--share", action="append", default=[], metavar="UNC=DIR",
                   help="an SMB share the host reads templates from, e.g. \\\\lab\\secondary=/srv/secondary")
    args = p.parse_args(argv)
    cert, key = args.dir / "cert.pem", args.dir / "key.pem"
    if cert.exists() and key.exists():  # the same certificate (and fingerprint) after a restart
        tls = Issued(cert_pem=cert.read_text(), key_pem=key.read_text(), ca_pem=cert.read_text())
    else:
        tls = self_signed(args.listen)
        tls.write(args.dir)
    (args.dir / "fingerprint").write_text(tls.fingerprint + "\n")
    double = WsmanDouble(args.listen, args.username, args.password, tls=tls, port=args.port, bind=args.listen)
    for share in args.share:
        unc, folder = share.split("=", 1)
        double.hyperv.shares[unc.rstrip("\\").lower()] = Path(folder)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with double:
        print(f"READY {double.url} {tls.fingerprint}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
