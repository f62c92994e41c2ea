"""A stand-in resolver for tests: names the test chose answer with loopback addresses
the test chose; IP literals and localhost resolve as usual; any other name fails at
once, so no test sends a DNS query off the machine."""
from __future__ import annotations

import socket
from typing import Callable

_real = socket.getaddrinfo


def fake_dns(monkeypatch, answers: dict[str, Callable[[], list[str]] | list[str]]) -> list[str]:
    """Patch socket.getaddrinfo; `answers` maps a name to its addresses (or to a function giving
    them, called on every lookup). Returns the list of names looked up, in order."""
    asked: list[str] = []

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None:
            asked.append(name)
        if name is None or name == "localhost" or _literal(name):
            return _real(host, port, family, type, proto, flags)
        if name.rstrip(".").lower() in answers:
            found = answers[name.rstrip(".").lower()]
            addrs = found() if callable(found) else found
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                     (a, port or 0) if ":" not in a else (a, port or 0, 0, 0)) for a in addrs]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def _literal(name: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, name)
            return True
        except OSError:
            pass
    return False
