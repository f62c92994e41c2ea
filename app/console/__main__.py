"""`python -m app.console`: websockify on NUBO_BIND:NUBO_CONSOLE_PORT with Nubo's
token plugin and an Origin check against the configured public origins."""
from __future__ import annotations

import logging

from websockify.auth_plugins import ExpectOrigin
from websockify.websocketproxy import WebSocketProxy

from app import create_app
from app.console.tokens import NuboTokens


def main() -> None:
    app = create_app()
    cfg = app.config
    logging.getLogger("nubo.console").info("console proxy on %s:%s", cfg["BIND"], cfg["CONSOLE_PORT"])
    # start_server() installs signal handlers and forks per connection: it must
    # own the main thread of this process.
    WebSocketProxy(
        listen_host=cfg["BIND"], listen_port=cfg["CONSOLE_PORT"],
        token_plugin=NuboTokens(), auth_plugin=ExpectOrigin(cfg["PUBLIC_ORIGINS"]),
        heartbeat=30,
    ).start_server()


if __name__ == "__main__":
    main()
