"""CPU of one access-log line (gunicorn's Logger.access) for a signed API call's request line:
gunicorn's own logger against Nubo's (app/web/accesslog.py: secrets masked), median thread
time over 5,000 lines each, in this process. The line goes to /dev/null.

    PYTHONPATH=$PWD .venv/bin/python bench/accesslog_bench.py
"""
from __future__ import annotations

import datetime
import statistics
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gunicorn.config import Config  # noqa: E402
from gunicorn.glogging import Logger  # noqa: E402

from app.web.accesslog import RedactingLogger  # noqa: E402

QUERY = ("apiKey=" + "A" * 86 + "&command=listVirtualMachines&listall=true&page=1&pagesize=50&response=json"
         "&signature=abcdefABCDEF1234567890%2B%2F%3D&expires=2026-12-07T13%3A00%3A00%2B0000&signatureVersion=3")


def main() -> None:
    cfg = Config()
    cfg.set("accesslog", "/dev/null")
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": f"/client/api?{QUERY}", "QUERY_STRING": QUERY,
               "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "HTTP_USER_AGENT": "python-requests/2.32",
               "HTTP_ACCEPT": "*/*", "HTTP_CONNECTION": "keep-alive", "PATH_INFO": "/client/api"}
    req = types.SimpleNamespace(headers=[("HOST", "127.0.0.1:8080"), ("USER-AGENT", "python-requests/2.32"),
                                         ("ACCEPT-ENCODING", "gzip"), ("ACCEPT", "*/*"), ("CONNECTION", "keep-alive")])
    resp = types.SimpleNamespace(status="200 OK", sent=1234,
                                 headers=[("Content-Type", "application/json"), ("Content-Length", "1234")])
    took = datetime.timedelta(milliseconds=10)
    for cls in (Logger, RedactingLogger):
        log = cls(cfg)
        times = []
        for _ in range(5000):
            t0 = time.thread_time_ns()
            log.access(resp, req, environ, took)
            times.append(time.thread_time_ns() - t0)
        print(f"| {cls.__module__}.{cls.__name__} | {statistics.median(times) / 1e6:.3f} ms |")


if __name__ == "__main__":
    main()
