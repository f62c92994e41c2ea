"""State sync between hypervisors and Nubo's records (the `monitor` process).

Until the VM lifecycle lands there is nothing to reconcile: the loop only
reports that it is alive.
"""
from __future__ import annotations

import logging
import time

log = logging.getLogger("nubo.monitor")


def run(once: bool = False, interval: float = 30.0) -> None:
    log.info("monitor started")
    while True:
        if once:
            return
        time.sleep(interval)
