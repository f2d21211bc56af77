"""A small S3-compatible endpoint that misbehaves on purpose, on loopback, for tests.

``FakeS3(mode)`` answers every request (GetObject, ListObjectsV2...) the way ``mode`` says:

* ``"huge"``: 200 with a body of ``size`` bytes, whatever Range asked for;
* ``"trickle"``: 200 announcing ``size`` bytes, sent one byte every ``pause`` seconds;
* ``"error"``: 403 whose S3 error message is ``message`` (escape sequences, say).

``sent`` counts the body bytes the client took before it hung up.
"""
from __future__ import annotations

import http.server
import threading
from typing import Any
from xml.sax.saxutils import escape

_CHUNK = 64 << 10


class FakeS3:
    def __init__(self, mode: str, *, size: int = 100, pause: float = 0.2,
                 message: str = "denied") -> None:
        self.mode, self.size, self.pause, self.message = mode, size, pause, message
        self.sent = 0
        self.stop = threading.Event()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                fake.answer(self)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, h: http.server.BaseHTTPRequestHandler) -> None:
        if self.mode == "error":
            body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                    f"<Message>{escape(self.message)}</Message></Error>").encode()
            self._head(h, 403, len(body), "application/xml")
            h.wfile.write(body)
            return
        self._head(h, 200, self.size, "application/octet-stream")
        if h.command == "HEAD":
            return
        try:
            if self.mode == "trickle":
                for _ in range(self.size):
                    if self.stop.wait(self.pause):
                        return
                    h.wfile.write(b"z")
                    h.wfile.flush()
                    self.sent += 1
                return
            left = self.size
            while left > 0 and not self.stop.is_set():
                n = min(_CHUNK, left)
                h.wfile.write(b"\0" * n)
                self.sent += n
                left -= n
        except OSError:
            return  # the client hung up

    @staticmethod
    def _head(h: http.server.BaseHTTPRequestHandler, status: int, length: int,
              kind: str) -> None:
        h.send_response(status)
        h.send_header("Content-Type", kind)
        h.send_header("Content-Length", str(length))
        h.send_header("Last-Modified", "Sun, 06 Dec 2026 12:00:00 GMT")
        h.send_header("ETag", '"0"')
        h.end_headers()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
