"""A tiny stdlib HTTP handler for tests: answers every GET with ``<greeting> <path>``."""

from __future__ import annotations

import http.server
from typing import Any


def greeting_handler(greeting: str) -> type[http.server.BaseHTTPRequestHandler]:
    """A keep-alive (HTTP/1.1) handler class whose GETs answer ``f"{greeting} {path}"``."""

    class Greeting(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = f"{greeting} {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Greeting
