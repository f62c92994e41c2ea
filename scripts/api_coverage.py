"""Which CloudStack API commands real clients call, and which of them Nubo has: writes docs/api-coverage.md.

The command names come from each client's own source, as installed in this venv:
- Apache Libcloud: libcloud/compute/drivers/cloudstack.py, the `command` of every _sync_request/_async_request
  call (and libcloud/common/cloudstack.py's own queryAsyncJobResult polling);
- the Ansible collection ngine_io.cloudstack: plugins/**/*.py, every query_api('command', ...) call (a command
  held in a variable or passed through a helper's parameter is followed to its string);
- the Terraform CloudStack provider: docs/coverage/terraform-commands.txt (its Go source is not installed; that
  file says where the names come from).
Nubo's side is the command registry (app.api.registry.all_commands). Networking, VPC, load balancers, VPN,
autoscale and Kubernetes commands are listed but kept out of the headline percentage (issue 17's figure).

    .venv/bin/python scripts/api_coverage.py           # rewrite docs/api-coverage.md
    .venv/bin/python scripts/api_coverage.py --check   # exit 1 if it is out of date
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "api-coverage.md"
TERRAFORM_LIST = ROOT / "docs" / "coverage" / "terraform-commands.txt"

# Areas outside issue 17's 90 % figure, then the others (first match wins; matched on the command name).
EXCLUDED = ("networking", "VPC", "load balancers", "VPN", "autoscale", "Kubernetes")
AREAS: list[tuple[str, str]] = [
    ("Kubernetes", r"Kubernetes|CniConfiguration"),
    ("autoscale", r"AutoScale|Condition|Counter"),
    ("VPN", r"Vpn"),
    ("load balancers", r"LoadBalancer|LBStickiness|LBHealthCheck|SslCert"),
    ("VPC", r"VPC|Vpc|PrivateGateway|StaticRoute|NetworkACL"),
    ("networking", r"Network|IpAddress|IpForwarding|Firewall|PortForwarding|StaticNat|SecurityGroup|TrafficType|"
                   r"VlanIpRange|VirtualRouter|Router|Nic|Vlan|PublicIp|Ip(?:To|From)"),
    ("tags", r"Tags$|ResourceDetail"),
    ("VM snapshots", r"VMSnapshot"),
    ("snapshots", r"Snapshot"),
    ("affinity groups", r"AffinityGroup"),
    ("domains and projects", r"Domain|Project"),
    ("roles and accounts", r"Role|Account|User(?!Data)|UserKeys|login|logout"),
    ("user data", r"UserData"),
    ("quota", r"^quota"),
    ("templates and ISOs", r"Template|Iso|OsType|OsCategor|GuestOs"),
    ("volumes and offerings", r"Volume|DiskOffering|ServiceOffering"),
    ("VMs", r"VirtualMachine|InstanceGroup|SSHKey|VMPassword|Console"),
    ("infrastructure", r"Zone|Pod|Cluster|Host|StoragePool|Storage|ImageStore|Capacity|Region|Hypervisor|"
                       r"Configuration|Alert|SystemVm"),
    ("limits", r"ResourceLimit|ResourceCount"),
    ("jobs and events", r"AsyncJob|Event|Apis|Capabilities"),
]


def area_of(command: str) -> str:
    for name, pattern in AREAS:
        if re.search(pattern, command):
            return name
    return "other"


# --- Reading the clients ---------------------------------------------------------------------

def _const(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def libcloud_commands() -> set[str]:
    import libcloud
    base = Path(libcloud.__file__).parent
    tree = ast.parse((base / "compute" / "drivers" / "cloudstack.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("_sync_request", "_async_request"):
            arg = _const(node.args[0]) if node.args else None
            for kw in node.keywords:
                if kw.arg == "command":
                    arg = _const(kw.value)
            if arg is None:
                raise SystemExit(f"libcloud: a request whose command is not a string (line {node.lineno})")
            names.add(arg)
    # The driver's async requests are polled by the common connection class.
    common = ast.parse((base / "common" / "cloudstack.py").read_text())
    for node in ast.walk(common):
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if k is not None and _const(k) == "command" and _const(v):
                    names.add(_const(v))
    return names


def _query_api_names(tree: ast.AST) -> set[str]:
    """query_api('x', ...) calls; a variable first argument is followed to the strings assigned to it in
    its function, or (a parameter) to the strings passed for it to that function in the same file."""
    names: set[str] = set()
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    calls_by_func: dict[str, list[ast.Call]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            calls_by_func.setdefault(node.func.attr, []).append(node)
    for fn in functions:
        for node in ast.walk(fn):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) ==
                    "query_api" and node.args):
                continue
            first = node.args[0]
            if _const(first):
                names.add(_const(first))
            elif isinstance(first, ast.Name):
                var = first.id
                for a in ast.walk(fn):
                    if isinstance(a, ast.Assign) and any(isinstance(t, ast.Name) and t.id == var for t in a.targets):
                        if _const(a.value):
                            names.add(_const(a.value))
                params = [p.arg for p in fn.args.args]
                if var in params:
                    pos = params.index(var) - (1 if params and params[0] == "self" else 0)
                    for call in calls_by_func.get(fn.name, []):
                        if pos < len(call.args) and _const(call.args[pos]):
                            names.add(_const(call.args[pos]))
    return names


def ansible_commands() -> tuple[set[str], str]:
    import ansible_collections.ngine_io.cloudstack as coll
    base = Path(coll.__path__[0])
    names: set[str] = set()
    for path in sorted((base / "plugins").rglob("*.py")):
        names |= _query_api_names(ast.parse(path.read_text()))
    version = json.loads((base / "MANIFEST.json").read_text())["collection_info"]["version"]
    return names, version


def terraform_commands() -> set[str]:
    return {line.strip() for line in TERRAFORM_LIST.read_text().splitlines()
            if line.strip() and not line.startswith("#")}


def nubo_commands() -> set[str]:
    sys.path.insert(0, str(ROOT))
    import app.api.commands  # noqa: F401  (declares every command)
    from app.api.registry import all_commands
    return {c.name for c in all_commands()}


# --- The report ---------------------------------------------------------------------------------

@dataclass
class Client:
    title: str
    source: str
    commands: set[str]


def _pct(n: int, d: int) -> str:
    return f"{100 * n / d:.1f} %" if d else "–"


def render(clients: list[Client], nubo: set[str]) -> str:
    lower = {c.lower() for c in nubo}

    def has(cmd: str) -> bool:
        return cmd.lower() in lower  # CloudStack command names are case-insensitive

    out = ["# CloudStack API coverage by client", "",
           "Generated by `scripts/api_coverage.py` (do not edit by hand: run it after adding a command; "
           "`tests/unit/test_api_coverage.py` fails when this file is out of date). Each client's command names "
           "are read from its own source; Nubo's from its command registry. Networking, VPC, load balancers, "
           "VPN, autoscale and Kubernetes are listed but kept out of the headline figure (they are not issue "
           "17's areas).", "",
           "## Summary", "",
           "| client | commands called | Nubo has | outside the excluded areas: Nubo has |",
           "|---|---|---|---|"]
    all_in, all_in_has = set(), set()
    for c in clients:
        inside = {x for x in c.commands if area_of(x) not in EXCLUDED}
        present = {x for x in c.commands if has(x)}
        inside_present = inside & present
        all_in |= inside
        all_in_has |= inside_present
        out.append(f"| {c.title} | {len(c.commands)} | {len(present)} ({_pct(len(present), len(c.commands))}) | "
                   f"{len(inside_present)} of {len(inside)} ({_pct(len(inside_present), len(inside))}) |")
    union = set().union(*(c.commands for c in clients))
    union_present = {x for x in union if has(x)}
    out.append(f"| all three (distinct commands) | {len(union)} | {len(union_present)} "
               f"({_pct(len(union_present), len(union))}) | {len(all_in_has)} of {len(all_in)} "
               f"({_pct(len(all_in_has), len(all_in))}) |")
    out += ["", f"Outside networking, VPC, load balancers, VPN, autoscale and Kubernetes, Nubo has "
                f"{_pct(len(all_in_has), len(all_in))} of the commands these clients call "
                f"({len(all_in_has)} of {len(all_in)}).", ""]
    missing = sorted((x for x in all_in if not has(x)), key=str.lower)
    out += ["## Missing outside the excluded areas", ""]
    out += [f"- `{x}` ({area_of(x)}; " + ", ".join(c.title.split(" ")[0] for c in clients if x in c.commands) + ")"
            for x in missing] or ["None."]
    for c in clients:
        out += ["", f"## {c.title}", "", c.source, "", "| command | area | Nubo |", "|---|---|---|"]
        for x in sorted(c.commands, key=lambda s: (area_of(s) in EXCLUDED, area_of(s), s.lower())):
            area = area_of(x) + (" (excluded)" if area_of(x) in EXCLUDED else "")
            out.append(f"| `{x}` | {area} | {'yes' if has(x) else '**no**'} |")
    return "\n".join(out) + "\n"


def build() -> str:
    ansible, ansible_version = ansible_commands()
    clients = [
        Client(f"Libcloud {metadata.version('apache-libcloud')}",
               "Read from `libcloud/compute/drivers/cloudstack.py` (every `_sync_request`/`_async_request` "
               "command) and `libcloud/common/cloudstack.py` (job polling).", libcloud_commands()),
        Client(f"Ansible ngine_io.cloudstack {ansible_version}",
               "Read from the collection's `plugins/` (every `query_api` command, modules, module_utils and the "
               "inventory plugin).", ansible),
        Client("Terraform CloudStack provider",
               "Read from `docs/coverage/terraform-commands.txt` (taken from the provider's source; see its "
               "header for which files and what is left out).", terraform_commands()),
    ]
    return render(clients, nubo_commands())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/api-coverage.md is out of date")
    args = parser.parse_args()
    text = build()
    if args.check:
        if not REPORT.exists() or REPORT.read_text() != text:
            print("docs/api-coverage.md is out of date: run .venv/bin/python scripts/api_coverage.py")
            return 1
        return 0
    REPORT.write_text(text)
    print(text.split("## Missing")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
