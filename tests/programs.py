"""Small programs the live tests and the fixture recorders run inside lab namespaces."""

# A named process (prctl) that serves or opens N connections, each held HOLD seconds.
TRACE_PROG = r"""
import ctypes, socket, struct, sys, time, threading
role, name, addr, port, n, hold, closer = sys.argv[1:8]
port, n, hold = int(port), int(n), float(hold)
ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name.encode()), 0, 0, 0)
def finish(s):
    if closer == role or closer == "linger":
        if closer == "linger":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        time.sleep(hold); s.close()
    else:
        s.settimeout(10)
        try:
            s.recv(1)                                  # the peer closes first
        except OSError:
            pass
        s.close()
if role == "server":
    srv = socket.create_server((addr, port), backlog=512)
    print("READY", flush=True)
    for _ in range(n):
        c, _ = srv.accept(); threading.Thread(target=finish, args=(c,)).start()
    time.sleep(2)
else:
    for _ in range(n):
        s = socket.socket(); s.settimeout(float(closer) if closer[0].isdigit() else 5)
        try:
            s.connect((addr, port))
        except OSError:
            s.close(); continue
        finish(s)
    time.sleep(0.5)  # a process gone within the tracer's tick cannot be placed in a netns
"""


# N clients that half-close (the server, which never closes, holds them in CLOSE_WAIT), then
# on "go" read each socket once: how the server's side ended them (eof, reset, timeout).
HALF_CLOSE_PROG = r"""
import json, socket, sys
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = []
for _ in range(n):
    s = socket.create_connection((addr, port), timeout=10)
    s.shutdown(socket.SHUT_WR)
    socks.append(s)
print("READY", flush=True)
sys.stdin.readline()
seen = {"eof": 0, "reset": 0, "timeout": 0, "data": 0}
for s in socks:
    s.settimeout(5)
    try:
        seen["eof" if s.recv(1) == b"" else "data"] += 1
    except ConnectionResetError:
        seen["reset"] += 1
    except OSError:
        seen["timeout"] += 1
print(json.dumps(seen), flush=True)
"""


# A named process that holds K connections to ADDR:PORT, then tries N more: with a range
# of K local ports each of those fails with EADDRNOTAVAIL. Prints its pid and what failed.
CONNECT_FAIL_PROG = r"""
import ctypes, errno, json, socket, sys, time
name, addr = sys.argv[1], sys.argv[2]
port, k, n = (int(x) for x in sys.argv[3:6])
ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name.encode()), 0, 0, 0)
held, failed = [], 0
for _ in range(k):
    held.append(socket.create_connection((addr, port), timeout=5))
for _ in range(n):
    s = socket.socket()
    try:
        s.connect((addr, port))
    except OSError as exc:
        failed += exc.errno == errno.EADDRNOTAVAIL
    s.close()
print(json.dumps({"pid": __import__("os").getpid(), "failed": failed}), flush=True)
time.sleep(2)
"""
