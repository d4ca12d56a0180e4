"""The exporter's HTTP side: GET /metrics and / only, request timeouts, bounded requests,
a cap on concurrent handlers, optional TLS and basic auth from a web config file in the
Prometheus exporter-toolkit format (tls_server_config, basic_auth_users with bcrypt)."""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from tcpdoctor.errors import TcpDoctorError

REQUEST_TIMEOUT = 10.0  # seconds a client may take to send its request
INDEX = (b"<html><head><title>tcpdoctor exporter</title></head><body><h1>tcpdoctor exporter"
         b"</h1><p><a href=\"/metrics\">Metrics</a></p></body></html>\n")


class WebConfig:
    def __init__(self, tls: ssl.SSLContext | None, users: dict[str, bytes]) -> None:
        self.tls = tls
        self.users = users
        self._ok: set[str] = set()  # digests of credentials already verified (bcrypt is slow)
        self._lock = threading.Lock()

    def check(self, header: str | None) -> bool:
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        digest = hashlib.sha256(f"{user}\0{password}".encode()).hexdigest()
        with self._lock:
            if digest in self._ok:
                return True
        hashed = self.users.get(user)
        if hashed is None:
            return False
        import bcrypt

        if bcrypt.checkpw(password.encode(), hashed):
            with self._lock:
                self._ok.add(digest)
            return True
        return False


def load_web_config(path: str | None) -> WebConfig:
    if not path:
        return WebConfig(None, {})
    try:
        import yaml
    except ImportError:
        raise TcpDoctorError("--web-config-file needs PyYAML and bcrypt: "
                             "pip install 'tcpdoctor[exporter]'") from None
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise TcpDoctorError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise TcpDoctorError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise TcpDoctorError(f"{path}: expected a mapping with tls_server_config and/or "
                             "basic_auth_users")
    tls = None
    tls_cfg = data.get("tls_server_config") or {}
    if tls_cfg:
        try:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.minimum_version = ssl.TLSVersion.TLSv1_2
            tls.load_cert_chain(tls_cfg["cert_file"], tls_cfg["key_file"])
            if tls_cfg.get("client_ca_file"):
                tls.load_verify_locations(tls_cfg["client_ca_file"])
                tls.verify_mode = ssl.CERT_REQUIRED
        except (KeyError, OSError, ssl.SSLError) as exc:
            raise TcpDoctorError(f"{path}: tls_server_config: {exc}") from None
    users = {str(u): str(h).encode() for u, h in (data.get("basic_auth_users") or {}).items()}
    return WebConfig(tls, users)


def make_handler(registry: CollectorRegistry, web: WebConfig,
                 verbose: bool) -> type[BaseHTTPRequestHandler]:
    from tcpdoctor.exporter.collector import Shared

    # Concurrent scrapes share one rendering (which shares one sample per namespace).
    exposition = Shared(lambda: generate_latest(registry))

    class Handler(BaseHTTPRequestHandler):
        server_version = "tcpdoctor"
        sys_version = ""
        timeout = REQUEST_TIMEOUT  # applied to the connection socket by StreamRequestHandler

        def do_GET(self) -> None:
            if int(self.headers.get("Content-Length") or 0) > 0:
                self._reply(413, b"request bodies are not accepted\n")
                return
            if not web.check(self.headers.get("Authorization")):
                self._reply(401, b"unauthorized\n", {"WWW-Authenticate": 'Basic realm="tcpdoctor"'})
                return
            path = urlsplit(self.path).path
            if path == "/metrics":
                body, _ = exposition.get()
                self._reply(200, body, {"Content-Type": CONTENT_TYPE_LATEST})
            elif path == "/":
                self._reply(200, INDEX, {"Content-Type": "text/html"})
            else:
                self._reply(404, b"not found: try /metrics\n")

        def _not_allowed(self) -> None:
            self._reply(405, b"only GET\n", {"Allow": "GET"})

        do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _not_allowed

        def _reply(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for key, value in (headers or {"Content-Type": "text/plain"}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            if verbose:
                sys.stderr.write(f"{self.address_string()} {format % args}\n")

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 tls: ssl.SSLContext | None) -> None:
        # The socket's family follows the address: '[::1]:9816' needs an AF_INET6 socket.
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        super().__init__(addr, handler)
        self.tls = tls

    def get_request(self) -> Any:
        conn, addr = super().get_request()
        if self.tls is not None:
            conn.settimeout(REQUEST_TIMEOUT)
            conn = self.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up or sent garbage is not worth a traceback


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise TcpDoctorError(f"--listen: expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(registry: CollectorRegistry, listen: str, web: WebConfig, verbose: bool,
          ready: Any = None) -> None:
    addr = parse_listen(listen)
    try:
        server = Server(addr, make_handler(registry, web, verbose), web.tls)
    except OSError as exc:
        raise TcpDoctorError(f"cannot listen on {listen}: {exc.strerror}") from None
    if ready:
        ready(server.server_address)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
