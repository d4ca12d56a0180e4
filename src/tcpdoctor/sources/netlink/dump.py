"""The netlink socket side: send inet_diag requests, receive the dump, decode it in chunks.

IPv4 and IPv6 come from one compat dump (AF_UNSPEC: one walk of the socket hash), or one
dump per family where the kernel refuses it or one family is asked for. On 2+ CPUs each
dump is split in two kernel-filtered halves read on two threads: two dumps per call.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
from collections.abc import Iterable, Iterator

import numpy as np

from tcpdoctor.i18n import Msg
from tcpdoctor.model.columns import BASE_COLUMNS, INFO_COLUMNS, drain_columns, wanted_columns
from tcpdoctor.model.tcp import AF_INET, AF_INET6
from tcpdoctor.sources.netlink.bytecode import split_bytecode
from tcpdoctor.sources.netlink.decode import decode
from tcpdoctor.sources.netlink.errors import NetlinkUnavailable
from tcpdoctor.sources.netlink.layout import (
    AF_UNSPEC,
    ALL_STATES_MASK,
    CHUNK,
    DONE_LEN,
    INET_DIAG_REQ_BYTECODE,
    INFO_EXT,
    IPPROTO_TCP,
    MAX_DATAGRAM,
    NETLINK_SOCK_DIAG,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSG_HDRLEN,
    SKMEM_EXT,
    SOCK_DIAG_BY_FAMILY,
    TCPDIAG_GETSOCK,
)


def _request(family: int, states: int, ext: int, seq: int, bytecode: bytes = b"") -> bytes:
    """A dump request for one family, or for both (AF_UNSPEC: the compat request)."""
    if family == AF_UNSPEC:
        # struct inet_diag_req: family, src_len, dst_len, ext, a zeroed sockid, states, dbs.
        mtype = TCPDIAG_GETSOCK
        body = struct.pack("=BBBB", AF_UNSPEC, 0, 0, ext) + bytes(48) + struct.pack(
            "=II", states, 0)
    else:
        # struct inet_diag_req_v2: family, protocol, ext, pad, states, a zeroed sockid.
        mtype = SOCK_DIAG_BY_FAMILY
        body = struct.pack("=BBBBI", family, IPPROTO_TCP, ext, 0, states) + bytes(48)
    if bytecode:  # INET_DIAG_REQ_BYTECODE: a filter the kernel runs per socket
        body += struct.pack("=HH", 4 + len(bytecode), INET_DIAG_REQ_BYTECODE) + bytecode
    return struct.pack("=IHHII", NLMSG_HDRLEN + len(body), mtype,
                       NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def open_socket(protocol: int = NETLINK_SOCK_DIAG, name: str = "NETLINK_SOCK_DIAG",
                ) -> socket.socket:
    """A netlink socket of that protocol (sock_diag by default; ctnetlink, rtnetlink)."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                             protocol)
    except OSError as exc:
        raise NetlinkUnavailable(Msg("cannot open {name}: {error}", name=name,
                                     error=exc.strerror)) from exc
    return sock


def dump(sock: socket.socket, family: int, states: int, want: frozenset[str], ext: int,
         seq: int = 1, bytecode: bytes = b"") -> list[dict[str, np.ndarray]]:
    """One inet_diag dump request (ext: the idiag_ext attributes asked for), decoded chunk
    by chunk into columns: the chunks, joined once by the caller with every other dump's.
    (Receiving on one thread while decoding on another was measured slower at a million
    sockets with tcp_info than the two kernel-filtered halves read_sockets uses.)"""
    try:
        sock.send(_request(family, states, ext, seq, bytecode))
    except OSError as exc:
        raise NetlinkUnavailable(Msg("sock_diag request failed: {error}",
                                     error=exc.strerror)) from exc
    view = chunk_buffer()
    return [decode(view[:fill], want, bool(ext))[0] for fill in receive(sock, view)]


def receive(sock: socket.socket, view: memoryview) -> Iterator[int]:
    """The dump's replies a chunk at a time: fills view with whole datagrams (at most CHUNK
    bytes) and yields how much it holds, until the dump ends; the caller decodes each chunk
    before the next is received into the same buffer."""
    fill, done = 0, False
    while not done:
        try:
            got = sock.recv_into(view[fill:], MAX_DATAGRAM, socket.MSG_TRUNC)
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            raise NetlinkUnavailable(Msg("netlink receive failed: {error}",
                                         error=exc.strerror)) from exc
        if got > MAX_DATAGRAM:
            raise NetlinkUnavailable(Msg("netlink datagram of {got} bytes exceeds buffer",
                                         got=got))
        if got == 0:
            break
        fill += got
        done = _ends_with_done(view, fill - got, fill)
        if done or fill + MAX_DATAGRAM > CHUNK:
            yield fill
            fill = 0


