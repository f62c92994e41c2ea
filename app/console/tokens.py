"""websockify token plugin: turns a console token into the VM's console address.

Until console sessions exist (the console issue), no token is valid: every
lookup is refused, so the proxy can never relay anywhere.
"""
from __future__ import annotations

import logging

log = logging.getLogger("nubo.console")


class NuboTokens:
    def __init__(self, src=None):
        self.src = src

    def lookup(self, token: str):
        log.warning("console token refused (no console sessions yet)")
        return None
