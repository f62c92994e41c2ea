"""Configuration: defaults here, then NUBO_* environment variables.

`create_app` loads `Defaults`, then `app.config.from_prefixed_env("NUBO")`, so
`NUBO_DATABASE_URL=...` overrides `DATABASE_URL`. Values that look like JSON are
parsed by Flask (``NUBO_PORT=8080`` arrives as an int), so readers coerce.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path


class Defaults:
    # Where SQLite files, the generated secret key, logs and local storage live.
    INSTANCE_PATH = "./instance"
    # Empty means "SQLite in the instance directory" (filled in by finalize()).
    DATABASE_URL = ""
    # Empty means "SqliteHuey in the instance directory"; redis://... selects RedisHuey.
    JOBS_URL = ""
    BIND = "127.0.0.1"
    PORT = 8080
    CONSOLE_PORT = 6080
    SECRET_KEY = None
    CREDENTIALS_KEY = None
    ADMIN_PASSWORD = None
    SEED_DEMO = 1
    # Public origins the console proxy accepts (space separated); derived from
    # BIND/PORT when empty.
    PUBLIC_ORIGINS = ""
    # Websocket URL browsers use for the console proxy (ws://host:port/path or
    # wss://...); derived from BIND/CONSOLE_PORT when empty. Behind TLS: wss://.
    CONSOLE_PUBLIC_URL = ""
    # The console proxy serves wss:// itself when given a certificate and key.
    CONSOLE_CERT = ""
    CONSOLE_KEY = ""
    # Seconds between the proxy's checks of an open console session (ended by an
    # admin, VM stopped or moved, idle, too long).
    CONSOLE_CHECK_SECONDS = 5
    # Reverse proxies (addresses or CIDR networks, space or comma separated) whose
    # X-Forwarded-For/-Proto/-Host are believed; empty: none (app/proxies.py).
    # Behind the documented nginx on the same machine: "127.0.0.1 ::1".
    TRUSTED_PROXIES = ""

    # Which Procfile process this is ("web", "upload"; empty: everything in one process, as
    # `flask run` and the tests). Under "web", getUploadParamsForTemplate's postURL points
    # to the upload process and the web process takes no uploads.
    PROCESS = ""
    UPLOAD_PORT = 8081
    # The upload URL's base clients POST to (http(s)://host:port); derived from
    # BIND/UPLOAD_PORT when empty. Behind a proxy: the proxy's public upload URL.
    UPLOAD_PUBLIC_URL = ""
    # Uploads one process takes at once (more get 503 + Retry-After), and the seconds
    # an upload may send nothing before it is ended (408, the partial file removed).
    UPLOAD_SLOTS = 8
    UPLOAD_IDLE_TIMEOUT = 60

    SQLALCHEMY_TRACK_MODIFICATIONS = False
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    WTF_CSRF_TIME_LIMIT = None  # token lives as long as the session
    # Run huey tasks inline (tests that want synchronous jobs set this).
    JOBS_IMMEDIATE = False


def instance_path_from_env() -> Path:
    """The instance directory must be known before the Flask app exists."""
    return Path(os.environ.get("NUBO_INSTANCE_PATH", Defaults.INSTANCE_PATH)).resolve()


def _read_or_create(path: Path, make) -> str:
    """Read a generated secret, creating it once (0600) if missing.

    Processes started together on a new instance (honcho's web, worker and monitor) race
    here: the secret is written whole to a file of this process's own, then linked into
    place, which fails if another process got there first; that one's secret is kept.
    No process can read a secret file that is still being written."""
    if path.exists():
        return path.read_text().strip()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(make())
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


def finalize(config: dict, instance: Path) -> None:
    """Derive the settings that depend on the instance directory."""
    instance.mkdir(parents=True, exist_ok=True)
    config["INSTANCE_PATH"] = str(instance)
    if not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = _read_or_create(
            instance / "secret_key", lambda: secrets.token_urlsafe(48))
    if not config.get("CREDENTIALS_KEY"):
        from cryptography.fernet import Fernet
        config["CREDENTIALS_KEY"] = _read_or_create(
            instance / "credentials.key", lambda: Fernet.generate_key().decode())
    url = str(config.get("DATABASE_URL") or "") or f"sqlite:///{instance / 'nubo.db'}"
    config["DATABASE_URL"] = url
    config["SQLALCHEMY_DATABASE_URI"] = url
    config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(url)
    config["JOBS_URL"] = str(config.get("JOBS_URL") or "") or f"sqlite:///{instance / 'jobs.db'}"
    for key in ("PORT", "CONSOLE_PORT", "UPLOAD_PORT", "UPLOAD_SLOTS"):
        config[key] = int(config[key])
    config["UPLOAD_IDLE_TIMEOUT"] = float(config["UPLOAD_IDLE_TIMEOUT"])
    config["PROCESS"] = str(config.get("PROCESS") or "")
    config["CONSOLE_CHECK_SECONDS"] = float(config.get("CONSOLE_CHECK_SECONDS") or 5)
    from app.proxies import parse_trusted
    try:  # a typo here must stop the start, not silently trust nobody (or everybody)
        config["TRUSTED_PROXY_NETWORKS"] = parse_trusted(config.get("TRUSTED_PROXIES"))
    except ValueError as e:
        raise ValueError(f"NUBO_TRUSTED_PROXIES: {e}") from None
    config["SEED_DEMO"] = str(config.get("SEED_DEMO", 1)) not in ("0", "false", "False", "no")
    if config.get("ADMIN_PASSWORD") is not None:
        config["ADMIN_PASSWORD"] = str(config["ADMIN_PASSWORD"])
    host = "127.0.0.1" if config["BIND"] in ("0.0.0.0", "::") else config["BIND"]
    if not config.get("PUBLIC_ORIGINS"):
        config["PUBLIC_ORIGINS"] = f"http://{host}:{config['PORT']} http://localhost:{config['PORT']}"
    if not config.get("CONSOLE_PUBLIC_URL"):
        config["CONSOLE_PUBLIC_URL"] = f"ws://{host}:{config['CONSOLE_PORT']}/"
    if not config.get("UPLOAD_PUBLIC_URL") and config["PROCESS"]:
        config["UPLOAD_PUBLIC_URL"] = f"http://{host}:{config['UPLOAD_PORT']}"


def engine_options(url: str) -> dict:
    if url.startswith("sqlite"):
        # Several processes (web, worker, monitor) share the file: wait for locks.
        return {"connect_args": {"timeout": 30}}
    # No pool_pre_ping: app/engine.py pings only connections that sat idle.
    return {"pool_recycle": 3600}
