#!/usr/bin/env python3
"""The virtual router's user-data and meta-data server (CloudStack's VR paths).

Copied to the router's host and run inside the router's namespace:

    python3 metadata.py --dir /var/lib/nubo/routers/<key> --bind <guest ip> --port 80 \
        [--daemon --pidfile <file> --log <file>]

Standard library only (it runs on the host with the system's Python, not Nubo's). It reads
<dir>/metadata.json, written by the router's apply:

    {"<vm ip>": {"instance-id": "...", "local-hostname": "...", "user-data": "..." | null,
                 "public-keys": ["ssh-ed25519 ..."], "items": {"service-offering": "...", ...}}}

and rereads it whenever its mtime changes. Every answer is chosen by the requester's source
address only (the host bridge's anti-spoofing keeps those honest): a VM gets its own data,
never another's; an unknown address gets 404 with an empty body.

Paths, as CloudStack's VR serves them (its Apache rewrites in /var/www/html/latest/.htaccess
map `^<file>$`, `^meta-data/(.+)$` and `^meta-data/$` to the requester's directory), which is
what cloud-init's CloudStack datasource reads:

    /latest/user-data                 the user data (404 when the VM has none)
    /latest/meta-data/                the list of meta-data items, one per line
    /latest/meta-data/<item>          one item: instance-id, local-hostname, local-ipv4,
                                      public-keys, availability-zone, service-offering, vm-id,
                                      public-ipv4, public-hostname, cloud-identifier, ...
    /latest/<item>                    the same item (the VR's shortcut), and /latest/user-data

Paths are matched against that fixed set: no file is ever opened from a path.

With --password-port (8080, as CloudStack's VR), it also answers the password server's
protocol that cloud-init's CloudStack datasource speaks at boot (header `DomU_Request:
send_my_password` / `saved_password`): the VM's "password" from metadata.json if one is set
(once: then "saved_password"), "saved_password" when there is none, "bad_request" to an
unknown address. Without an answer there, the datasource would wait out its timeouts.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_REQUEST_LINE = 2048
MAX_HEADERS = 32
MAX_THREADS = 64
_ITEM = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class Store:
    """metadata.json, reloaded when its mtime (or size) changes."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._stamp = None
        self._data: dict = {}

    def get(self, ip: str) -> dict | None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    with open(self.path, encoding="utf-8") as f:
                        data = json.load(f)
                    self._data = data if isinstance(data, dict) else {}
                except (OSError, ValueError):
                    self._data = {}
            vm = self._data.get(ip)
        return vm if isinstance(vm, dict) else None


def meta_items(ip: str, vm: dict) -> dict[str, str]:
    """The VM's meta-data items, name -> text."""
    items: dict[str, str] = {}
    extra = vm.get("items")
    if isinstance(extra, dict):
        for k, v in extra.items():
            if isinstance(k, str) and _ITEM.match(k) and isinstance(v, str):
                items[k] = v
    items["local-ipv4"] = items.get("local-ipv4") or ip
    for k in ("instance-id", "local-hostname"):
        if isinstance(vm.get(k), str):
            items[k] = vm[k]
    keys = vm.get("public-keys")
    if isinstance(keys, list) and keys:
        items["public-keys"] = "\n".join(k for k in keys if isinstance(k, str))
    return items


def answer(path: str, ip: str, vm: dict | None) -> tuple[int, str]:
    """(status, body) for a GET of `path` from `ip`."""
    if vm is None:
        return 404, ""
    path = path.split("?", 1)[0].split("#", 1)[0]
    items = meta_items(ip, vm)
    user_data = vm.get("user-data")
    if path in ("/latest/user-data", "/latest/user-data/"):
        return (200, user_data) if isinstance(user_data, str) else (404, "")
    if path in ("/latest/meta-data", "/latest/meta-data/"):
        return 200, "".join(k + "\n" for k in sorted(items))
    if path in ("/latest", "/latest/"):
        return 200, "meta-data\nuser-data\n"
    for prefix in ("/latest/meta-data/", "/latest/"):
        if path.startswith(prefix):
            name = path[len(prefix):]
            if name in items:  # a fixed set of names: nothing else is ever looked up
                return 200, items[name]
            break
    return 404, ""


