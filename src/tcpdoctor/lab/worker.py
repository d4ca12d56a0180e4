"""A socket-holding process run inside a lab namespace: `python -m tcpdoctor.lab.worker SPEC`.

SPEC is JSON: {"name": comm name, "actions": [...]}. The worker performs its actions,
prints one line `READY {json}` and then holds every socket until its stdin reaches EOF
(the lab exited or died) or it gets SIGTERM.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import json
import resource
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from typing import Any

from tcpdoctor.render.output import write

PR_SET_NAME = 15  # include/uapi/linux/prctl.h
IP_TRANSPARENT = 19  # include/uapi/linux/in.h: use a source address this host does not own

held: list[socket.socket] = []
lock = threading.Lock()
# Where the worker notes the moments a lab's truth needs (the first failed connect, the
# first accept refused for want of a descriptor): one JSON line per event kind.
# Opened once at start: at the open-files limit no new file can be opened to say so.
EVENT_LOG: list[Any] = [None]
seen_events: set[str] = set()


def log_event(kind: str, code: int, **extra: Any) -> None:
    with lock:
        if EVENT_LOG[0] is None or kind in seen_events:
            return
        seen_events.add(kind)
        EVENT_LOG[0].write(json.dumps({"event": kind, "errno": errno.errorcode.get(
            code, str(code)), "at": time.time(), **extra}) + "\n")
        EVENT_LOG[0].flush()


def set_name(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def family_of(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def listen(act: dict[str, Any]) -> int:
    addr = act.get("addr", "0.0.0.0")
    sock = socket.socket(family_of(addr), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((addr, act.get("port", 0)))
    sock.listen(act.get("backlog", 4096))
    held.append(sock)
    mode = act.get("accept", "hold")
    if mode != "none":
        threading.Thread(target=accept_loop, args=(sock, mode), daemon=True).start()
    return int(sock.getsockname()[1])


def accept_loop(sock: socket.socket, mode: str) -> None:
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "listener")
    while True:
        for key, _ in sel.select():
            if key.data == "listener":
                try:
                    conn, _ = sock.accept()
                except OSError as exc:  # EMFILE: the open-files limit (the fd-ramp lab)
                    log_event("accept_failed", exc.errno or 0)
                    time.sleep(0.1)
                    continue
                if mode == "close":
                    conn.close()  # the server closes first: TIME_WAIT lands on this side
                elif mode == "close-on-eof":
                    sel.register(conn, selectors.EVENT_READ, "conn")
                else:
                    with lock:
                        held.append(conn)
            else:
                conn = key.fileobj  # type: ignore[assignment]
                try:
                    data = conn.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(conn)
                    conn.close()


def destinations(act: dict[str, Any]) -> list[str]:
    n = int(act.get("n", 1))
    spread = act.get("spread")
    if not spread:
        return [act["addr"]] * n
    hosts = ipaddress.ip_network(spread).hosts()
    return [str(next(hosts)) for _ in range(n)]


def connect(act: dict[str, Any]) -> int:
    mode = act.get("then", "hold")
    port = int(act["port"])
    binds = None
    if act.get("bind_spread"):
        src_hosts = ipaddress.ip_network(act["bind_spread"]).hosts()
        binds = (str(next(src_hosts)) for _ in range(int(act.get("n", 1))))
    waiting: list[socket.socket] = []
    filling: list[socket.socket] = []
    made = failed = 0
    rate = float(act.get("rate", 0))  # connections a second, on a fixed schedule
    started = time.monotonic()
    if rate:
        log_event("started", 0, rate=rate)
    for dst in destinations(act):
        if rate:
            time.sleep(max(started + made / rate - time.monotonic(), 0))
        s = socket.socket(family_of(dst), socket.SOCK_STREAM)
        if act.get("keepalive"):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if act.get("linger0"):  # closed (or killed) = RST and gone at once: no FIN_WAIT
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if binds is not None:
            s.setsockopt(socket.IPPROTO_IP, IP_TRANSPARENT, 1)
            s.bind((next(binds), 0))
        if mode in ("nonblock",):
            s.setblocking(False)
            rc = s.connect_ex((dst, port))
            if rc not in (0, errno.EINPROGRESS):
                raise OSError(rc, f"connect to {dst}:{port}")
        else:
            s.settimeout(float(act.get("connect_timeout", 10)))
            try:
                s.connect((dst, port))
            except OSError as exc:
                if act.get("stop_on_error") or act.get("keep_on_error"):
                    log_event("connect_failed", exc.errno or 0, made=made)
                    s.close()
                    if act.get("keep_on_error"):  # an application that keeps trying
                        made += 1
                        failed += 1
                        continue
                    break
                raise exc
        made += 1
        if mode == "close":
            s.close()  # the client closes first: TIME_WAIT lands on this side
        elif mode == "send-close":
            s.sendall(bytes(int(act.get("bytes", 0))))  # data the server never reads
            s.close()
        elif mode == "fill":
            held.append(s)
            filling.append(s)
        elif mode == "shutdown-wr":
            s.shutdown(socket.SHUT_WR)  # FIN_WAIT2 here, CLOSE_WAIT on a server that holds
            held.append(s)
        elif mode == "wait-eof-close":
            waiting.append(s)
        else:
            held.append(s)
        pause = float(act.get("pause", 0))
        if pause:
            time.sleep(pause)
    if rate:
        log_event("finished", 0, made=made, failed=failed)
    fill(filling, int(act.get("bytes", 0)))
    for s in waiting:
        with contextlib.suppress(OSError):
            s.settimeout(10)
            while s.recv(4096):
                pass
        s.close()
    return made


def fill(socks: list[socket.socket], cap: int, stall: float = 1.0,
         limit: float = 20.0) -> None:
    """Send up to cap bytes on each socket, until the peers stop taking data (their
    receive buffers and our send buffers are full): bounded by a stall and a time limit."""
    if cap <= 0 or not socks:
        return
    chunk = bytes(65536)
    sent = dict.fromkeys(socks, 0)
    for s in socks:
        s.setblocking(False)
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_WRITE)
    deadline = time.monotonic() + limit
    while sel.get_map() and time.monotonic() < deadline:
        ready = sel.select(stall)
        if not ready:
            break  # nothing writable for `stall` seconds: every buffer is full
        for key, _ in ready:
            s = key.fileobj  # type: ignore[assignment]
            try:
                sent[s] += s.send(chunk[:cap - sent[s]])
            except (BlockingIOError, InterruptedError):
                continue
            if sent[s] >= cap:
                sel.unregister(s)
    sel.close()


def main() -> None:
    spec = json.loads(sys.argv[1])
    set_name(spec.get("name", "td-worker"))
    # Every socket is a file: hold as many as the hard limit allows (build() checks n).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if spec.get("nofile"):  # a small limit on purpose (the fd-ramp lab)
        resource.setrlimit(resource.RLIMIT_NOFILE, (int(spec["nofile"]), hard))
    elif soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if spec.get("log"):
        EVENT_LOG[0] = open(spec["log"], "a")  # noqa: SIM115  (held for the worker's life)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    info: dict[str, Any] = {"ports": [], "connected": []}
    for act in spec.get("actions", []):
        if act["kind"] == "listen":
            info["ports"].append(listen(act))
        elif act["kind"] == "connect" and act.get("background"):
            # A steady load (bounded by n and pause) that runs while the lab is inspected.
            threading.Thread(target=connect, args=(act,), daemon=True).start()
        elif act["kind"] == "connect":
            info["connected"].append(connect(act))
    write("READY " + json.dumps(info) + "\n")
    # Hold until the lab closes our stdin (or dies, which closes it too).
    sys.stdin.read()


if __name__ == "__main__":
    main()
