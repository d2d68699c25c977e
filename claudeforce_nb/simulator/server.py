"""Serve the simulator over real HTTP on 127.0.0.1 (threaded, keep-alive, Nagle off), so any
Anthropic client can use it: `ANTHROPIC_BASE_URL=http://127.0.0.1:N`."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .engine import Simulator, sse_bytes

__all__ = ["SimulatorServer", "serve"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SimulatorServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        return None

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = self.server.simulator.handle(self.command, self.path, headers, body)
        if reply.delay_s > 0:
            time.sleep(reply.delay_s)
        if reply.timeout:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if reply.events is None:
            payload = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(reply.status)
        for k, v in reply.headers.items():
            self.send_header(k, v)
        self.send_header("transfer-encoding", "chunked")
        self.send_header("cache-control", "no-cache")
        self.end_headers()
        for i, (name, data) in enumerate(reply.events):
            if i and reply.gaps_s[i - 1] > 0:
                time.sleep(reply.gaps_s[i - 1])
            chunk = sse_bytes(name, data)
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    do_POST = _serve
    do_GET = _serve


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops the SYNs of a burst of new connections (a map job
    # opening 50 at once), and each dropped one waits out a 1 s retransmission.
    request_queue_size = 1024

    def __init__(self, simulator: Simulator, port: int = 0) -> None:
        self.simulator = simulator
        self._thread: threading.Thread | None = None
        super().__init__(("127.0.0.1", port), _Handler)  # loopback only, never 0.0.0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> SimulatorServer:
        """Serve from a daemon thread; returns self so `SimulatorServer(sim).start()` reads well."""
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="claudeforce-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        thread = self._thread
        if thread is not None:
            self.shutdown()
            thread.join(timeout=5)
            self._thread = None
        self.server_close()


def serve(simulator: Simulator, port: int) -> None:
    server = SimulatorServer(simulator, port)
    print(f"claudeforce_nb simulator listening on {server.url}  (ANTHROPIC_BASE_URL={server.url})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
