"""gunicorn settings for Nubo's two HTTP processes (Procfile `web` and `upload`).

NUBO_PROCESS=web (default) serves the portal and /client/api on NUBO_BIND:NUBO_PORT;
NUBO_PROCESS=upload serves only the signed template/ISO upload URL on
NUBO_BIND:NUBO_UPLOAD_PORT, as CloudStack posts uploads to its SSVM, not to the
management server: slow uploads hold the upload process's threads, never the web's.

Why these values:
- keepalive 75 s: API clients reuse one connection and poll jobs every 2-5 s (Ansible 2 s,
  cs/CloudMonkey 1-3 s). gunicorn's default (2 s) closed idle connections just as clients
  sent their next request on them: "Connection aborted" / "Connection reset by peer".
  75 s is above every client's poll interval and above a load balancer's usual 60 s idle
  timeout (the proxy must close first; CloudStack's Jetty keeps 30 s+).
- gthread: an idle keep-alive connection waits in the worker's poller, not in a thread.
- timeout 120 s: the worker's heartbeat (the main loop beats while request threads work,
  so a long request does not kill its worker); graceful_timeout 30 s: on SIGTERM/HUP
  in-flight requests finish before a worker goes.
- no max_requests: a worker restarting for max_requests closes its idle keep-alive
  connections, which is the very race above.
- web threads 32: every open page holds one thread with its live-update stream (GET /stream,
  Server-Sent Events); a process serves at most live.streams.max (24) of them, so 8 threads
  per process stay for requests. Pages beyond the cap refresh by polling.
"""
import os

_role = os.environ.get("NUBO_PROCESS", "web")
_host = os.environ.get("NUBO_BIND", "127.0.0.1")

if _role == "upload":
    bind = f"{_host}:{os.environ.get('NUBO_UPLOAD_PORT', '8081')}"
    workers = int(os.environ.get("NUBO_UPLOAD_WORKERS", "1"))
    # One thread per upload in flight; the app refuses uploads beyond NUBO_UPLOAD_SLOTS
    # at once (503) rather than queueing them behind each other.
    threads = int(os.environ.get("NUBO_UPLOAD_THREADS", "16"))
else:
    bind = f"{_host}:{os.environ.get('NUBO_PORT', '8080')}"
    workers = int(os.environ.get("NUBO_WEB_WORKERS", "2"))
    threads = int(os.environ.get("NUBO_WEB_THREADS", "32"))

worker_class = "gthread"
keepalive = int(os.environ.get("NUBO_HTTP_KEEPALIVE", "75"))
timeout = 120
graceful_timeout = 30
max_requests = 0
accesslog = "-"
# Secrets in query strings (passwords, details, signatures, console tokens) are masked.
logger_class = "app.web.accesslog.RedactingLogger"


def post_worker_init(worker):
    """On SIGTERM (graceful stop) the open live-update streams end at once: each would
    otherwise hold the worker for graceful_timeout."""
    if _role != "web":
        return
    import signal
    previous = signal.getsignal(signal.SIGTERM)

    def end_streams(sig, frame):
        try:
            from app.web.stream import shutdown
            shutdown()
        finally:
            if callable(previous):
                previous(sig, frame)
    signal.signal(signal.SIGTERM, end_streams)
    signal.siginterrupt(signal.SIGTERM, False)  # as gunicorn set it: requests are not interrupted
proc_name = f"nubo-{_role}"
