"""A local webhook (a threaded ``http.server`` on ``127.0.0.1:0``) for the notifier's tests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hook:
    """A webhook on 127.0.0.1 at ``path`` that records each JSON body, hands it to
    :meth:`on_body` (before it answers, so a sender waiting for the answer waits for that
    too) and answers from a script (``(status, body, headers)``; ``200 {"ok": true}`` once
    the script is spent)."""

    def __init__(self, path: str = "/hook") -> None:
        self.bodies: list[dict] = []
        self.script: list[tuple[int, dict, dict]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length))
                hook.bodies.append(body)
                hook.on_body(body)
                status, answer, headers = (
                    hook.script.pop(0) if hook.script else (200, {"ok": True}, {})
                )
                data = json.dumps(answer).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def on_body(self, body: dict) -> None:
        """What to do with each body as it comes (nothing here; a subclass looks around)."""

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