_local = threading.local()


def chunk_buffer() -> memoryview:
    """This thread's receive buffer, allocated once: a sweep of hundreds of namespaces
    would otherwise zero CHUNK bytes per dump (decoding copies out of it, so reuse is safe)."""
    view: memoryview | None = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(CHUNK))
    return view


def _ends_with_done(view: memoryview, start: int, end: int) -> bool:
    """Whether the datagram in view[start:end] ends the dump (NLMSG_DONE or an error).

    An error reply stands alone at the start of a datagram; NLMSG_DONE (header + int errno,
    20 bytes without extended ACKs, which we never ask for) is always the datagram's last
    message. Looking at those two places costs O(1) per datagram; only a tail that looks
    like NLMSG_DONE is confirmed by walking the datagram's messages.
    """
    if end - start < NLMSG_HDRLEN:
        return False
    first_type = struct.unpack_from("=H", view, start + 4)[0]
    if first_type in (NLMSG_ERROR, NLMSG_DONE):
        return True
    if end - start < DONE_LEN:
        return False
    length, mtype = struct.unpack_from("=IH", view, end - DONE_LEN)
    if length != DONE_LEN or mtype != NLMSG_DONE:
        return False
    off = start
    while off + NLMSG_HDRLEN <= end:
        length, mtype = struct.unpack_from("=IH", view, off)
        if length < NLMSG_HDRLEN:
            return False
        if mtype == NLMSG_DONE:
            return True
        off += (length + 3) & ~3
    return False


def read_sockets(want: Iterable[str] = BASE_COLUMNS, info: bool = False,
                 families: Iterable[int] = (AF_INET, AF_INET6),
                 states: int = ALL_STATES_MASK,
                 parallel: bool | None = None, mem: bool = False) -> dict[str, np.ndarray]:
    """Every TCP socket of the calling thread's network namespace, as columns.

    info asks for tcp_info and skmem, mem for skmem only (40 bytes a socket, not 270).

    parallel (default: with 2+ CPUs) splits the dump in two halves filtered by the kernel
    (split_bytecode) and reads them on two threads: the kernel's work, which is most of the
    cost, then runs on two cores (recv releases the GIL).
    """
    wanted = frozenset(want) | {"state"}
    ext = INFO_EXT if info else SKMEM_EXT if mem else 0
    if parallel is None:
        parallel = (os.cpu_count() or 1) > 1
    fams = tuple(families)
    if set(fams) == {AF_INET, AF_INET6}:
        # Both families in one walk of the socket hash (half the kernel's work), where
        # the kernel serves the compat request; else one dump per family.
        try:
            return _read_families((AF_UNSPEC,), states, wanted, ext, parallel)
        except NetlinkUnavailable:
            pass
    return _read_families(fams, states, wanted, ext, parallel)


def _read_families(families: tuple[int, ...], states: int, wanted: frozenset[str], ext: int,
                   parallel: bool) -> dict[str, np.ndarray]:
    names = wanted_columns(wanted)
    if ext:
        names.update(INFO_COLUMNS)
    jobs = [(family, bc) for family in families
            for bc in ((split_bytecode(True), split_bytecode(False)) if parallel else (b"",))]
    if not parallel:
        with open_socket() as sock:
            parts = [p for seq, (f, bc) in enumerate(jobs, 1)
                     for p in dump(sock, f, states, wanted, ext, seq, bc)]
        return drain_columns(parts, names)
    parts = [p for job in _dump_threads(jobs, states, wanted, ext) for p in job]
    return drain_columns(parts, names)


def _dump_threads(jobs: list[tuple[int, bytes]], states: int, wanted: frozenset[str],
                  ext: int) -> list[list[dict[str, np.ndarray]]]:
    """Run the dumps two at a time, each on its own socket and thread, in this netns."""
    from tcpdoctor.sources.netns import current_netns_fd, enter_fd

    results: list[list[dict[str, np.ndarray]] | BaseException | None] = [None] * len(jobs)
    # Threads start in the process's namespace; follow the caller (maybe a setns'd thread).
    ns_fd = current_netns_fd()

    def work(i: int) -> None:
        try:
            enter_fd(ns_fd)
            family, bc = jobs[i]
            with open_socket() as sock:
                results[i] = dump(sock, family, states, wanted, ext, i + 1, bc)
        except BaseException as exc:  # re-raised in the caller below
            results[i] = exc

    try:
        for start in range(0, len(jobs), 2):
            threads = [threading.Thread(target=work, args=(i,), daemon=True)
                       for i in range(start, min(start + 2, len(jobs)))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        os.close(ns_fd)
    out = []
    for r in results:
        if isinstance(r, BaseException):
            raise r
        assert r is not None
        out.append(r)
    return out
