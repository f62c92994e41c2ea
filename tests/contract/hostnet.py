"""Network hooks for driver modules whose host is this machine (kvm, libvirt-test): a traffic
label of their own (a bridge with a random name, removed afterwards with every VXLAN device
and segment bridge made on it) and looks at what the host really holds."""
from __future__ import annotations

import json
import subprocess
import uuid


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class LocalNet:
    def __init__(self):
        self.labels: list[str] = []

    def make_label(self) -> str:
        name = "nlb" + uuid.uuid4().hex[:8]
        _ip("link", "add", name, "type", "bridge")
        self.labels.append(name)
        return name

    @staticmethod
    def bridge_exists(name: str) -> bool:
        return _ip("link", "show", "dev", name, check=False).returncode == 0

    @staticmethod
    def sg_tables() -> list[str]:
        out = subprocess.run(["nft", "list", "tables", "bridge"], capture_output=True, text=True).stdout
        return [l.split()[-1] for l in out.splitlines() if l.startswith("table bridge nubo_sg_")]

    def extras(self) -> dict:
        return {"network_label": self.make_label, "bridge_exists": self.bridge_exists, "sg_tables": self.sg_tables}

    def close(self) -> None:
        """Remove the labels and whatever VXLAN segment a failed test left on them."""
        if not self.labels:
            return
        links = json.loads(_ip("-d", "-j", "link", "show").stdout or "[]")
        for d in links:
            info = (d.get("linkinfo") or {})
            if info.get("info_kind") == "vxlan" and (info.get("info_data") or {}).get("link") in self.labels:
                vni = info["info_data"].get("id")
                _ip("link", "del", "dev", f"brvx-{vni}", check=False)
                _ip("link", "del", "dev", d["ifname"], check=False)
        for name in self.labels:
            _ip("link", "del", "dev", name, check=False)
        self.labels.clear()
