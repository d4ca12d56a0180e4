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
