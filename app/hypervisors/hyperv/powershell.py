"""Safe PowerShell for the Hyper-V driver.

No value is ever spliced into script text: every argument travels as one
base64 blob of UTF-8 JSON, decoded into `$a` at the top of the script, so no
VM name, path or switch name can inject PowerShell. Each script begins with a
`# nubo-op: NAME` line (for logs and the test double), sets the preferences that
make WinRM output parseable, and prints one compressed JSON document.
"""
from __future__ import annotations

import base64
import json

PREAMBLE = """$ProgressPreference = 'SilentlyContinue'
$ErrorActionPreference = 'Stop'
[Console]::OutputEncoding = [Text.Encoding]::UTF8
$a = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('{blob}')) | ConvertFrom-Json
"""


def literal(value: str) -> str:
    """A single-quoted PowerShell literal (quotes doubled). For fixed text only."""
    return "'" + str(value).replace("'", "''").replace("\u2018", "\u2018\u2018").replace("\u2019", "\u2019\u2019") + "'"


def build(op: str, body: str, args: dict | None = None) -> str:
    blob = base64.b64encode(json.dumps(args or {}).encode()).decode()
    return f"# nubo-op: {op}\n" + PREAMBLE.format(blob=blob) + body.strip() + "\n"


def parse_op(script: str) -> tuple[str, dict]:
    """What a script asks (used by the WS-Management test double and in logs)."""
    first = script.split("\n", 1)[0]
    op = first.removeprefix("# nubo-op: ").strip()
    blob = script.split("FromBase64String('", 1)[1].split("')", 1)[0]
    return op, json.loads(base64.b64decode(blob))
