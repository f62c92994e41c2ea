"""Where extensions live and the checks CloudStack makes on an extension's executable.

The extensions directory is $NUBO_INSTANCE_PATH/extensions unless NUBO_EXTENSIONS_PATH says
otherwise; an extension's files are in <extensions directory>/<extension name>/ and its
`path` is relative to that directory. The executable must resolve (symbolic links followed)
inside it, exist, be a regular file and be executable; its sha256 is recorded and rechecked."""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

from flask import current_app

from app.services.errors import InvalidParameter

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def root() -> str:
    configured = current_app.config.get("EXTENSIONS_PATH")
    return os.path.abspath(configured or os.path.join(current_app.instance_path, "extensions"))


def payload_root() -> str:
    """Payload files: beside the extensions, never inside an extension's own directory."""
    return os.path.join(current_app.instance_path, "extension-payloads")


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME.match(name) or name in (".", ".."):
        raise InvalidParameter("The extension's name must be 1-64 letters, digits, dots, dashes or underscores "
                               "(it names the extension's directory)", field="name")
    return name


def directory(name: str) -> str:
    return os.path.join(root(), name)


def payload_dir(name: str) -> str:
    return os.path.join(payload_root(), name)


def check_relative(name: str, relative: str | None) -> str:
    """The path as stored: relative to the extension's directory, no absolute path, no '..'."""
    rel = (relative or "").strip().replace("\\", "/")
    if not rel:
        return f"{name}.sh"  # CloudStack's default entry point
    if rel.startswith(f"{name}/"):  # given relative to the extensions directory, as 4.21's UI does
        rel = rel[len(name) + 1:]
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if rel.startswith("/") or ".." in parts or not parts:
        raise InvalidParameter("The path must be relative to the extension's directory "
                               f"({directory(name)}) and stay inside it", field="path")
    if len(parts) > 3:
        raise InvalidParameter("The path cannot be nested more than two sub-directories deep", field="path")
    return "/".join(parts)


@dataclass(frozen=True)
class PathState:
    path: str  # absolute, as it will be run
    ready: bool
    reason: str | None = None
    checksum: str | None = None


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def inspect(name: str, relative: str) -> PathState:
    """The executable's state now (never raises)."""
    base = os.path.realpath(directory(name))
    path = os.path.join(directory(name), relative)
    real = os.path.realpath(path)
    if os.path.commonpath([base, real]) != base or real == base:
        return PathState(path, False, f"{relative} resolves outside the extension's directory {base}")
    if not os.path.exists(real):
        return PathState(path, False, f"{path} does not exist")
    if not os.path.isfile(real):
        return PathState(path, False, f"{path} is not a regular file")
    if not os.access(real, os.X_OK):
        return PathState(path, False, f"{path} is not executable")
    try:
        digest = sha256(real)
    except OSError as e:
        return PathState(path, False, f"{path} cannot be read: {e.strerror}")
    return PathState(real, True, None, digest)