class Handler(BaseHTTPRequestHandler):
    server_version = "nubo-metadata"
    sys_version = ""
    protocol_version = "HTTP/1.0"
    timeout = 10  # a slow client cannot hold a thread for long

    def parse_request(self) -> bool:
        if len(self.raw_requestline) > MAX_REQUEST_LINE:
            self.send_error(414)
            return False
        ok = super().parse_request()
        if ok and len(self.headers) > MAX_HEADERS:
            self.send_error(431)
            return False
        return ok

    def do_GET(self):  # noqa: N802 (http.server's naming)
        status, body = answer(self.path, self.client_address[0], self.server.store.get(self.client_address[0]))
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_HEAD(self):  # noqa: N802
        self.send_error(405)

    do_POST = do_PUT = do_DELETE = do_HEAD

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.client_address[0], fmt % args))


class PasswordHandler(Handler):
    def do_GET(self):  # noqa: N802
        ip = self.client_address[0]
        body = password_answer(self.headers.get("DomU_Request", ""), ip, self.server.store, self.server.saved)
        data = body.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def password_answer(request: str, ip: str, store: Store, saved: set) -> str:
    vm = store.get(ip)
    if vm is None:
        return "bad_request"
    password = vm.get("password")
    if request == "send_my_password":
        if isinstance(password, str) and password and (ip, password) not in saved:
            return password
        return "saved_password"
    if request == "saved_password":
        if isinstance(password, str) and password:
            saved.add((ip, password))
        return "saved_password"
    return "bad_request"


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, addr, store: Store, handler=Handler):
        self.store = store
        self.saved: set = set()  # (ip, password) pairs the VM said it saved
        self._slots = threading.BoundedSemaphore(MAX_THREADS)
        super().__init__(addr, handler)

    def server_bind(self):
        # HTTPServer.server_bind looks the address up in DNS (socket.getfqdn), which inside a
        # router namespace waits for resolvers it cannot reach: bind only.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address):
        # At most MAX_THREADS requests at once; beyond that the connection is closed.
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _daemonize(pidfile: str, log: str, ready_fd_box: list) -> None:
    """Double fork; the first parent exits only once the server listens (or failed)."""
    r, w = os.pipe()
    if os.fork() > 0:
        os.close(w)
        status = os.read(r, 512).decode(errors="replace")
        if status.startswith("ok"):
            os._exit(0)
        sys.stderr.write((status or "metadata server exited before listening") + "\n")
        sys.stderr.flush()
        os._exit(1)
    os.close(r)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    logfd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640) if log else devnull
    os.dup2(devnull, 0)
    os.dup2(logfd, 1)
    os.dup2(logfd, 2)
    ready_fd_box.append(w)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Nubo virtual router metadata server")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--bind", required=True)
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--password-port", type=int, default=0, help="CloudStack's password server (8080); 0: none")
    ap.add_argument("--daemon", action="store_true")
    ap.add_argument("--pidfile")
    ap.add_argument("--log")
    a = ap.parse_args(argv)
    ready: list = []
    if a.daemon:
        _daemonize(a.pidfile, a.log, ready)
    store = Store(os.path.join(a.dir, "metadata.json"))
    servers = []
    try:
        servers.append(Server((a.bind, a.port), store))
        if a.password_port:
            servers.append(Server((a.bind, a.password_port), store, PasswordHandler))
    except OSError as e:
        if ready:
            os.write(ready[0], f"error: {a.bind}:{a.port}: {e}".encode())
        raise SystemExit(f"cannot listen on {a.bind}:{a.port}: {e}")
    if a.pidfile:
        tmp = a.pidfile + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, a.pidfile)
    server = servers[0]

    def stop(*_):
        for srv in servers:
            threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    for extra in servers[1:]:
        threading.Thread(target=extra.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True).start()
    if ready:
        os.write(ready[0], b"ok")
        os.close(ready[0])
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        for srv in servers:
            srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
