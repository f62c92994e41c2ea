"""Run one action in a child process that SIGKILLs itself at a named step, the way a
web or worker process dies (no `finally`, no rollback, no clean-up).

    run_killed(app, "deploy", {"user": ..., ...}, kill_at="app.services.planner:hold", when="after")

The child builds the app on the same database (and instance directory) as the test's
`app`, with jobs run in-process (so the "web" and the "worker" die together), patches
`module:attribute` (a dotted attribute for methods, e.g. `...simulator:SimulatorDriver.start_vm`)
so that reaching it (`before`) or returning from it (`after`) kills the process, then
runs the action. Returns the child's exit status: -SIGKILL when the step was reached.

The children are forked from a server process of this module (one per test process) that has
imported the app once: a fresh interpreter spent ~2 s importing it for every run. The server
holds no connection and runs no thread, so each child starts with no state of its own; it takes
the caller's environment from the request. One difference from a new process: what a module
reads from the environment at import (accounts.PASSWORD_METHOD, from NUBO_PASSWORD_HASH) comes
from the environment the server started with, the test process's at its first run_killed.
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys


_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_server: subprocess.Popen | None = None


def _fork_server() -> subprocess.Popen:
    global _server
    if _server is None or _server.poll() is not None:
        _server = subprocess.Popen([sys.executable, "-m", "tests.helpers.killed_step", "--serve"], cwd=_ROOT,
                                   env={**os.environ, "PYTHONPATH": _ROOT}, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
    return _server


def run_killed(app, action: str, args: dict, *, kill_at: str, when: str = "before", timeout: float = 120) -> int:
    config = {"INSTANCE_PATH": app.instance_path, "DATABASE_URL": app.config["DATABASE_URL"],
              "SECRET_KEY": app.config["SECRET_KEY"], "TESTING": True, "SEED_DEMO": False, "JOBS_IMMEDIATE": True}
    spec = {"config": config, "action": action, "args": args, "kill_at": kill_at, "when": when,
            "env": {**os.environ, "PYTHONPATH": _ROOT}, "timeout": timeout}
    server = _fork_server()
    server.stdin.write(json.dumps(spec) + "\n")
    server.stdin.flush()
    answer = server.stdout.readline()
    if not answer:
        raise AssertionError(f"the fork server stopped ({server.poll()})")
    out = json.loads(answer)
    if out["returncode"] not in (-signal.SIGKILL, 0):
        raise AssertionError(f"child failed ({out['returncode']}): {out['stderr']}")
    from app.extensions import db
    db.session.commit()  # end the caller's read snapshot (REPEATABLE READ on MariaDB): see what the child left
    return out["returncode"]


def _trap(kill_at: str, when: str) -> None:
    module_name, _, attr = kill_at.partition(":")
    owner = importlib.import_module(module_name)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    real = getattr(owner, name)

    def trapped(*a, **kw):
        if when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        out = real(*a, **kw)
        os.kill(os.getpid(), signal.SIGKILL)
        return out

    setattr(owner, name, trapped)


def _deploy(args):
    from app.services import accounts, vms
    user = accounts.user_by_uuid(args["user"])
    vms.deploy(user, zone_uuid=args["zone"], service_offering_uuid=args["so"], template_uuid=args["t"],
               name=args["name"], host_uuid=args.get("host"))


def _attach(args):
    from app.services import accounts, volumes
    volumes.attach_volume(accounts.user_by_uuid(args["user"]), args["volume"], args["vm"])


def _upload(args):
    from app.services import templates
    t, ref = templates.check_upload(args["metadata"], args["expires"], args["signature"])
    size = args["size"]
    sent = 0

    def chunks():
        nonlocal sent
        while sent < size:
            n = min(1 << 16, size - sent)
            sent += n
            yield b"\0" * n
    templates.receive_upload(t, ref, chunks(), size)


def _migrate(args):
    from app.services import accounts, vms
    vms.migrate(accounts.user_by_uuid(args["user"]), args["vm"])


def _create_volume(args):
    from app.services import accounts, volumes
    volumes.create_volume(accounts.user_by_uuid(args["user"]), name=args["name"], zone_uuid=args["zone"],
                          disk_offering_uuid=args["offering"])


def _scale(args):
    from app.services import accounts, vms
    vms.change_offering(accounts.user_by_uuid(args["user"]), args["vm"], args["offering"])


def _delete_account(args):
    from app.services import account_deletion, accounts
    caller = accounts.user_by_uuid(args["user"])
    account_deletion.start(caller, accounts.visible_account(caller, args["account"]))


ACTIONS = {"deploy": _deploy, "attach": _attach, "upload": _upload, "migrate": _migrate,
           "create_volume": _create_volume, "scale": _scale, "delete_account": _delete_account}


def _child(spec: dict) -> None:
    os.environ.clear()
    os.environ.update(spec["env"])
    signal.alarm(int(spec["timeout"]))  # a child that hangs ends (SIGALRM), and its run fails
    from app import create_app
    app = create_app(spec["config"])
    _trap(spec["kill_at"], spec["when"])
    with app.app_context():
        ACTIONS[spec["action"]](spec["args"])


def serve() -> None:
    """One request a line on stdin (a run_killed spec), one answer a line on stdout: the forked
    child's exit status and the end of its output. Ends when stdin closes (its test process ended)."""
    import tempfile
    import traceback

    # What create_app imports (every child makes an app), imported once; no app is made here.
    for module in ("app.api.commands", "app.cli", "app.jobs.tasks", "app.monitor.hosts", "app.web",
                   "app.web.errors", "app.web.filters"):
        importlib.import_module(module)
    for line in sys.stdin:
        spec = json.loads(line)
        with tempfile.TemporaryFile() as output:
            pid = os.fork()
            if pid == 0:  # the child: its output to the file, never to the answers' pipe
                code = 1
                try:
                    os.dup2(output.fileno(), 1)
                    os.dup2(output.fileno(), 2)
                    _child(spec)
                    code = 0
                except BaseException:  # noqa: BLE001 - reported to the test as the child's failure
                    traceback.print_exc()
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            output.seek(0)
            text = output.read().decode(errors="replace")[-3000:]
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status), "stderr": text}), flush=True)


if __name__ == "__main__":
    serve()
