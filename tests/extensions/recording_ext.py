#!/usr/bin/env python3
"""A recording extension written only from the contract (issue 20): called as
`recording_ext.py <action> <payload.json> <timeout>`; keeps its VMs in a JSON file and records
every call (argv, the payload, the payload file's mode, whether stdin was empty) as a line of
calls.jsonl, both in the directory named by the extension detail `statedir`.

How it misbehaves, for the tests: statedir/control.json maps an action to "hang" (sleeps until
killed), "garbage" (prints bytes that are no answer), "fail" (prints a message, exits 3) or
"json" (status answers {"power_state": ...} instead of a bare word) or "leak" (prints its whole
payload, secrets included, and exits 4)."""
import json
import os
import stat
import sys
import time


def main() -> int:
    action, payload_file, timeout = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(payload_file) as f:
        payload = json.load(f)
    statedir = payload["externaldetails"]["extension"]["statedir"]
    stdin_empty = sys.stdin.read() == "" if not sys.stdin.closed else True
    with open(os.path.join(statedir, "calls.jsonl"), "a") as f:
        f.write(json.dumps({"action": action, "argv": sys.argv[1:], "payload": payload, "timeout": timeout,
                            "mode": oct(stat.S_IMODE(os.stat(payload_file).st_mode)), "stdin_empty": stdin_empty,
                            "pid": os.getpid()}) + "\n")
    control_path = os.path.join(statedir, "control.json")
    control = json.load(open(control_path)) if os.path.exists(control_path) else {}
    how = control.get(action)
    if how == "hang":
        print("hanging", flush=True)
        time.sleep(3600)
    if how == "garbage":
        sys.stdout.buffer.write(b"\x00\xffnot an answer {{{\n")
        return 0
    if how == "leak":
        print(json.dumps(payload))
        return 4
    if how == "fail":
        print(f"{action} refused by the recording extension", file=sys.stderr)
        return 3
    vms_path = os.path.join(statedir, "vms.json")
    vms = json.load(open(vms_path)) if os.path.exists(vms_path) else {}
    uuid = payload.get("virtualmachineid")
    vm = vms.get(uuid)

    def save():
        with open(vms_path + ".tmp", "w") as f:
            json.dump(vms, f)
        os.replace(vms_path + ".tmp", vms_path)

    if action == "prepare":
        print(json.dumps({"details": {"rec_vmid": str(100 + len(vms))}}))
    elif action == "create":
        to = payload["cloudstack.vm.details"]
        vms[uuid] = {"name": payload["virtualmachinename"], "state": "running", "cpus": to["cpus"],
                     "ram": to["minRam"], "reboots": 0, "details": to["details"]}
        save()
        print(json.dumps({"status": "success", "message": "Instance created"}))
    elif action in ("start", "stop", "reboot", "delete"):
        if vm is None:
            print(f"no such VM {uuid}")
            return 1
        if action == "delete":
            del vms[uuid]
        elif action == "reboot":
            vm["reboots"] += 1
        else:
            vm["state"] = "running" if action == "start" else "stopped"
        save()
        print(json.dumps({"status": "success", "message": f"Instance {action}"}))
    elif action == "status":
        word = "poweroff" if vm is None or vm["state"] != "running" else "poweron"
        print(json.dumps({"status": "success", "power_state": word}) if how == "json" else word)
    elif action == "getconsole":
        ext = payload["externaldetails"]["extension"]
        if ext.get("consoleurl"):
            print(json.dumps({"console": {"url": ext["consoleurl"], "protocol": "direct"}}))
        else:
            print(json.dumps({"console": {"host": "127.0.0.1", "port": int(ext.get("consoleport", 5999)),
                                          "password": "onetime", "passwordonetimeuseonly": True,
                                          "protocol": "vnc"}}))
    else:  # a custom action: echo what it was given
        print(json.dumps({"action": payload.get("action"), "parameters": payload.get("parameters", {})}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
