"""/proc/net/tcp and /proc/net/tcp6 into the same columns as the netlink source.

Format (net/ipv4/tcp_ipv4.c tcp4_seq_show, net/ipv6/tcp_ipv6.c): addresses are the
big-endian words printed as native u32 in %08X, ports host-order hex, `st` the state in hex
(0C never appears: request sockets print 03), `tr:tm->when` timer code and USER_HZ ticks.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import BinaryIO

import numpy as np

from tcpdoctor.errors import ParseError, TcpDoctorError
from tcpdoctor.i18n import Msg
from tcpdoctor.model.addresses import V4_MAPPED
from tcpdoctor.model.columns import BASE_COLUMNS, concat_columns
from tcpdoctor.model.tcp import AF_INET, AF_INET6, TCP_NEW_SYN_RECV, normalize_states
from tcpdoctor.sources import textcols

# Token index of each field in a /proc/net/tcp line (header: sl local_address rem_address st
# tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...).
TOK_LOCAL, TOK_REMOTE, TOK_ST, TOK_QUEUES, TOK_TIMER, TOK_RETR, TOK_UID, TOK_PROBES, TOK_INODE = (
    range(1, 10))
NTOK = 10
USER_HZ_MS = 10  # tm->when is printed in USER_HZ (1/100 s) ticks
BLOCK = 8 << 20  # bytes parsed at a time: bounds memory on a million sockets
EXPECTED = "a /proc/net/tcp line (sl local rem st tx:rx tr:when retr uid timeout inode ...)"


def _native_to_be32(words: np.ndarray) -> np.ndarray:
    """The kernel prints each big-endian address word as a native u32; undo that."""
    if sys.byteorder == "little":
        return words.astype(np.uint32).byteswap().astype(np.uint64)
    return words.astype(np.uint64)


def _addresses(mat: np.ndarray, pos: np.ndarray, family: int, src: str,
               lines: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    nwords = 1 if family == AF_INET else 4
    words = [
        _native_to_be32(textcols.hex_values(textcols.gather(mat, pos + 8 * i, 8), src, lines,
                                            "hex address"))
        for i in range(nwords)
    ]
    colon = textcols.gather(mat, pos + 8 * nwords, 1)[:, 0]
    bad = colon != ord(":")
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise ParseError(src, int(lines[r]), "ADDR:PORT", bytes(mat[r]).rstrip())
    port = textcols.hex_values(textcols.gather(mat, pos + 8 * nwords + 1, 4), src, lines,
                               "hex port")
    if family == AF_INET:
        hi = np.zeros_like(words[0])
        lo = words[0] | V4_MAPPED
    else:
        hi = (words[0] << np.uint64(32)) | words[1]
        lo = (words[2] << np.uint64(32)) | words[3]
    return hi, lo, port.astype(np.uint16)


def parse_block(arr: np.ndarray, family: int, src: str, first_line: int) -> dict[str, np.ndarray]:
    """Parse a block of whole lines (no header) into columns."""
    starts, ends = textcols.line_bounds(arr)
    if starts.size == 0:
        return {}
    # Line numbers for error messages: count newlines before each start.
    nl = np.flatnonzero(arr == 10)
    lines = first_line + np.searchsorted(nl, starts)
    mat = textcols.char_matrix(arr, starts, ends)
    blank = (mat == textcols.SPACE).all(axis=1)
    if blank.any():
        mat, lines = mat[~blank], lines[~blank]
        if mat.shape[0] == 0:
            return {}
    tok = textcols.token_starts(mat, NTOK, src, lines, EXPECTED)
    cols: dict[str, np.ndarray] = {}
    cols["laddr_hi"], cols["laddr_lo"], cols["sport"] = _addresses(
        mat, tok[:, TOK_LOCAL], family, src, lines)
    cols["raddr_hi"], cols["raddr_lo"], cols["dport"] = _addresses(
        mat, tok[:, TOK_REMOTE], family, src, lines)

    def hexf(t: int, skip: int, width: int, what: str) -> np.ndarray:
        return textcols.hex_values(textcols.gather(mat, tok[:, t] + skip, width), src, lines, what)

    def decf(t: int, what: str) -> np.ndarray:
        return textcols.dec_values(textcols.gather(mat, tok[:, t], 19), src, lines, what)

    st = hexf(TOK_ST, 0, 2, "hex state")
    if ((st == 0) | (st > TCP_NEW_SYN_RECV)).any():
        r = int(np.flatnonzero((st == 0) | (st > TCP_NEW_SYN_RECV))[0])
        raise ParseError(src, int(lines[r]), Msg("a TCP state 01..0C"), bytes(mat[r]).rstrip())
    cols["state"] = normalize_states(st)
    cols["wqueue"] = hexf(TOK_QUEUES, 0, 8, "hex tx_queue").astype(np.uint32)
    cols["rqueue"] = hexf(TOK_QUEUES, 9, 8, "hex rx_queue").astype(np.uint32)
    cols["timer"] = hexf(TOK_TIMER, 0, 2, "hex timer code").astype(np.uint8)
    when = hexf(TOK_TIMER, 3, 8, "hex tm->when")
    cols["expires"] = np.minimum(when * np.uint64(USER_HZ_MS), np.uint64(2**32 - 1)).astype(
        np.uint32)
    cols["retrans"] = np.minimum(hexf(TOK_RETR, 0, 8, "hex retrnsmt"), 255).astype(np.uint8)
    cols["uid"] = decf(TOK_UID, "decimal uid").astype(np.uint32)
    cols["inode"] = decf(TOK_INODE, "decimal inode").astype(np.uint32)
    cols["family"] = np.full(mat.shape[0], family, dtype=np.uint8)
    return cols


PREAMBLE = 20  # lines a paste may hold before the header: a prompt, a command, a fence


def _blocks(fh: BinaryIO, src: str, on_long: Callable[[int], None] | None = None,
            ) -> Iterator[tuple[np.ndarray, int]]:
    """Whole-line blocks of the file after its header, with the line number of each block.

    A few lines before the header (a shell prompt and the command of a pasted dump, a
    Markdown fence) are skipped; the header must come within PREAMBLE lines."""
    line_no, header = 1, fh.readline(textcols.MAX_LINE)
    first_text = header
    while not header.lstrip().startswith(b"sl") and header and line_no < PREAMBLE:
        line_no, header = line_no + 1, fh.readline(textcols.MAX_LINE)
    if not header.lstrip().startswith(b"sl"):
        raise ParseError(src, 1, Msg("the /proc/net/tcp header line starting with 'sl'"),
                         first_text)
    for block, first in textcols.line_blocks(fh, BLOCK, first_line=line_no + 1,
                                             on_long=on_long):
        if block.strip():
            yield np.frombuffer(block, dtype=np.uint8), first


def iter_file(fh: BinaryIO, family: int, src: str,
              reject: Callable[[ParseError], None] | None = None,
              ) -> Iterator[dict[str, np.ndarray]]:
    """The file's sockets, one block of columns at a time (bounded memory).

    reject: called with each line that cannot be parsed, which is then left out (a saved
    copy cut in its last line keeps every whole line); without it the first one raises."""
    def too_long(line: int) -> None:
        error = ParseError(src, line, Msg("a line under {limit} bytes",
                                          limit=textcols.MAX_LINE))
        if reject is None:
            raise error
        reject(error)

    for arr, first in _blocks(fh, src, too_long):
        parts = _lenient(arr, family, src, first, reject) if reject else [
            parse_block(arr, family, src, first)]
        for part in parts:
            if part:
                yield part


def _lenient(arr: np.ndarray, family: int, src: str, first: int,
             reject: Callable[[ParseError], None]) -> list[dict[str, np.ndarray]]:
    """parse_block, bisecting a failing block until each bad line stands alone: the good
    lines stay vectorized, and the cost grows with log(lines) per bad line."""
    try:
        return [parse_block(arr, family, src, first)]
    except ParseError as exc:
        nl = np.flatnonzero(arr[:-1] == 10)  # line ends inside the block
        if nl.size == 0:
            reject(exc)
            return []
        cut = int(nl[nl.size // 2]) + 1
        return (_lenient(arr[:cut], family, src, first, reject)
                + _lenient(arr[cut:], family, src, first + nl.size // 2 + 1, reject))


def parse_file(fh: BinaryIO, family: int, src: str) -> dict[str, np.ndarray]:
    return concat_columns(list(iter_file(fh, family, src)), BASE_COLUMNS)


def net_dir(proc_root: str) -> str:
    """Directory of the net files for the calling thread's namespace.

    /proc/net follows the thread-group leader's namespace; a helper thread that entered
    another namespace with setns() must read /proc/thread-self/net instead.
    """
    return f"{proc_root}/thread-self/net" if proc_root == "/proc" else f"{proc_root}/net"


def read_sockets(proc_root: str = "/proc", families: tuple[int, ...] = (AF_INET, AF_INET6),
                 ) -> tuple[dict[str, np.ndarray], list[str]]:
    parts = []
    notes: list[str] = []
    for family, name in ((AF_INET, "tcp"), (AF_INET6, "tcp6")):
        if family not in families:
            continue
        path = f"{net_dir(proc_root)}/{name}"
        try:
            with open(path, "rb") as fh:
                parts.append(parse_file(fh, family, path))
        except FileNotFoundError:
            if family == AF_INET6:
                notes.append(Msg("{path} is missing: IPv6 is disabled, no IPv6 sockets counted",
                                 path=path))
                continue
            raise TcpDoctorError(Msg("{path} is missing: is /proc mounted?", path=path)) from None
        except PermissionError as exc:
            raise TcpDoctorError(f"{path}: {exc.strerror}") from None
    return concat_columns(parts, BASE_COLUMNS), notes
