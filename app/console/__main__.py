"""`python -m app.console`: the console proxy (app/console/proxy.py) on
NUBO_BIND:NUBO_CONSOLE_PORT, with Nubo's token plugin and Origin check; wss://
too when NUBO_CONSOLE_CERT (and NUBO_CONSOLE_KEY) are set."""
from __future__ import annotations

import gc
import logging

from app import create_app
from app.console.proxy import make_proxy


def main() -> None:
    app = create_app()  # once: every connection process inherits it
    cfg = app.config
    logging.getLogger("nubo.console").info("console proxy on %s:%s", cfg["BIND"], cfg["CONSOLE_PORT"])
    proxy = make_proxy(app)
    gc.freeze()  # connection processes are forked: share the app's objects rather than copy them
    # start_server() installs signal handlers and forks per connection: it must
    # own the main thread of this process.
    proxy.start_server()


if __name__ == "__main__":
    main()
