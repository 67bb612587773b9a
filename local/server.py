"""HTTP front of the local stack: the API routes of the template plus the dev routes (/health, /_local/*)."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MAX_BODY = 6 * 1024 * 1024


def serve(stack: Any) -> ThreadingHTTPServer:
    """Bind (see `bind`) and serve in a background thread."""
    server = bind(stack)
    start(server)
    return server


def start(server: ThreadingHTTPServer) -> None:
    threading.Thread(target=server.serve_forever, daemon=True).start()


def bind(stack: Any) -> ThreadingHTTPServer:
    """The HTTP server, bound but not serving yet. Port 0 lets the OS choose a free port at bind time (no
    probe-then-bind race between parallel test workers): the chosen one is `server.server_address[1]`."""
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "retention-local"

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: the handlers log
            return

        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            headers = {k: v for k, v in headers.items() if k.lower() not in ("content-length", "connection")}
            headers.setdefault("Content-Type", "application/json")
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, obj: Any) -> None:
            self._send(status, {"Content-Type": "application/json; charset=utf-8"},
                       json.dumps(obj, default=str, ensure_ascii=False).encode("utf-8"))

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            path = re.sub(r"/{2,}", "/", parts.path) or "/"
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._json(413, {"code": "payload_too_large", "message": "request larger than 6 MB"})
                return
            body = self.rfile.read(length) if length else b""
            try:
                if path == "/health":
                    self._json(200, {"status": "ok"})
                elif path.startswith("/_local/"):
                    self._dev(path, body, dict(parse_qsl(parts.query, keep_blank_values=True)))
                else:
                    headers = {k: v for k, v in self.headers.items()}
                    query = dict(parse_qsl(parts.query, keep_blank_values=True))
                    status, hdrs, out = stack.http(self.command, path, headers, query, body)
                    self._send(status, hdrs, out)
            except Exception as exc:  # never a stack trace to the client
                import logging
                logging.getLogger("retention.local").exception("request failed")
                self._json(500, {"code": "internal_error", "message": str(exc)[:300]})

        def _dev(self, path: str, body: bytes, query: dict[str, str]) -> None:
            from retention.core import clock
            if path == "/_local/outbox" and self.command == "GET":
                self._json(200, stack.outbox(to=query.get("to"), rule=query.get("rule"), since=query.get("since")))
            elif path == "/_local/feedback" and self.command == "POST":
                self._feedback(body)
            elif path == "/_local/clock" and self.command == "GET":
                self._json(200, {"now": clock.iso(clock.now())})
            elif path == "/_local/clock/advance" and self.command == "POST":
                try:
                    seconds = float((json.loads(body or b"{}") or {}).get("seconds", 0))
                except (ValueError, AttributeError):
                    self._json(400, {"code": "bad_request", "message": 'body is {"seconds": N}'})
                    return
                if seconds < 0:
                    self._json(400, {"code": "bad_request", "message": "the clock only moves forward"})
                    return
                now = stack.advance(seconds)
                self._json(200, {"now": clock.iso(now)})
            elif path == "/_local/inbox" and self.command in ("GET", "HEAD"):
                from local import inbox
                self._send(200, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"},
                           inbox.page(stack, query))
            elif path == "/_local/inbox/advance" and self.command == "POST":
                from local import inbox
                n = inbox.hours(body)
                if not inbox.same_origin(dict(self.headers.items())) or n is None:
                    self._json(400, {"code": "bad_request", "message": "hours between 0 and 8784, from this page"})
                    return
                stack.advance(n * 3600)
                self._send(303, {"Location": "/_local/inbox"}, b"")
            elif path == "/_local/tick" and self.command == "POST":
                with stack.lock:
                    stack.tick()
                    stack.drain()
                self._json(200, {"now": clock.iso(clock.now())})
            else:
                self._json(404, {"code": "not_found", "message": f"no dev route {self.command} {path}"})

        def _feedback(self, body: bytes) -> None:
            try:
                req = json.loads(body or b"{}")
            except ValueError:
                req = None
            types = stack.FEEDBACK_TYPES
            if not isinstance(req, dict) or not isinstance(req.get("to"), str) or req.get("type") not in types:
                self._json(400, {"code": "bad_request", "message": 'body is {"to": "<email>", "type": '
                                 f'{"|".join(types)}, "rule"?: "<rule id>"}}'})
                return
            rule = req.get("rule") if isinstance(req.get("rule"), str) else None
            result = stack.feedback(req["to"], req["type"], rule)
            if result is None:
                self._json(404, {"code": "not_found", "message": f"no email to {req['to']}"
                                 + (f" from rule {rule}" if rule else "") + " in the outbox"})
                return
            self._json(200, result)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

    server = ThreadingHTTPServer((stack.cfg.host, stack.cfg.port), Handler)
    server.daemon_threads = True
    return server
