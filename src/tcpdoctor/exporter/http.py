"""The exporter's HTTP side: GET /metrics and / only, request timeouts, bounded requests,
a cap on concurrent handlers, optional TLS and basic auth from a web config file in the
Prometheus exporter-toolkit format (tls_server_config, basic_auth_users with bcrypt)."""

from __future__ import annotations

import base64
import hashlib
import re
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
from tcpdoctor.i18n import Msg

REQUEST_TIMEOUT = 10.0  # seconds a client may take to send its request
INDEX = (b"<html><head><title>tcpdoctor exporter</title></head><body><h1>tcpdoctor exporter"
         b"</h1><p><a href=\"/metrics\">Metrics</a></p></body></html>\n")


BCRYPT = re.compile(r"\$2[aby]?\$(\d\d)\$[./A-Za-z0-9]{53}")
MAX_HANDLERS = 64  # connections served at once; more wait in the listen backlog
CHECKS_AT_ONCE = 1  # bcrypt checks at once: a password storm keeps one core, not both


class WebConfig:
    """TLS and basic auth as the Prometheus exporter-toolkit does them: a wrong password
    costs the same whether the user exists or not (an unknown user is checked against a
    dummy hash of the same cost), bcrypt checks run one at a time, and credentials already
    verified are remembered (as a digest) so that scrapes stay fast."""

    def __init__(self, tls: ssl.SSLContext | None, users: dict[str, bytes]) -> None:
        self.tls = tls
        self.users = users
        self._ok: set[str] = set()  # digests of credentials already verified
        self._lock = threading.Lock()
        self._checks = threading.BoundedSemaphore(CHECKS_AT_ONCE)
        self._dummy = _dummy_hash(users)

    def check(self, header: str | None) -> bool:
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(
                ":")
        except (ValueError, UnicodeDecodeError):
            return False
        digest = hashlib.sha256(f"{user}\0{password}".encode()).hexdigest()
        with self._lock:
            if digest in self._ok:
                return True
        import bcrypt

        known = user in self.users
        with self._checks:
            good = bcrypt.checkpw(password.encode(), self.users.get(user, self._dummy))
        if good and known:
            with self._lock:
                self._ok.add(digest)
        return good and known


def _dummy_hash(users: dict[str, bytes]) -> bytes:
    if not users:
        return b""
    import bcrypt

    cost = max(int(m.group(1)) for h in users.values() if (m := BCRYPT.fullmatch(h.decode())))
    return bcrypt.hashpw(b"tcpdoctor: no such user", bcrypt.gensalt(rounds=cost))


def _users(data: dict[str, Any], path: str) -> dict[str, bytes]:
    users = data.get("basic_auth_users") or {}
    if not isinstance(users, dict):
        raise TcpDoctorError(Msg("{path}: basic_auth_users must map user names to bcrypt hashes",
                                 path=path))
    for user, hashed in users.items():
        if not isinstance(user, str) or not isinstance(hashed, str) \
                or not BCRYPT.fullmatch(hashed):
            raise TcpDoctorError(Msg("{path}: basic_auth_users: the value for {user!r} is not a "
                                     "bcrypt hash ($2y$10$... as htpasswd -nbBC 10 USER PASS "
                                     "prints)", path=path, user=user))
    return {u: h.encode() for u, h in users.items()}


def _tls(data: dict[str, Any], path: str) -> ssl.SSLContext | None:
    cfg = data.get("tls_server_config")
    if not cfg:
        return None
    if not isinstance(cfg, dict) or not all(
            isinstance(cfg.get(k), str) for k in ("cert_file", "key_file")):
        raise TcpDoctorError(Msg("{path}: tls_server_config must hold cert_file and key_file "
                                 "paths", path=path))
    try:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(cfg["cert_file"], cfg["key_file"])
        if cfg.get("client_ca_file"):
            tls.load_verify_locations(str(cfg["client_ca_file"]))
            tls.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise TcpDoctorError(Msg("{path}: tls_server_config: {exc}", path=path, exc=exc)) from None
    return tls


def load_web_config(path: str | None) -> WebConfig:
    """The exporter-toolkit web config, every part checked at start (one line if not)."""
    if not path:
        return WebConfig(None, {})
    try:
        import yaml
    except ImportError:
        raise TcpDoctorError(Msg("--web-config-file needs PyYAML and bcrypt: pip install "
                                 "'tcpdoctor[exporter]'")) from None
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise TcpDoctorError(f"{path}: {exc.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise TcpDoctorError(Msg("{path}: not valid YAML{at}", path=path, at=at)) from None
    if not isinstance(data, dict):
        raise TcpDoctorError(Msg("{path}: expected a mapping with tls_server_config and/or "
                                 "basic_auth_users", path=path))
    return WebConfig(_tls(data, path), _users(data, path))


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
            length = (self.headers.get("Content-Length") or "0").strip()
            if not (length.isascii() and length.isdigit()):
                self._reply(400, b"bad Content-Length\n")
                return
            if int(length) > 0:
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

    # At most MAX_HANDLERS threads: beyond, the accept loop waits for one to finish and
    # further connections wait in the kernel's listen backlog.
    _slots = threading.BoundedSemaphore(MAX_HANDLERS)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise TcpDoctorError(Msg("--listen: expected HOST:PORT, got {text!r}", text=text))
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(registry: CollectorRegistry, listen: str, web: WebConfig, verbose: bool,
          ready: Any = None) -> None:
    addr = parse_listen(listen)
    try:
        server = Server(addr, make_handler(registry, web, verbose), web.tls)
    except OSError as exc:
        raise TcpDoctorError(Msg("cannot listen on {listen}: {error}", listen=listen,
                                 error=exc.strerror)) from None
    if ready:
        ready(server.server_address)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
