"""A minimal SMTP receiver on 127.0.0.1 for tests (Python 3.12 has no smtpd): it speaks
just enough of RFC 5321 for smtplib's send_message and keeps each message's text."""
from __future__ import annotations

import socketserver
import threading


class _Handler(socketserver.StreamRequestHandler):
    def handle(self):
        w = self.wfile.write
        w(b"220 localhost test SMTP\r\n")
        data = None
        while line := self.rfile.readline():
            if data is not None:
                if line in (b".\r\n", b".\n"):
                    self.server.messages.append(b"".join(data).decode("utf-8", "replace"))
                    data = None
                    w(b"250 OK\r\n")
                else:
                    data.append(line[1:] if line.startswith(b"..") else line)
                continue
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                w(b"250 localhost\r\n")
            elif verb == b"DATA":
                data = []
                w(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                w(b"221 bye\r\n")
                return
            else:  # MAIL, RCPT, RSET, NOOP
                w(b"250 OK\r\n")


class SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.messages: list[str] = []
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self):
        self.shutdown()
        self.server_close()
