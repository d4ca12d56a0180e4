"""Addresses as two big-endian uint64 halves of an IPv6 address, IPv4 mapped into
::ffff:a.b.c.d, so that one pair of columns holds both families, sorts naturally and takes
prefix masks (/24, /64) as plain integer operations."""

from __future__ import annotations

import ipaddress

import numpy as np

# ::ffff:0:0/96 (RFC 4291 section 2.5.5.2): the low half of an IPv4-mapped address.
V4_MAPPED = np.uint64(0xFFFF_0000_0000)
V4_MAPPED_INT = 0xFFFF << 32
# 100:0:0:2::/64 (inside RFC 6666's discard-only 100::/64, as the other keys pasted captures
# need): an address its poster redacted ("...", "x.x.x.x", "*snip*"). Such rows count in
# the states and stay out of every grouping by address.
REDACTED_HI = 0x0100_0000_0000_0002


def format_addr(hi: int, lo: int) -> str:
    if int(hi) == REDACTED_HI:
        return "(redacted)"
    value = (int(hi) << 64) | int(lo)
    addr = ipaddress.IPv6Address(value)
    mapped = addr.ipv4_mapped
    return str(mapped) if mapped is not None else str(addr)


def format_endpoint(hi: int, lo: int, port: int) -> str:
    """ip:port, with an IPv6 address in brackets ([2001:db8::1]:443)."""
    addr = format_addr(hi, lo)
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def parse_addr(text: str) -> tuple[int, int, int]:
    """'10.0.0.0/8', '::1', '2001:db8::/32' -> (hi, lo, prefix length in the 128-bit space)."""
    net = ipaddress.ip_network(text.strip("[]"), strict=False)
    if isinstance(net, ipaddress.IPv4Network):
        value = V4_MAPPED_INT | int(net.network_address)
        prefix = 96 + net.prefixlen
    else:
        value = int(net.network_address)
        prefix = net.prefixlen
    return value >> 64, value & ((1 << 64) - 1), prefix


def prefix_masks(prefix: int) -> tuple[np.uint64, np.uint64]:
    full = (1 << 128) - 1
    mask = full ^ ((1 << (128 - prefix)) - 1) if prefix < 128 else full
    return np.uint64(mask >> 64), np.uint64(mask & ((1 << 64) - 1))


def is_v4(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    return (hi == 0) & ((lo & ~np.uint64(0xFFFF_FFFF)) == V4_MAPPED)


