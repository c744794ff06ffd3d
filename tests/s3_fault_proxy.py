"""An HTTP proxy in front of moto's S3 server that injects faults: SlowDown (503), a 500, a plain 503,
a connection reset, a stall (no answer, then the connection drops), or a download cut off mid-body. A test gives it a rule, ``(method, path, headers, request number) ->
action``, and reads what it saw. Loopback only; every request is forwarded whole (test sizes)."""

from __future__ import annotations

import contextlib
import http.client
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

#: ``"pass"``, ``"slowdown"``, ``"error500"``, ``"error503"``, ``"reset"`` (RST, no answer),
#: ``"stall:S"`` (answer nothing for S seconds, then drop) or ``"cut:N"`` (send N body bytes, then drop).
Rule = Callable[[str, str, dict[str, str], int], str]

SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


@dataclass
class Seen:
    """One request the proxy handled, and what it did."""

    method: str
    path: str
    headers: dict[str, str]
    action: str


@dataclass
class FaultProxy:
    """The running proxy: its URL, and every request it saw."""

    url: str
    seen: list[Seen] = field(default_factory=list)


@contextlib.contextmanager
def fault_proxy(target_url: str, rule: Rule) -> Iterator[FaultProxy]:
    """Serve a proxy to ``target_url`` on a free loopback port while the block runs."""
    target = urlsplit(target_url)
    lock = threading.Lock()
    state = FaultProxy(url="")
    stopping = threading.Event()
    connections: set[socket.socket] = set()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            with lock:
                connections.add(self.connection)

        def finish(self) -> None:
            with lock:
                connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items()}
            with lock:
                number = len(state.seen)
                action = rule(self.command, self.path, headers, number)
                state.seen.append(Seen(self.command, self.path, headers, action))
            if action == "slowdown":
                self._reply(503, {"Content-Type": "application/xml"}, SLOWDOWN)
                return
            if action == "error500":
                self._reply(
                    500, {"Content-Type": "application/xml"}, b"<Error><Code>InternalError</Code></Error>"
                )
                return
            if action == "error503":
                self._reply(
                    503,
                    {"Content-Type": "application/xml"},
                    b"<Error><Code>ServiceUnavailable</Code></Error>",
                )
                return
            if action == "reset" or action.startswith("stall:"):
                if action.startswith("stall:"):
                    stopping.wait(float(action[6:]))  # the client gives up first and retries
                self._drop(reset=action == "reset")
                return
            upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                resp = upstream.getresponse()
                data = resp.read()
                out = {
                    k: v for k, v in resp.getheaders() if k.lower() not in ("transfer-encoding", "connection")
                }
            finally:
                upstream.close()
            if action.startswith("cut:"):
                self._cut(resp.status, out, data, int(action[4:]))
            else:
                self._reply(resp.status, out, data)

        def _reply(self, status: int, headers: dict[str, str], data: bytes) -> None:
            self.send_response(status)
            for k, v in headers.items():
                if k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _cut(self, status: int, headers: dict[str, str], data: bytes, keep: int) -> None:
            """Promise the whole body, send ``keep`` bytes of it, then drop the connection."""
            self.send_response(status)
            for k, v in headers.items():
                if k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:keep])
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        def _drop(self, *, reset: bool) -> None:
            """Close the connection without an answer; ``reset`` sends a TCP RST."""
            self.close_connection = True
            with contextlib.suppress(OSError):
                if reset:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    self.connection.shutdown(socket.SHUT_RDWR)
                self.connection.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            """A client that hung up (as botocore does on a cut body) is not an error here."""

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = False  # server_close joins every handler: none outlives the block
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="s3-fault-proxy", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stopping.set()
        server.shutdown()
        with lock:  # idle keep-alive connections: their handlers wait in a read
            for conn in list(connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        thread.join(10)
